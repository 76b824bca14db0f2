"""Benchmark: profiling a 100-layer model (all four routines and the adapts, no cache) takes under a minute.

Run: ``python tests/bench/bench_profile.py [--layers 100] [--threads 2]``. Prints the wall time of each
step, the coverage, and exit status 1 when the total misses the target. A second run shows the
cached profile's time.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from engine.ir.graph import build_graph
from engine.progress import Progress, run
from engine.measure.profiler import ProfileOptions, profile_job
from tests import builders

__all__ = ["main"]

logger = logging.getLogger(__name__)

TARGET_S = 60.0


def _timed(graph, options: ProfileOptions) -> tuple[float, object, dict[str, float]]:
    steps: dict[str, float] = {}
    state = {"label": "start", "t": time.perf_counter()}

    def on_progress(p: Progress) -> None:
        label = p.message.split(":")[0].split(" ")[0:2]
        label = " ".join(label)
        if label != state["label"]:
            now = time.perf_counter()
            steps[state["label"]] = steps.get(state["label"], 0.0) + now - state["t"]
            state.update(label=label, t=now)

    start = time.perf_counter()
    result = run(profile_job(graph, options), on_progress)
    return time.perf_counter() - start, result, steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--layers", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    graph = build_graph(builders.conv_stack(args.layers, channels=16, size=16))
    with tempfile.TemporaryDirectory() as cache:
        options = ProfileOptions(threads=args.threads, cache_dir=Path(cache))
        total, prof, steps = _timed(graph, options)
        cached, _, _ = _timed(graph, options)
    print(f"{len(graph.layers)} layers, {len(graph.nodes)} nodes, {args.threads} threads")
    for label, seconds in sorted(steps.items(), key=lambda kv: -kv[1])[:8]:
        print(f"  {label:<28} {seconds:6.2f} s")
    print(f"profile: {total:.1f} s (target < {TARGET_S:.0f} s); from cache: {cached:.2f} s")
    print(f"end to end {prof.end_to_end.median:.3f} ms, coverage {prof.coverage:.1%} (raw {prof.raw_coverage:.1%})")
    return 0 if total < TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())

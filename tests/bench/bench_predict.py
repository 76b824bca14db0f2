"""Benchmark for the live prediction (engine.jobs.prediction.predict_plan) on a 1,000-node model.

Run ``python tests/bench/bench_predict.py [--blocks 200] [--repeats 9]``: times one prediction of the
all-fp32 plan with the graph's island walks cached (``engine.measure.graph_index``, as the window sees
it after its first prediction) and with the index cleared before each call (a graph's first
prediction), alternating, and prints medians, spreads (min..max) and CPU times. Target: a few ms.
(Before the index every prediction walked each border tensor several times: 46 ms of CPU here.)
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a checkout

from engine.jobs.prediction import predict_plan  # noqa: E402
from engine.measure import graph_index  # noqa: E402
from engine.model.plan import Plan  # noqa: E402
from tests.bench.bench_pdf import big_session  # noqa: E402

__all__ = ["main"]

logger = logging.getLogger(__name__)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        session = big_session(Path(tmp), args.blocks)
        graph, profile, sensitivity = session.graph, session.profile, session.sensitivity
        print(f"{len(graph.layers)} layers, {len(graph.nodes)} nodes")
        times: dict[str, list[tuple[float, float]]] = {"cached": [], "first": []}
        predict_plan(graph, Plan(), profile, sensitivity, 0.01)  # warm imports and the cache
        for _ in range(args.repeats):
            for name in ("first", "cached"):
                if name == "first":
                    graph_index._indexes.clear()
                wall, cpu = time.perf_counter(), time.process_time()
                predict_plan(graph, Plan(), profile, sensitivity, 0.01)
                times[name].append((time.perf_counter() - wall, time.process_time() - cpu))
        for name, runs in times.items():
            wall = [1000 * w for w, _ in runs]
            cpu = [1000 * c for _, c in runs]
            print(f"{name}: median {statistics.median(wall):.1f} ms ({min(wall):.1f}..{max(wall):.1f}), "
                  f"CPU median {statistics.median(cpu):.1f} ms")
        ratio = statistics.median(c for _, c in times["first"]) / statistics.median(c for _, c in times["cached"])
        print(f"CPU ratio first / cached: {ratio:.1f}")


if __name__ == "__main__":
    main()

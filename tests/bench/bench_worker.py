"""Benchmark: how soon a job starts in the window's persistent worker, cold (fresh process) and warm (same model).

Run: ``python tests/bench/bench_worker.py [--repeats N] [--model PATH]`` (default model: the fetched
``ppocr-rec`` example, else the embedded ``digits``). Each repeat starts a fresh ``Worker`` and runs,
on the same model: the window's Open job (``open cold``: process start, ONNX Runtime import, model
load, graph sent back), the Open job again (``open warm``: the worker kept the graph), then a Profile
job, timing from ``submit`` to its first progress message (``profile first``) and to the profiler's
own first step, which comes after the model is in hand (``profile loaded``). Prints every repeat,
then the median and range of each column, and exits 1 when the median ``profile first`` misses the
0.2 s target.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from engine.jobs import catalogue  # noqa: E402
from engine.jobs.worker import Outcome, Worker  # noqa: E402
from engine.measure.profiler import ProfileOptions  # noqa: E402
from engine.progress import Progress  # noqa: E402

__all__ = ["main"]

logger = logging.getLogger(__name__)

TARGET_S = 0.2


def _default_model() -> Path:
    from engine.errors import LayerLabError
    from engine.io.examples import fetch_example, get_example

    try:
        return fetch_example("ppocr-rec").model
    except (LayerLabError, OSError) as exc:
        print(f"ppocr-rec unavailable ({exc}); using digits", file=sys.stderr)
        return get_example("digits").model


def _round_trip(worker: Worker, name: str, kwargs: dict) -> float:
    start = time.perf_counter()
    outcome = worker.wait(worker.submit(name, kwargs), timeout=600)
    if outcome is None or not outcome.ok:
        raise SystemExit(f"{name} failed: {outcome}")
    return time.perf_counter() - start


def _first_messages(worker: Worker, kwargs: dict) -> tuple[float, float]:
    """Seconds from submitting Profile to its first progress and to its second (the profiler's first step)."""
    start = time.perf_counter()
    job = worker.submit(catalogue.PROFILE, kwargs)
    stamps: list[float] = []
    while len(stamps) < 2:
        for job_id, event in worker.poll():
            if job_id == job and isinstance(event, Progress):
                stamps.append(time.perf_counter() - start)
            elif job_id == job and isinstance(event, Outcome):
                raise SystemExit(f"the profile job ended early: {event.status} {event.message}")
        if len(stamps) < 2:
            worker._replies.poll(0.002)  # block briefly on the pipe rather than sleep a fixed step
    return stamps[0], stamps[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="ONNX file (default: ppocr-rec, else digits)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    model = Path(args.model) if args.model else _default_model()
    graph, shapes = catalogue.open_model(model)  # the window's shapes (unknown dims -> 1)
    cache = Path(tempfile.mkdtemp(prefix="layerlab-bench-worker-"))
    model_args = {"path": str(model), "input_shapes": shapes}
    kwargs = {**model_args, "options": ProfileOptions(cache_dir=cache)}
    print(f"{model.name}: {len(graph.nodes)} nodes; per fresh worker: Open, Open, Profile (stopped after 2 messages)")
    names = ("open cold", "open warm", "profile first", "profile loaded")
    print("repeat " + " ".join(f"{n:>14}" for n in names))
    rows = []
    for repeat in range(1, args.repeats + 1):
        worker = Worker()
        try:
            row = (_round_trip(worker, catalogue.OPEN_MODEL, model_args),
                   _round_trip(worker, catalogue.OPEN_MODEL, model_args), *_first_messages(worker, kwargs))
        finally:
            worker.close(timeout=0.1)  # the profile is left unfinished: stop it, kill the process
        rows.append(row)
        print(f"{repeat:>6} " + " ".join(f"{v:>13.3f}s" for v in row), flush=True)
    for i, name in enumerate(names):
        column = [r[i] for r in rows]
        print(f"{name:>14}: median {statistics.median(column):.3f} s (range {min(column):.3f}-{max(column):.3f} s)")
    warm_first = statistics.median(r[2] for r in rows)
    ok = warm_first < TARGET_S
    print(f"second job on the same model starts in {warm_first:.3f} s (target < {TARGET_S} s): "
          f"{'ok' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    sys.exit(main())

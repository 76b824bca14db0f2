"""Benchmark: a sensitivity sweep in one process against the same sweep split over 2 local worker processes.

Run: ``python tests/bench/bench_executors.py [--repeats N] [--model PATH] [--workers 2] [--threads T]``, on
ppocr-rec (the fetched example, the example's evaluator; ``$LAYERLAB_PPOCR_SAMPLES`` words) unless
``--model``/``--eval`` name another. Each repeat runs ``local`` and ``local:N`` side by side and
prints both wall times (everything the user waits for: worker start-up, each worker's evaluator and
baseline, the merge) and their ratio; then the median ratio with its range, and whether every drop
is identical to the one-process sweep. ``--threads`` is the one-process sweep's ORT threads (default:
the cores); each of N workers gets cores / N. Exit status 1 when drops differ.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from engine.evaluate.evaluator import load_evaluator  # noqa: E402
from engine.evaluate.executors import parse_executor  # noqa: E402
from engine.evaluate.sensitivity import SweepSettings  # noqa: E402
from engine.ir.graph import load_model  # noqa: E402
from engine.progress import run  # noqa: E402

__all__ = ["main"]

logger = logging.getLogger(__name__)

_EVALUATOR = Path(__file__).resolve().parents[2] / "resources" / "examples" / "ppocr_rec" / "evaluator.py"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="ONNX file (default: the fetched ppocr-rec example)")
    parser.add_argument("--eval", help="evaluator (default: the ppocr-rec example's)")
    parser.add_argument("--input", action="append", default=[], help="NAME=SHAPE for --model")
    parser.add_argument("--routines", default="int8")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    if args.model:
        from engine.ir.graph import parse_input_shape

        model_path, shapes = Path(args.model), dict(parse_input_shape(t) for t in args.input)
    else:
        from engine.io.examples import fetch_example

        model_path, shapes = fetch_example("ppocr-rec").model, {}
    graph = load_model(model_path, shapes)
    evaluator_path = args.eval or str(_EVALUATOR)
    routines = tuple(r for r in args.routines.split(",") if r)
    one = SweepSettings(routines=routines, threads=args.threads)
    split = SweepSettings(routines=routines, threads=max(1, args.threads // args.workers))
    print(f"{model_path.name}: {len(graph.layers)} layers, {len(load_evaluator(evaluator_path).samples())} samples, "
          f"routines {','.join(routines)}; local ({args.threads} threads) vs local:{args.workers} "
          f"({split.threads} thread(s) each)")
    ratios, identical = [], True
    for rep in range(args.repeats):
        times, drops = {}, {}
        for name, settings in (("local", one), (f"local:{args.workers}", split)):
            evaluator = load_evaluator(evaluator_path)  # each run pays for its evaluator, as a user's would
            start = time.perf_counter()
            result = run(parse_executor(name).sweep_job(graph, evaluator, settings))
            times[name] = time.perf_counter() - start
            drops[name] = {n: ls.drops for n, ls in result.layers.items()}
        a, b = times["local"], times[f"local:{args.workers}"]
        same = drops["local"] == drops[f"local:{args.workers}"]
        identical &= same
        ratios.append(b / a)
        print(f"repeat {rep + 1}: local {a:.2f} s, local:{args.workers} {b:.2f} s, ratio {b / a:.3f}; drops identical: {same}")
    print(f"median ratio local:{args.workers}/local {statistics.median(ratios):.3f} "
          f"(range {min(ratios):.3f}-{max(ratios):.3f}); drops identical in every repeat: {identical}")
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: the cached sensitivity sweep against the naive one on ppocr-rec, plus the accuracy evidence.

Run: ``python tests/bench/bench_sensitivity.py [--repeats N] [--routines int8] [--model PATH]``, on
the example's 200 evaluation words unless ``$LAYERLAB_PPOCR_SAMPLES`` says otherwise. Each repeat
runs the cached sweep and the naive sweep (one full evaluation per layer and routine) side by side
and prints both times and their ratio; then the median ratio (target <= 0.5) with its range, and
whether every drop is identical. Then the evidence: the fp32 metric, the whole-model int8 metric
(ORT's quantizer, same calibration), the metric with the k most int8-sensitive layers kept in fp32,
and the smallest k within 0.01 of fp32. Exit status 1 when the drops differ or the median ratio
misses the target.
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

from engine.evaluate.evaluator import evaluate, load_evaluator  # noqa: E402
from engine.ir.graph import load_model, upgrade_opset  # noqa: E402
from engine.passes.layer_variants import VariantBuilder, applicable  # noqa: E402
from engine.evaluate.sensitivity import SweepSettings, sweep  # noqa: E402

__all__ = ["main"]

logger = logging.getLogger(__name__)

TARGET_RATIO = 0.5
_EVALUATOR = Path(__file__).resolve().parents[2] / "resources" / "examples" / "ppocr_rec" / "evaluator.py"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="the PP-OCRv4 rec ONNX file (default: the fetched ppocr-rec example)")
    parser.add_argument("--routines", default="int8", help="comma-separated routines to sweep (default int8)")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=1, help="cached/naive pairs to run; the ratio's median is judged")
    args = parser.parse_args(argv)
    model_path = Path(args.model) if args.model else _fetched_model()
    os.environ.setdefault("LAYERLAB_MODEL", str(model_path))
    graph = load_model(model_path)
    routines = tuple(r for r in args.routines.split(",") if r)

    ratios: list[float] = []
    identical = True
    for rep in range(args.repeats):  # cached and naive side by side in each repeat
        timings, results = {}, {}
        for mode in ("cached", "naive"):
            evaluator = load_evaluator(_EVALUATOR)
            count = len(evaluator.samples())  # rendering the images is the evaluator's cost, not the sweep's
            if not ratios and not timings:
                print(f"ppocr-rec: {len(graph.layers)} layers, {count} samples, routines {','.join(routines)}")
            evaluator.calibration()
            start = time.perf_counter()
            results[mode] = sweep(graph, evaluator, SweepSettings(routines=routines, cached=mode == "cached", threads=args.threads))
            timings[mode] = time.perf_counter() - start
        cached, naive = results["cached"], results["naive"]
        same = cached.baseline == naive.baseline and set(cached.layers) == set(naive.layers) and all(
            cached.layers[name].drops == naive.layers[name].drops for name in naive.layers
        )
        identical = identical and same
        ratios.append(timings["cached"] / timings["naive"])
        print(f"run {rep + 1}: cached {timings['cached']:7.2f} s, naive {timings['naive']:7.2f} s, "
              f"ratio {ratios[-1]:.3f}; drops identical: {same}")
    ratio = statistics.median(ratios)
    print(f"ratio cached/naive: median {ratio:.3f} (min {min(ratios):.3f}, max {max(ratios):.3f}, "
          f"{len(ratios)} runs; target <= {TARGET_RATIO}); drops identical: {identical}")

    _evidence(graph, cached, args.threads)
    return 0 if identical and ratio <= TARGET_RATIO else 1


def _evidence(graph, sensitivity, threads: int) -> None:  # type: ignore[no-untyped-def]
    """fp32, whole-model int8 and k most sensitive layers kept in fp32, all at ORT's default optimization."""
    if "int8" not in next(iter(sensitivity.layers.values())).drops:
        return
    evaluator = load_evaluator(_EVALUATOR)
    base = upgrade_opset(graph.model, 13)
    fp32 = evaluate(base, evaluator, threads=threads).metric
    ranking = sensitivity.ranking("int8")
    int8_layers = [n.name for n in graph.layers if applicable(graph, n, "int8")]
    print(f"\nfp32 metric: {fp32:.4f}")
    print("most int8-sensitive layers: " + ", ".join(f"{n} ({sensitivity.layers[n].drops['int8']:+.4f})" for n in ranking[:8]))
    smallest = None
    with VariantBuilder(base, evaluator.calibration()) as builder:
        for k in (0, 1, 2, 3, 4, 6, 8, 12, 16, 24):
            if k > len(ranking):
                break
            kept = set(ranking[:k])
            metric = evaluate(builder.build([n for n in int8_layers if n not in kept], "int8"), evaluator, threads=threads).metric
            label = "whole-model int8" if k == 0 else f"int8 with the {k} most sensitive kept fp32"
            print(f"{label:>42}: {metric:.4f} (fp32 - {fp32 - metric:.4f})")
            if smallest is None and fp32 - metric <= 0.01:
                smallest = k
    print(f"smallest k within 0.01 of fp32: {smallest if smallest is not None else 'not reached in the ks tried'}")


def _fetched_model() -> Path:
    from engine.io.examples import fetch_example

    example = fetch_example("ppocr-rec")
    assert example.model is not None
    return example.model


if __name__ == "__main__":
    sys.exit(main())

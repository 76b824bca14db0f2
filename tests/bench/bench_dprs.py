"""Benchmark: DPRS on a ResNet-like graph of 500 layers x 4 routines must solve in under 50 ms.

Run: ``python tests/bench/bench_dprs.py [--layers 500] [--repeats 30]``. Prints median and spread of
the unconstrained solve (the target) and, for information, of solves under an accuracy budget and a
memory limit. Exit status 1 when the unconstrained median misses the target.
"""

from __future__ import annotations

import argparse
import logging
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from engine.optimize.dprs import Constraints, Problem, solve

__all__ = ["main", "resnet_like"]

logger = logging.getLogger(__name__)

ROUTINES = ("fp32", "int8", "int8_dynamic", "fp16")
TARGET_MS = 50.0


def resnet_like(n_layers: int, seed: int = 0) -> Problem:
    """Stem conv, then residual blocks conv-relu-conv(-downsample conv on the skip)-add-relu.

    Convs are layers with 4 routines; relu/add are ops with one routine (fp32), as in a collapsed graph.
    """
    rng = random.Random(seed)
    nodes: list[str] = []
    edges: list[tuple[str, str]] = []
    times: dict[str, dict[str, float]] = {}
    drops: dict[str, dict[str, float]] = {}
    nbytes: dict[str, dict[str, int]] = {}
    layers = 0

    def add(name: str, srcs: list[str], layer: bool) -> str:
        nonlocal layers
        nodes.append(name)
        edges.extend((s, name) for s in srcs)
        if layer:
            layers += 1
            base = rng.uniform(0.2, 2.0)
            times[name] = {"fp32": base, "int8": base / rng.uniform(2.0, 4.0),
                           "int8_dynamic": base * rng.uniform(5.0, 8.0), "fp16": base * rng.uniform(1.0, 1.2)}
            drops[name] = {"fp32": 0.0, "int8": rng.uniform(0, 0.004), "int8_dynamic": rng.uniform(0, 0.002),
                           "fp16": rng.uniform(0, 0.0005)}
            size = rng.randint(1, 64) * 9216
            nbytes[name] = {"fp32": 4 * size, "int8": size, "int8_dynamic": size, "fp16": 2 * size}
        else:
            times[name] = {"fp32": rng.uniform(0.01, 0.05)}
        return name

    x = add("stem", [add("input", [], False)], True)
    block = 0
    while layers < n_layers:
        block += 1
        h = add(f"b{block}_relu1", [add(f"b{block}_conv1", [x], True)], False)
        h = add(f"b{block}_conv2", [h], True)
        skip = x
        if block % 4 == 0 and layers < n_layers:
            skip = add(f"b{block}_down", [x], True)
        x = add(f"b{block}_relu2", [add(f"b{block}_add", [h, skip], False)], False)
    add("output", [x], False)
    adapt = {e: {(a, b): 0.0 if a == b else rng.uniform(0.01, 0.13) for a in ROUTINES for b in ROUTINES}
             for e in edges}
    return Problem(nodes, edges, times, adapt, drops, nbytes)


def _time(problem: Problem, constraints: Constraints, repeats: int) -> tuple[list[float], float]:
    runs, latency = [], 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        route = solve(problem, constraints)
        runs.append((time.perf_counter() - t0) * 1000)
        latency = route.latency_ms
    return runs, latency


def _line(label: str, runs: list[float], latency: float) -> str:
    q = statistics.quantiles(runs, n=10, method="inclusive")
    return (f"{label:<28} median {statistics.median(runs):7.2f} ms  min {min(runs):7.2f}  "
            f"p10 {q[0]:7.2f}  p90 {q[-1]:7.2f}  max {max(runs):7.2f}  (route {latency:.3f} ms)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args(argv)
    problem = resnet_like(args.layers)
    n_layers = sum(1 for t in problem.times.values() if len(t) > 1)
    print(f"ResNet-like graph: {n_layers} layers x {len(ROUTINES)} routines, {len(problem.nodes)} nodes, "
          f"{len(problem.edges)} edges, {args.repeats} repeats")
    free, latency = _time(problem, Constraints(), args.repeats)
    print(_line("unconstrained", free, latency))
    fp32 = sum(t["fp32"] for t in problem.times.values())
    print(f"{'':<28} all-fp32 route would be {fp32:.3f} ms (+0 adapts)")
    best = solve(problem)
    least = sum(min(b.values()) for b in problem.weight_bytes.values())
    for label, cons in [("max_drop = half", Constraints(max_drop=best.drop / 2)),
                        ("memory_limit = binding", Constraints(memory_limit=(best.weight_bytes + least) // 2)),
                        ("both", Constraints(max_drop=best.drop / 2, memory_limit=best.weight_bytes * 2))]:
        runs, latency = _time(problem, cons, max(3, args.repeats // 5))
        print(_line(label, runs, latency) + ("" if solve(problem, cons).feasible else " INFEASIBLE"))
    ok = statistics.median(free) < TARGET_MS
    print(f"target: unconstrained median < {TARGET_MS:.0f} ms -> {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

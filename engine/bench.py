"""Benchmark side by side in one run: ORT fp32, ORT's whole-model int8, and LayerLab's tuned route.

Rows: ``ort-fp32`` (the model as given, ORT_ENABLE_ALL), ``ort-int8`` (``quantize_whole_model``: ORT's
quantize_static, QDQ U8S8 per-channel, calibrated on the same inputs as the route) and ``layerlab``
(the route from ``tune_job``, or a saved session's plan). Latency is timed with the sessions
interleaved (blocks of runs of each in turn, same thread count) so drift on a shared machine hits every row
alike; each row reports median and p10/p90, speedup against ort-fp32, metric, drop and file size.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx

from engine.evaluate import Evaluator, ensure_reference, evaluate_job
from engine.graph import ModelGraph
from engine.jobs import Job, Progress
from engine.profiler import Stats

__all__ = ["BenchResult", "BenchRow", "bench_job", "interleaved_latency"]

logger = logging.getLogger(__name__)


@dataclass
class BenchRow:
    """One contender: latency over the interleaved repeats, metric and serialized size."""

    name: str
    ms: Stats
    metric: float
    bytes: int
    speedup: float = 1.0  # ort-fp32 median / this median
    drop: float = 0.0  # ort-fp32 metric - this metric

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "ms": self.ms.median, "p10": self.ms.p10, "p90": self.ms.p90,
                "speedup": self.speedup, "metric": self.metric, "drop": self.drop, "bytes": self.bytes}


@dataclass
class BenchResult:
    """All rows of one run, and the route's predicted latency (None when there is no route)."""

    rows: list[BenchRow]
    predicted_ms: float | None
    threads: int
    repeats: int
    routines: dict[str, str]
    ops: str = "fp32"  # the route plan's "ops"

    def row(self, name: str) -> BenchRow:
        return next(r for r in self.rows if r.name == name)

    def to_json(self) -> dict[str, Any]:
        return {"rows": [r.to_json() for r in self.rows], "predicted_ms": self.predicted_ms,
                "threads": self.threads, "repeats": self.repeats, "routines": dict(self.routines),
                "ops": self.ops}


# ORT's intra-op threads spin for a while after each run; a session run right after another one
# competes with those spinning threads (ppocr-rec, 2 threads: 23 ms one-run-each vs 9.0 ms alone).
# Taking turns in blocks and dropping the first runs of each block measures every model as it
# runs alone (9.0 ms), while still spreading drift on a shared machine over every row.
BLOCK = 10
SETTLE = 2
# Where ORT's threads land is fixed for a session's life and differs between sessions: one session of
# the digits model measures 22.6 us for good, the next 32 us. Each model runs in SESSIONS fresh
# sessions and reports the one with the lowest median, so a comparison is not decided by placement.
SESSIONS = 3


def interleaved_latency(models: dict[str, onnx.ModelProto], feeds: dict[str, np.ndarray], threads: int,
                        repeats: int, warmup: int = 5, sessions: int = SESSIONS) -> Job[dict[str, Stats]]:
    """Per model, latency over ``repeats`` counted runs in each of ``sessions`` sessions, taken in turns:
    ``BLOCK`` runs of each session in turn, the first ``SETTLE`` of every block not counted (the previous
    session's threads still spin). A model's stats are those of its session with the lowest median."""
    from engine.profile_measure import make_session, time_runs

    pool = {(name, k): make_session(m, threads, name) for name, m in models.items() for k in range(max(sessions, 1))}
    for (name, _), s in pool.items():
        yield from time_runs(s, feeds, warmup, name)
    times: dict[tuple[str, int], list[float]] = {key: [] for key in pool}
    counted = BLOCK - SETTLE
    while min(len(t) for t in times.values()) < repeats:
        for key, s in pool.items():
            runs = yield from time_runs(s, feeds, SETTLE + min(counted, repeats - len(times[key])), key[0])
            times[key] += runs[SETTLE:]
        yield Progress(min(len(t) for t in times.values()), repeats, "timing (in turns)")
    best: dict[str, Stats] = {}
    for (name, _), runs in times.items():
        stats = Stats.of(runs)
        if name not in best or stats.median < best[name].median:
            best[name] = stats
    return best


def bench_job(graph: ModelGraph, evaluator: Evaluator, *, repeats: int = 100, threads: int | None = None,
              route_model: onnx.ModelProto | None = None, predicted_ms: float | None = None,
              routines: dict[str, str] | None = None, tune_options: Any = None, ops: str = "fp32") -> Job[BenchResult]:
    """Bench the three rows. Without ``route_model`` the route comes from ``tune_job`` (``tune_options``)."""
    from engine.profile_measure import physical_cores
    from engine.profile_variants import random_feeds
    from engine.transforms.precision import quantize_whole_model

    threads = threads or physical_cores()
    feeds = random_feeds(graph)
    if route_model is None:
        from engine.tune import TuneOptions, tune_job

        opts = tune_options or TuneOptions(threads=threads)
        tuned = yield from tune_job(graph, evaluator, opts)
        route_model, predicted_ms, routines, ops = tuned.model, tuned.ms_predicted, tuned.layer_routines(), tuned.plan.ops
    yield Progress(0, 3, "building ort-int8")
    int8 = quantize_whole_model(graph.model, evaluator.calibration())
    models = {"ort-fp32": graph.model, "ort-int8": int8, "layerlab": route_model}
    ensure_reference(evaluator, graph.model)
    metrics = {}
    for i, (name, model) in enumerate(models.items()):
        yield Progress(i, 3, f"scoring {name}")
        metrics[name] = (yield from evaluate_job(model, evaluator, threads=threads)).metric
    stats = yield from interleaved_latency(models, feeds, threads, repeats)
    base = stats["ort-fp32"].median
    rows = [BenchRow(name, stats[name], metrics[name], model.ByteSize(), base / stats[name].median,
                     metrics["ort-fp32"] - metrics[name]) for name, model in models.items()]
    return BenchResult(rows, predicted_ms, threads, repeats, dict(routines or {}), ops)

"""Benchmark side by side in one run: ORT fp32, ORT's whole-model int8, and LayerLab's tuned route.

Rows: ``ort-fp32`` (the model as given, ORT_ENABLE_ALL), ``ort-int8`` (``quantize_whole_model``: ORT's
quantize_static, QDQ U8S8 per-channel, calibrated on the same inputs as the route), ``layerlab``
(the route from ``tune_job``, or a saved session's plan) and, when asked, the peers' rows
(``engine.optimize.peers``: ``nncf``, ``nncf-ac``), calibrated on the same inputs and scored by the
same evaluator. With ``compare_methods``, a second tune without the int8 methods (MinMax calibration
only, no CLE, bias correction, SmoothQuant or symmetric ranges) gives the row ``layerlab-plain`` beside
``layerlab`` (the tune with them), so what the methods buy is read off one interleaved run. Latency is timed with the sessions interleaved (blocks of runs of each in turn, same
thread count, on the evaluator's sample: ``engine.optimize.timing_feeds``) so drift on a shared
machine hits every row alike; each row reports median and p10/p90, speedup against ort-fp32, metric,
drop and file size.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import onnx

from engine.errors import SettingsError
from engine.evaluate.evaluator import Evaluator, ensure_reference, evaluate_job
from engine.ir.graph import ModelGraph
from engine.progress import Job, Progress
from engine.measure.interleave import interleaved_latency
from engine.measure.profiler import Stats

__all__ = ["PLAIN", "BenchResult", "BenchRow", "bench_job"]

logger = logging.getLogger(__name__)

#: the row of the route tuned without the int8 methods (``compare_methods``)
PLAIN = "layerlab-plain"


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
    feeds: str = ""  # what every row was timed on (engine.optimize.timing_feeds)
    # fp32 end to end in the profile the prediction comes from: beside this run's fp32 it shows how far the
    # machine's load moved between profile and timing (a prediction carries the profile's load)
    profiled_fp32_ms: float | None = None
    # the route tuned without the int8 methods (compare_methods): its "routines", "ops", "predicted_ms"
    plain: dict[str, Any] | None = None

    @property
    def load_change(self) -> float | None:
        """This run's fp32 median over the profile's, minus 1 (+0.5: the machine is 50 % slower now)."""
        if not self.profiled_fp32_ms:
            return None
        return self.row("ort-fp32").ms.median / self.profiled_fp32_ms - 1.0

    @property
    def speedup_error(self) -> float | None:
        """The predicted speed-up (the profile's fp32 over the prediction) over the measured one (this run's
        fp32 over the route), minus 1: both are ratios within one timing, so the load each was taken under
        cancels, where the ms error carries the load's move between profile and timing."""
        if not self.profiled_fp32_ms or not self.predicted_ms:
            return None
        predicted = self.profiled_fp32_ms / self.predicted_ms
        return predicted / self.row("layerlab").speedup - 1.0

    def row(self, name: str) -> BenchRow:
        return next(r for r in self.rows if r.name == name)

    def to_json(self) -> dict[str, Any]:
        return {"rows": [r.to_json() for r in self.rows], "predicted_ms": self.predicted_ms,
                "threads": self.threads, "repeats": self.repeats, "routines": dict(self.routines),
                "ops": self.ops, "timing_feeds": self.feeds, "profiled_fp32_ms": self.profiled_fp32_ms,
                "load_change": self.load_change, "speedup_error": self.speedup_error} | (
                    {"plain": self.plain} if self.plain is not None else {})


def bench_job(graph: ModelGraph, evaluator: Evaluator, *, repeats: int = 100, threads: int | None = None,
              route_model: onnx.ModelProto | None = None, predicted_ms: float | None = None,
              routines: dict[str, str] | None = None, tune_options: Any = None, ops: str = "fp32",
              peers: Sequence[str] = (), accuracy_control: bool = False,
              profiled_fp32_ms: float | None = None, compare_methods: bool = False) -> Job[BenchResult]:
    """Bench the three rows and the ``peers``' (``engine.optimize.peers.PEERS``; ``accuracy_control`` adds
    NNCF's accuracy-controlled row at the tune's max drop). Without ``route_model`` the route comes from
    ``tune_job`` (``tune_options``); ``compare_methods`` adds ``PLAIN``, the route of the same tune without
    its calibration methods and int8 methods."""
    from engine.measure.timing import physical_cores
    from engine.optimize.timing_feeds import timing_feeds
    from engine.evaluate.calibration import calibration_for
    from engine.optimize.peers import check_peers, peer_models
    from engine.passes.precision import quantize_whole_model

    check_peers(peers)  # before the tune: a missing peer is known at once
    plain_options = _plain_options(tune_options) if compare_methods else None
    if compare_methods and route_model is not None:
        raise SettingsError("comparing the int8 methods needs a tune: not with a given route (--session)")
    target = getattr(tune_options, "target", None)
    threads = threads or (int(target.info().get("cores") or 1) if target is not None else physical_cores())
    calibration = calibration_for(graph, evaluator).samples
    ensure_reference(evaluator, graph.model)
    max_drop = float(getattr(tune_options, "max_drop", 0.01))
    # the peers before the tune: a peer that fails on this model fails before minutes of tuning
    peer_rows = yield from peer_models(graph.model, calibration, evaluator, peers, max_drop=max_drop,
                                       accuracy_control=accuracy_control, threads=threads)
    timing = timing_feeds(graph, evaluator)  # the tune below times on the same sample
    plain_model, plain = None, None
    if route_model is None:
        from engine.optimize.tune import TuneOptions, tune_job

        opts = tune_options or TuneOptions(threads=threads)
        tuned = yield from tune_job(graph, evaluator, opts)
        route_model, predicted_ms, routines, ops = tuned.model, tuned.ms_predicted, tuned.layer_routines(), tuned.plan.ops
        profiled_fp32_ms = tuned.profile.end_to_end.median
        if plain_options is not None:
            yield Progress(0, 1, "tuning again without the int8 methods")
            other = yield from tune_job(graph, evaluator, plain_options)
            plain_model = other.model
            plain = {"routines": other.layer_routines(), "ops": other.plan.ops, "predicted_ms": other.ms_predicted}
    yield Progress(0, 3, "building ort-int8")
    int8 = quantize_whole_model(graph.model, calibration)
    models = {"ort-fp32": graph.model, "ort-int8": int8, "layerlab": route_model} | (
        {PLAIN: plain_model} if plain_model is not None else {}) | peer_rows
    metrics = {}
    for i, (name, model) in enumerate(models.items()):
        yield Progress(i, len(models), f"scoring {name}")
        metrics[name] = (yield from evaluate_job(model, evaluator, threads=threads)).metric
    if target is not None:
        stats = yield from target.latency_job(models, timing.feeds, threads, repeats)
    else:
        stats = yield from interleaved_latency(models, timing.feeds, threads, repeats)
    base = stats["ort-fp32"].median
    rows = [BenchRow(name, stats[name], metrics[name], model.ByteSize(), base / stats[name].median,
                     metrics["ort-fp32"] - metrics[name]) for name, model in models.items()]
    return BenchResult(rows, predicted_ms, threads, repeats, dict(routines or {}), ops, timing.source,
                       profiled_fp32_ms or None, plain)


def _plain_options(options: Any) -> Any:
    """``options`` without calibration methods beyond MinMax and without int8 methods; SettingsError when
    it has none of them (there would be nothing to compare)."""
    from dataclasses import replace

    from engine.optimize.tune import TuneOptions

    options = options or TuneOptions()
    if tuple(options.calibration) == ("minmax",) and not options.int8_methods:
        raise SettingsError("comparing the int8 methods needs some: give --int8-methods (or --calibration beyond minmax)")
    return replace(options, calibration=("minmax",), int8_methods=())

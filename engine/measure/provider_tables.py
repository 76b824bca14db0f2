"""Execution providers as routine sources: per-layer routine times on each provider, and the cost of
crossing between providers.

Providers that compile subgraphs (OpenVINO, TensorRT) show one kernel per compiled subgraph in ORT's
profiler, so no layer can be timed from a whole-model trace. Here every **segment** (a layer and the
ops after it, ``engine.ir.partition.segments``) is cut out of the fp32 model at the profiled shapes as
a micro-model (the parts of ``engine.measure.partition``, one per segment), fed the fp32 values the
whole model computes there, and timed on each provider, in fp32 and with its layer in int8 (QDQ,
calibrated on those values). The micro-models are built where LayerLab runs (int8 needs its ONNX
Runtime's quantizer) and timed by ``time_segments_job``: here, or on a target by the agent's
``routines`` job (data only: models and arrays). ORT's fixed cost per ``run()`` on that provider (a one-node model) is
taken off. The times become routines named by provider (``fp32@OpenVINO``, ``int8@OpenVINO``) in the
same tables DPRS reads (``LayerProfile.routines``; ``merge``).

**Crossings.** Handing a tensor from a session on one provider to a session on another costs the
output copy and the next session's entry. For each ordered pair of providers, and a few tensor sizes,
``A ; B`` (a one-node session on the source, its output fed to a one-node session on the destination)
is timed against the mean of ``A + B`` in one session on each side; the difference, fitted as
``fixed_ms + ms_per_mb * MB`` (least squares, clamped at 0), prices every border in
``engine.measure.provider_costs``.

Tables are cached per provider (the key holds the model, shapes, ORT, CPU and threads; a remote target's
are cached by ``RemoteTarget`` under the target's identity), so adding a provider reuses the others.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

from engine.errors import LayerLabError, SettingsError
from engine.ir.graph import ModelGraph, build_graph
from engine.ir.partition import Chunk, segments
from engine.measure.cache import ProfileCache, cache_key, cpu_model
from engine.measure.feeds import feeds_digest
from engine.ir.feeds import random_feeds
from engine.measure.partition import build_parts, partition
from engine.measure.predict import predict_ms
from engine.measure.providers import CPU, routine_on, short_name, split_routine
from engine.measure.tables import Profile, Stats
from engine.measure.timing import check_provider, make_session, physical_cores, time_runs
from engine.passes.precision import PrecisionPass
from engine.progress import Job, Progress, run

__all__ = ["CROSSING_SIZES", "ProviderTables", "Segment", "TableOptions", "crossing_fit", "merge", "provider_tables",
           "provider_tables_job", "segment_models", "time_segments_job", "with_providers_job"]

logger = logging.getLogger(__name__)

#: Tensor sizes (bytes) the crossing fit is measured at: 16 KB to 4 MB, activations of small to mid models.
CROSSING_SIZES = (16 * 1024, 256 * 1024, 1024 * 1024, 4 * 1024 * 1024)
_MB = 1024.0 * 1024.0
_SCALE_BOUNDS = (0.1, 4.0)  # segments alone vs in a route; beyond these something else went wrong


@dataclass(frozen=True)
class TableOptions:
    """Which providers and routines to time, and how. ``threads`` None: the machine's physical cores."""

    providers: tuple[str, ...]
    routines: tuple[str, ...] = ("fp32", "int8")
    threads: int | None = None
    warmup: int = 3
    repeats: int = 15
    seed: int = 0
    feeds: Mapping[str, np.ndarray] | None = None
    crossings: bool = True
    use_cache: bool = True
    cache_dir: Path | None = None


@dataclass
class ProviderTables:
    """layer -> routine@provider -> ms; why a routine could not run; crossings; each provider's run cost
    and, in ``whole``, the latency of the route with every layer it can run on it (fp32@<EP> -> stats)."""

    routines: dict[str, dict[str, float]] = field(default_factory=dict)
    unsupported: dict[str, dict[str, str]] = field(default_factory=dict)
    crossings: dict[str, list[float]] = field(default_factory=dict)
    run_ms: dict[str, float] = field(default_factory=dict)
    whole: dict[str, dict[str, float]] = field(default_factory=dict)  # routine@provider -> Stats fields

    def to_json(self) -> dict[str, Any]:
        return {"routines": self.routines, "unsupported": self.unsupported, "crossings": self.crossings,
                "run_ms": self.run_ms, "whole": self.whole}

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> ProviderTables:
        return ProviderTables(**{k: dict(data.get(k, {})) for k in ("routines", "unsupported", "crossings", "run_ms", "whole")})


def provider_tables(graph: ModelGraph, options: TableOptions, timer: Timer | None = None,
                    identity: Mapping[str, Any] | None = None) -> ProviderTables:
    """Run ``provider_tables_job`` to the end."""
    return run(provider_tables_job(graph, options, timer, identity))


def provider_tables_job(graph: ModelGraph, options: TableOptions, timer: Timer | None = None,
                        identity: Mapping[str, Any] | None = None) -> Job[ProviderTables]:
    """Time every segment on every provider in ``options``; cached per provider. See the module docstring.

    The micro-models are built here (int8 needs this ONNX Runtime's quantizer); ``timer`` times them:
    ``time_segments_job`` in this process (the default), or a remote target's ``routines`` job, whose
    ``identity`` then keys the cache instead of this machine's."""
    import onnxruntime as ort

    if not options.providers:
        raise SettingsError(f"{graph.label}: name at least one execution provider to time routines on")
    bad = [r for r in options.routines if r not in ("fp32", "int8")]
    if bad:
        raise SettingsError(f"{graph.label}: routine {bad[0]!r} per provider: only fp32 and int8 are timed per provider")
    if CPU in options.providers:
        raise SettingsError(f"{graph.label}: the CPU provider's routines come from the profile (in context), not per provider")
    threads = options.threads or physical_cores()
    if timer is None:
        for p in options.providers:
            check_provider(p, graph.label)
        timer = time_segments_job
    feeds = dict(options.feeds) if options.feeds is not None else random_feeds(graph, options.seed)
    where = dict(identity) if identity is not None else {"ort": ort.__version__, "cpu": cpu_model()}
    shapes = {k: list(v.shape) for k, v in feeds.items()}
    cache = ProfileCache(options.cache_dir, options.use_cache)
    out = ProviderTables()
    entries: list[Segment] | None = None
    try:
        for p in options.providers:
            key = cache_key("provider-tables", model=graph.sha256, provider=p, shapes=shapes, routines=list(options.routines),
                            repeats=options.repeats, threads=threads, where=where, crossings=options.crossings, method=3,
                            feeds=feeds_digest(feeds) if options.feeds is not None else options.seed)
            data = cache.get(key)
            if data is None:
                if entries is None:
                    yield Progress(0, 0, "cutting the segments into micro-models")
                    entries = segment_models(graph, options.routines, feeds, threads)
                data = yield from timer(entries, graph.model, feeds, p, threads, options)
                cache.put(key, data)
            tables = ProviderTables.from_json(data)
            for layer, table in tables.routines.items():
                out.routines.setdefault(layer, {}).update(table)
            for layer, table in tables.unsupported.items():
                out.unsupported.setdefault(layer, {}).update(table)
            out.run_ms.update(tables.run_ms)
            out.whole.update(tables.whole)
            out.crossings.update(tables.crossings)
    finally:
        cache.close()
    return out


def with_providers_job(graph: ModelGraph, profile: Profile, options: TableOptions, target: Any = None) -> Job[Profile]:
    """``profile`` with the routine tables of ``options.providers`` merged in (``merge``): timed here, or on
    ``target`` (an ``engine.measure.remote.RemoteTarget``: its ``routines`` job, cached under its identity).
    What ``profile --providers`` and ``tune --providers`` both run."""
    timer, identity = (None, None) if target is None else (target.routines_timer(), target.identity())
    tables = yield from provider_tables_job(graph, options, timer, identity)
    return merge(profile, tables, graph)


@dataclass(frozen=True)
class Segment:
    """One segment's micro-model in one precision, and the inputs it is timed on."""

    layer: str
    routine: str  # fp32 or int8 (the provider is the timer's)
    model: onnx.ModelProto
    feeds: dict[str, np.ndarray]


def segment_models(graph: ModelGraph, routines: Sequence[str], feeds: Mapping[str, np.ndarray],
                   threads: int = 1) -> list[Segment]:
    """Every segment cut out of the fp32 model, fed the fp32 values there, in each routine (int8: its layer
    in QDQ, calibrated on those values); a segment whose int8 conversion fails is left out of int8."""
    runs = [Chunk(CPU, tuple(nodes)) for nodes in segments(graph).values()]
    parts = build_parts(graph, runs, {}, feeds, threads)
    values = parts.session(threads, graph.label).run_all(feeds)
    out = []
    for layer, part in zip(segments(graph), parts.parts):
        sample = {t: values[t] for t in part.inputs}
        for base in routines:
            try:
                model = part.model if base == "fp32" else _int8(part.model, layer, sample, graph.label)
            except LayerLabError as exc:
                logger.info("%s", exc)
                continue
            out.append(Segment(layer, base, model, sample))
    return out


Timer = Callable[[Sequence[Segment], onnx.ModelProto, Mapping[str, np.ndarray], str, int, TableOptions],
                 Job[dict[str, Any]]]


def time_segments_job(entries: Sequence[Segment], whole: onnx.ModelProto, feeds: Mapping[str, np.ndarray],
                      provider: str, threads: int, options: TableOptions) -> Job[dict[str, Any]]:
    """Time ``entries`` on ``provider`` here, then every layer it ran there in one route (parts of the
    ``whole`` fp32 model), and the crossings between it and CPU: ``ProviderTables`` JSON. Runs only models
    it is given, parts cut from them and one-node models of its own (an agent's job)."""
    run_ms = yield from _run_cost(provider, threads)
    routines: dict[str, dict[str, float]] = {}
    unsupported: dict[str, dict[str, str]] = {}
    for i, seg in enumerate(entries):
        name = routine_on(seg.routine, provider)
        yield Progress(i, len(entries), f"{provider}: {seg.layer} {seg.routine}")
        try:
            session = make_session(seg.model, threads, f"{seg.layer} [{name}]", provider=provider)
            yield from time_runs(session, seg.feeds, options.warmup, seg.layer)
            times = yield from time_runs(session, seg.feeds, options.repeats, seg.layer)
        except LayerLabError as exc:
            unsupported.setdefault(seg.layer, {})[name] = str(exc)
            continue
        routines.setdefault(seg.layer, {})[name] = max(float(np.median(times)) - run_ms, 0.0)
    # The route with every layer it can run on the provider, as parts (fp32: cut only, no quantizer): the
    # segments in context, which ``merge`` scales the micro-model times to.
    graph = build_graph(whole, {k: tuple(v.shape) for k, v in feeds.items()})
    fp32 = routine_on("fp32", provider)
    route = partition(graph, {layer: fp32 for layer, table in routines.items() if fp32 in table}, feeds, threads)
    yield Progress(0, 0, f"{provider}: every layer it runs, in {len(route.parts)} part(s)")
    session = route.session(threads, f"all on {provider}")
    yield from time_runs(session, dict(feeds), options.warmup, "route")
    stats = Stats.of((yield from time_runs(session, dict(feeds), options.repeats, "route")))
    crossings = {}
    if options.crossings:
        for a, b in ((CPU, provider), (provider, CPU)):
            yield Progress(0, 0, f"crossing {short_name(a)} -> {short_name(b)}")
            crossings[f"{a}>{b}"] = list(crossing_fit((yield from _crossing_points(a, b, threads))))
    return {"routines": routines, "unsupported": unsupported, "run_ms": {provider: run_ms}, "crossings": crossings,
            "whole": {fp32: {"median": stats.median, "p10": stats.p10, "p90": stats.p90}}}


def merge(profile: Profile, tables: ProviderTables, graph: ModelGraph) -> Profile:
    """``profile`` with the provider routines in its layers' tables (scaled to context), the crossings and
    each provider's all-layers route.

    A segment costs more alone than inside a part (each micro-model pays its own inference start: thread
    wake-up, input and output copies), so per provider the micro times are scaled by one factor that makes
    the route with every layer on that provider predict what it measured: ``(measured - the rest) /
    (segments' sum)``, the rest being the route's CPU layers and crossings; within ``_SCALE_BOUNDS``
    (``Profile.provider_scale``; the same kind of correction as the adapts' ``adapt_scale``)."""
    layers = []
    for lp in profile.layers:
        lp = replace(lp, routines=dict(lp.routines), unsupported=dict(lp.unsupported))
        lp.routines.update(tables.routines.get(lp.name, {}))
        lp.unsupported.update(tables.unsupported.get(lp.name, {}))
        layers.append(lp)
    variants = dict(profile.variants)
    variants.update({r: Stats(**s) for r, s in tables.whole.items()})
    raw = replace(profile, layers=layers, crossings={**profile.crossings, **tables.crossings}, variants=variants)
    scale = dict(profile.provider_scale)
    for fp32, stats in tables.whole.items():
        route = {lp.name: fp32 for lp in layers if fp32 in lp.routines}
        ep = sum(lp.routines[fp32] for lp in layers if fp32 in lp.routines)
        if ep <= 0:
            continue
        rest = predict_ms(raw, graph, route) - ep
        scale[split_routine(fp32)[1]] = min(max((float(stats["median"]) - rest) / ep, _SCALE_BOUNDS[0]), _SCALE_BOUNDS[1])
    for lp in layers:
        for r in lp.routines:
            provider = split_routine(r)[1]
            if provider in scale and provider != CPU and r in tables.routines.get(lp.name, {}):
                lp.routines[r] = tables.routines[lp.name][r] * scale[provider]
    return replace(raw, provider_scale=scale)


def crossing_fit(points: Sequence[tuple[int, float]]) -> tuple[float, float]:
    """(fixed ms, ms per MB): least squares over (bytes, ms) points, each part clamped at 0."""
    x = np.array([b / _MB for b, _ in points], dtype=float)
    y = np.array([ms for _, ms in points], dtype=float)
    if len(points) < 2 or np.ptp(x) == 0:
        return max(float(y.mean()) if len(y) else 0.0, 0.0), 0.0
    slope, fixed = np.polyfit(x, y, 1)
    if slope < 0:  # noise on a flat cost: the mean, no slope
        return max(float(y.mean()), 0.0), 0.0
    if fixed < 0:  # a line through the origin, fitted alone
        return 0.0, max(float((x @ y) / (x @ x)), 0.0)
    return float(fixed), float(slope)


# --- steps ---------------------------------------------------------------------------------------


def _int8(model: onnx.ModelProto, layer: str, sample: Mapping[str, np.ndarray], label: str) -> onnx.ModelProto:
    try:
        return PrecisionPass(calibration=[dict(sample), dict(sample)], int8=[layer])(model).model
    except SettingsError as exc:
        raise LayerLabError(f"{label}: int8 of {layer} failed ({exc})") from None


def _neg(n: int, count: int) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """``count`` Negs in a chain on ``n`` floats, and its input."""
    nodes, x = [], "x"
    for i in range(count):
        nodes.append(helper.make_node("Neg", [x], [f"y{i}"], name=f"neg{i}"))
        x = f"y{i}"
    graph = helper.make_graph(nodes, "neg", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [n])],
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, [n])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model, {"x": np.random.default_rng(0).random(n, dtype=np.float32)}


def _run_cost(provider: str, threads: int) -> Job[float]:
    """ORT's fixed cost per ``run()`` on ``provider``: the median of a one-node model on one float."""
    model, feeds = _neg(1, 1)
    session = make_session(model, threads, f"run cost on {provider}", provider=provider)
    yield from time_runs(session, feeds, 5, "run cost")
    return float(np.median((yield from time_runs(session, feeds, 40, "run cost"))))


def _crossing_points(src: str, dst: str, threads: int, repeats: int = 25) -> Job[list[tuple[int, float]]]:
    """(bytes, ms) per size: ``A ; B`` across the border minus the mean of ``A + B`` in one session per side."""
    points = []
    for size in CROSSING_SIZES:
        n = size // 4
        one, feeds = _neg(n, 1)
        two, _ = _neg(n, 2)
        # no spinning, as a route's parts run (engine.measure.partition.PartitionedModel.spin)
        a = make_session(one, threads, "crossing", provider=src, spin=False)
        b = make_session(one, threads, "crossing", provider=dst, spin=False)
        joint = [make_session(two, threads, "crossing", provider=p, spin=False) for p in (src, dst)]
        split = _Split(a, b)
        medians = []
        for s in (split, *joint):
            yield from time_runs(s, feeds, 5, "crossing")
            medians.append(float(np.median((yield from time_runs(s, feeds, repeats, "crossing")))))
        points.append((size, medians[0] - (medians[1] + medians[2]) / 2))
    return points


class _Split:
    """Two sessions in turn, the first one's output handed to the second as a numpy array."""

    def __init__(self, a: Any, b: Any) -> None:
        self.a, self.b = a, b

    def run(self, names: Any, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        y = self.a.run(None, feeds)[0]
        return self.b.run(None, {"x": y})


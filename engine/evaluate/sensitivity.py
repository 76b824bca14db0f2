"""Per-layer sensitivity: the metric lost when only one layer runs a non-fp32 routine.

For each layer and routine (int8; int8_dynamic for MatMul/Gemm; fp16) the sweep builds the model
with only that layer changed and scores it: ``drop = baseline - metric``, in the metric's units.
It also records the SQNR (dB) of the layer's output against fp32 on the first few samples, and with
``recover`` how much of the whole-model loss comes back when every layer but that one is changed.

Speed: the base model runs once and its activations at every cut are cached (``engine.evaluate.subgraph``);
each variant then runs only the nodes that differ from the base and what lies downstream of them.
When the cache would outgrow ``SweepSettings.cache_limit`` (default: a quarter of the machine's
memory; ppocr-rec keeps 7.6 MB a sample) every variant runs whole instead.
``SweepSettings(cached=False)`` is the naive sweep, one full evaluation per layer, kept as the
reference the cached sweep is tested and benchmarked against.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import onnx

from engine.evaluate.calibration import calibration_for
from engine.evaluate.structural import measure_structural
from engine.errors import SettingsError
from engine.evaluate.evaluator import Evaluator, create_session, ensure_reference, run_samples
from engine.ir.graph import ModelGraph, upgrade_opset
from engine.progress import Cancelled, Job, Progress, run
from engine.passes.calibration import METHODS
from engine.passes.layer_variants import INT8_METHODS, ROUTINES, VariantBuilder, applicable, parse_variant
from engine.evaluate.sqnr_probe import layer_sqnr
from engine.evaluate.subgraph import ActivationCache, Suffix, cut_candidates, diff_suffix, serialized_initializers, typed, value_infos

__all__ = ["ROUTINES", "LayerSensitivity", "Sensitivity", "SweepSettings", "sensitivity_job", "sweep", "sweep_layers"]

logger = logging.getLogger(__name__)


@dataclass
class LayerSensitivity:
    """One layer: metric drop and output SQNR per routine; ``recovered`` only with ``recover``."""

    name: str
    drops: dict[str, float] = field(default_factory=dict)
    sqnr_db: dict[str, float] = field(default_factory=dict)
    recovered: dict[str, float] = field(default_factory=dict)
    # int8 with several calibration methods or int8 methods: the drop of each variant
    # (``engine.passes.layer_variants.variant_name``); ``drops["int8"]`` is the smallest, of the variant
    # ``calibration`` [+ ``cle``] [+ ``smoothquant``] [+ ``symmetric``] [+ ``bias_correction``]
    method_drops: dict[str, float] = field(default_factory=dict)
    calibration: str | None = None
    cle: bool = False
    bias_correction: bool = False
    smoothquant: bool = False  # at engine.passes.layer_variants.SMOOTHQUANT_ALPHA
    symmetric: bool = False  # symmetric activation ranges

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "drops": dict(self.drops), "sqnr_db": _finite_or_none(self.sqnr_db)}
        if self.recovered:
            out["recovered"] = dict(self.recovered)
        if self.method_drops:
            out["method_drops"] = dict(self.method_drops)
            out["calibration"] = self.calibration
        for name in ("cle", "bias_correction", "smoothquant", "symmetric"):
            if getattr(self, name):
                out[name] = True
        return out

    @classmethod
    def from_dict(cls, data: Any, where: str) -> "LayerSensitivity":
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            raise SettingsError(f"{where}: expected an object with a 'name'")
        try:
            return cls(
                data["name"],
                {str(k): float(v) for k, v in data.get("drops", {}).items()},
                {str(k): math.inf if v is None else float(v) for k, v in data.get("sqnr_db", {}).items()},
                {str(k): float(v) for k, v in data.get("recovered", {}).items()},
                {str(k): float(v) for k, v in data.get("method_drops", {}).items()},
                None if data.get("calibration") is None else str(data["calibration"]),
                data.get("cle") is True,
                data.get("bias_correction") is True,
                data.get("smoothquant") is True,
                data.get("symmetric") is True,
            )
        except (AttributeError, TypeError, ValueError) as exc:
            raise SettingsError(f"{where}: layer {data['name']!r}: {exc}") from None


@dataclass
class Sensitivity:
    """The sweep's result, keyed by layer name; ``complete`` is False when it was cancelled."""

    baseline: float
    metric_name: str | None = None
    layers: dict[str, LayerSensitivity] = field(default_factory=dict)
    complete: bool = False
    whole_model: dict[str, float] = field(default_factory=dict)  # metric with every layer in a routine (recover)

    def ranking(self, routine: str) -> list[str]:
        """Layers measured for ``routine``, most sensitive first: largest drop, ties by lowest SQNR."""
        measured = [ls for ls in self.layers.values() if routine in ls.drops]
        key = lambda ls: (-ls.drops[routine], ls.sqnr_db.get(routine, math.inf))
        return [ls.name for ls in sorted(measured, key=key)]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "baseline": self.baseline,
            "metric_name": self.metric_name,
            "complete": self.complete,
            "layers": [ls.to_dict() for ls in self.layers.values()],
        }
        if self.whole_model:
            out["whole_model"] = dict(self.whole_model)
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    @classmethod
    def from_json(cls, text: str, label: str = "<sensitivity>") -> "Sensitivity":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SettingsError(f"{label}: not valid JSON ({exc})") from None
        if not isinstance(data, dict) or "baseline" not in data or not isinstance(data.get("layers", []), list):
            raise SettingsError(f"{label}: expected an object with 'baseline' and a 'layers' list")
        layers = [LayerSensitivity.from_dict(d, f"{label}: layers[{i}]") for i, d in enumerate(data.get("layers", []))]
        return cls(
            float(data["baseline"]),
            data.get("metric_name"),
            {ls.name: ls for ls in layers},
            bool(data.get("complete", True)),
            {str(k): float(v) for k, v in data.get("whole_model", {}).items()},
        )


@dataclass(frozen=True)
class SweepSettings:
    """What to measure and how."""

    routines: tuple[str, ...] = ROUTINES
    layers: tuple[str, ...] | None = None  # None: every layer of the model
    recover: bool = False
    cached: bool = True  # False: the naive sweep, one full evaluation per layer and routine
    threads: int = 0
    sqnr_samples: int = 8
    cache_limit: int | None = None  # bytes of cached activations; None: a quarter of this machine's memory
    # ORT's level 3 (layout) optimizations may compute a whole model and its suffix a few ulps apart;
    # at "extended" they agree bit for bit, and int8 QDQ still runs as int8 kernels.
    optimization: str = "extended"
    # An executor's share (engine.evaluate.executors): measure only these of the sweep's layers; the
    # caches still cover every layer, so SQNR probes and results equal the whole sweep's.
    share: tuple[str, ...] | None = None
    # int8 calibration methods to try per layer (engine.passes.calibration.METHODS): each is an int8 variant
    # of the same speed; the layer keeps the one with the smallest drop (ties: the highest output SQNR on
    # the probe samples, else the first named).
    calibration: tuple[str, ...] = ("minmax",)
    # Also the structural variants (engine.evaluate.structural: prune:0.25/0.5 per prune group,
    # rank:0.25/0.5 of break-even per factorable layer), one whole-model evaluation each: opt-in.
    structural: bool = False
    # per-layer int8 methods (engine.passes.layer_variants.INT8_METHODS: "cle", "bias_correction",
    # "smoothquant", "symmetric") tried on top of each calibration method, each alone and with bias correction; the
    # smallest drop wins as above.
    int8_methods: tuple[str, ...] = ()


def sweep(graph: ModelGraph, evaluator: Evaluator, settings: SweepSettings | None = None) -> Sensitivity:
    """Run ``sensitivity_job`` to the end."""
    return run(sensitivity_job(graph, evaluator, settings or SweepSettings()))


def sensitivity_job(graph: ModelGraph, evaluator: Evaluator, settings: SweepSettings | None = None) -> Job[Sensitivity]:
    """The sweep as a job: Progress per layer and routine; cancelled, it returns the layers measured so far."""
    settings = settings or SweepSettings()
    work = _plan(graph, settings)
    result = Sensitivity(math.nan, evaluator.metric_name)
    mine = [(n, r) for n, r in work if settings.share is None or n in settings.share]
    total = 2 + len(mine) * (2 if settings.recover else 1)
    done = 0
    builder: VariantBuilder | None = None
    structural: dict[str, dict[str, float]] = {}  # layer -> structural routine -> drop, filled as measured
    try:
        yield Progress(0, total, "fp32 baseline and activation cache" if settings.cached else "fp32 baseline")
        base = _named(upgrade_opset(graph.model, 13))
        ensure_reference(evaluator, graph.model, threads=settings.threads, optimization=settings.optimization)
        feeds = [inputs for inputs, _ in evaluator.samples()]
        layer_names = list(dict.fromkeys(name for name, _ in work))
        cuts = set().union(*(cut_candidates(base, name) for name in layer_names))
        outs = {t for name in layer_names for t in graph.node(name).outputs if t}
        output_names = [o.name for o in base.graph.output]
        cache = probe = None
        if settings.cached:
            # The pass that caches the cuts also gives the baseline (extra outputs leave every value
            # bit for bit as it is: the cached-equals-naive tests hold).
            limit = settings.cache_limit if settings.cache_limit is not None else default_cache_limit()
            cache = yield from ActivationCache.build(base, [*output_names, *cuts], feeds, threads=settings.threads,
                                                     optimization=settings.optimization, label=graph.label, max_bytes=limit)
            if cache is None:
                logger.warning("%s: the fp32 activations of %d samples would not fit in %.1f GB; "
                               "every layer is evaluated on the whole model", graph.label, len(feeds), limit / 1e9)
        if cache is not None:
            base_outputs = [list(cache.feed(k, output_names).values()) for k in range(len(feeds))]
        else:
            base_outputs = yield from _run(base, feeds, evaluator, settings)
        result.baseline = evaluator.metric(base_outputs, evaluator.labels())
        done += 1
        yield Progress(done, total, "fp32 references for SQNR")
        builder = VariantBuilder(base, calibration_for(graph, evaluator).samples)
        probe_feeds = feeds[: max(0, settings.sqnr_samples)]
        if probe_feeds:  # only a few samples: the layers' outputs too would double the cache
            probe = yield from ActivationCache.build(base, cuts | outs, probe_feeds, threads=settings.threads,
                                                     optimization=settings.optimization, label=graph.label)
        done += 1
        base_inits, base_infos = serialized_initializers(base), value_infos(base)
        context = _Context(base, base_outputs, feeds, evaluator, settings, cache, probe, base_inits, graph.label)
        for name in dict.fromkeys(name for name, _ in mine):
            measured = LayerSensitivity(name)
            for layer, routine in work:
                if layer != name:
                    continue
                yield Progress(done, total, f"{name} {routine}")
                best = None
                sqnr_of = lambda model, cut: layer_sqnr(graph, name, model, cut, probe, threads=settings.threads,
                                                        optimization=settings.optimization) if cut and probe else None
                for candidate_name, candidate in builder.variants(name, routine, settings.calibration, settings.int8_methods):
                    candidate_suffix = diff_suffix(base, candidate, base_inits, base_infos)
                    value = yield from context.metric(candidate, candidate_suffix)
                    if routine == "int8" and (len(settings.calibration) > 1 or settings.int8_methods):
                        measured.method_drops[candidate_name] = result.baseline - value
                    if best is None or value > best[0]:
                        best = (value, candidate_name, candidate, candidate_suffix, None)
                    elif value == best[0] and len(candidate.graph.node) < len(best[2].graph.node):
                        # Equal drops, fewer nodes: a variant's added nodes (CLE's Mul on a gate, SmoothQuant's
                        # Mul) cost time the sweep does not price, so they never win on output error alone.
                        best = (value, candidate_name, candidate, candidate_suffix, None)
                    elif value == best[0] and len(candidate.graph.node) == len(best[2].graph.node):
                        # Equal drops (the metric does not see this layer alone at this sample count): the smaller
                        # output error wins, since errors that cost nothing alone add up when many layers run int8.
                        best_sqnr = best[4] if best[4] is not None else sqnr_of(best[2], best[3])
                        mine = sqnr_of(candidate, candidate_suffix)
                        best = best[:4] + (best_sqnr,)
                        if mine is not None and (best_sqnr is None or mine > best_sqnr):
                            best = (value, candidate_name, candidate, candidate_suffix, mine)
                metric, chosen, variant, suffix, known_sqnr = best
                if measured.method_drops:
                    chosen_variant = parse_variant(chosen)
                    measured.calibration, measured.cle = chosen_variant.method, chosen_variant.cle
                    measured.bias_correction, measured.smoothquant = chosen_variant.bias_correction, chosen_variant.smoothquant
                    measured.symmetric = chosen_variant.symmetric
                measured.drops[routine] = result.baseline - metric
                sqnr = known_sqnr if known_sqnr is not None else sqnr_of(variant, suffix)
                if sqnr is not None:
                    measured.sqnr_db[routine] = sqnr
                done += 1
                if settings.recover:
                    if routine not in result.whole_model:
                        everyone = [n.name for n in graph.layers if applicable(graph, n, routine)]
                        result.whole_model[routine] = yield from context.full_metric(builder.build(everyone, routine))
                    others = [n.name for n in graph.layers if applicable(graph, n, routine) and n.name != name]
                    metric = yield from context.full_metric(builder.build(others, routine))
                    measured.recovered[routine] = metric - result.whole_model[routine]
                    done += 1
            result.layers[name] = measured
            yield Progress(done, total, f"{name} done")
        if settings.structural:
            chosen = [n.name for n in graph.layers if (settings.layers is None or n.name in settings.layers)
                      and (settings.share is None or n.name in settings.share)]
            yield from measure_structural(graph, evaluator, result.baseline, chosen, settings.threads, structural)
        result.complete = True
    except Cancelled:
        logger.info("sensitivity cancelled after %d layers (%d with structural drops)", len(result.layers), len(structural))
    finally:
        if builder is not None:
            builder.close()
    for name, drops in structural.items():  # also a cancelled sweep's finished variants, as its finished layers
        result.layers.setdefault(name, LayerSensitivity(name)).drops.update(drops)
    return result


# --- internals -------------------------------------------------------------------------------


@dataclass
class _Context:
    base: onnx.ModelProto
    base_outputs: list[list[np.ndarray]]
    feeds: list[dict[str, np.ndarray]]
    evaluator: Evaluator
    settings: SweepSettings
    cache: ActivationCache | None
    probe: ActivationCache | None
    base_inits: dict[str, bytes]
    label: str

    def metric(self, variant: onnx.ModelProto, suffix: Suffix | None) -> Job[float]:
        """The variant's metric: from its suffix on cached activations when possible, else a full run."""
        if self.cache is None or suffix is None or not all(self.cache.has(t) for t in suffix.inputs):
            if self.cache is not None:
                logger.info("%s: variant cuts outside the cache; evaluating the whole model", self.label)
            return (yield from self.full_metric(variant))
        if suffix.nodes == 0:
            return self.evaluator.metric(self.base_outputs, self.evaluator.labels())
        session = create_session(
            typed(suffix, self.cache.feed(0, suffix.inputs)),
            threads=self.settings.threads, optimization=self.settings.optimization, label=self.label,
        )
        feeds = [self.cache.feed(k, suffix.inputs) for k in range(len(self.feeds))]
        produced = yield from run_samples(session, feeds, self.evaluator.label, output_names=suffix.outputs)
        where = {name: j for j, name in enumerate(suffix.outputs)}
        names = [o.name for o in self.base.graph.output]
        merged = [
            [produced[k][where[o]] if o in where else self.base_outputs[k][j] for j, o in enumerate(names)]
            for k in range(len(self.feeds))
        ]
        return self.evaluator.metric(merged, self.evaluator.labels())

    def full_metric(self, model: onnx.ModelProto) -> Job[float]:
        outputs = yield from _run(model, self.feeds, self.evaluator, self.settings)
        return self.evaluator.metric(outputs, self.evaluator.labels())


def default_cache_limit() -> int:
    """A quarter of physical memory (4 GiB where the platform does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4
    except (AttributeError, OSError, ValueError):
        return 4 << 30


def _run(model: onnx.ModelProto, feeds: Sequence[dict[str, np.ndarray]], evaluator: Evaluator, settings: SweepSettings) -> Job[list[list[np.ndarray]]]:
    session = create_session(model, threads=settings.threads, optimization=settings.optimization)
    return (yield from run_samples(session, feeds, evaluator.label))


def sweep_layers(graph: ModelGraph, settings: SweepSettings) -> list[str]:
    """The layers a sweep measures, in order (SettingsError for unknown routines or layers): executors split these."""
    return list(dict.fromkeys(name for name, _ in _plan(graph, settings)))


def _plan(graph: ModelGraph, settings: SweepSettings) -> list[tuple[str, str]]:
    bad = [m for m in settings.calibration if m not in METHODS] or ([] if settings.calibration else ["(none)"])
    if bad:
        raise SettingsError(f"calibration {bad[0]!r}: choose from {', '.join(METHODS)}")
    wrong = [m for m in settings.int8_methods if m not in INT8_METHODS]
    if wrong:
        raise SettingsError(f"int8 method {wrong[0]!r}: choose from {', '.join(INT8_METHODS)}")
    unknown = [r for r in settings.routines if r not in ROUTINES]
    if unknown or not settings.routines:
        raise SettingsError(f"routines {', '.join(unknown) or '(none)'}: choose from {', '.join(ROUTINES)}")
    layers = graph.layers
    if settings.layers is not None:
        names = {n.name for n in layers}
        missing = [name for name in settings.layers if name not in names]
        if missing:
            raise SettingsError(f"{graph.label}: no layer named {missing[0]!r}")
        layers = [n for n in layers if n.name in set(settings.layers)]
    return [(n.name, r) for n in layers for r in settings.routines if applicable(graph, n, r)]


def _named(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy in which every node has a unique name: the version converter adds unnamed Constants,
    and the cached sweep matches the nodes of a variant to the base's by name."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    seen = {n.name for n in copy.graph.node if n.name}
    for i, node in enumerate(copy.graph.node):
        if not node.name:
            name = f"{node.op_type}_{i}"
            while name in seen:
                name += "_"
            node.name = name
            seen.add(name)
    return copy


def _finite_or_none(values: dict[str, float]) -> dict[str, float | None]:
    # JSON has no infinity: identical outputs (infinite SQNR) are written as null.
    return {k: (v if math.isfinite(v) else None) for k, v in values.items()}

"""Structural routines in the routine tables: each prune/rank variant's time, measured end to end.

A pruned layer changes its consumers' input width, so its saving lies partly in its neighbours, and
ORT may fuse or reorder around it: a per-kernel time would mislead. Each structural variant the
sweep measured (``engine.evaluate.structural``: one prune group or one factored layer) is therefore
built as its single-layer plan and timed against fp32 in one interleaved run, and its routine time is

    time(layer, routine) = fp32 time of the layer + (variant end-to-end - fp32 end-to-end)

so the whole effect (the layer, its consumers, any reorder) is charged to the layer's choice.
Approximations, said in the README too:

- the saving was measured with every other layer fp32: when DPRS also puts a consumer in int8, the
  consumer's int8 time is still its full-width one (the saving is counted once, at fp32 rates);
- a time is clamped at 0 (DPRS needs non-negative times) when the variant saved more than the
  layer's own fp32 time: the rest of the saving is not counted (conservative);
- at the layer's borders it runs fp32 (Quantize/Dequantize when a neighbour is int8 are priced as for
  fp32), while the Conv island rule treats it as a routine of its own (as ``predict_ms`` does);
- a group's root carries the choice for the whole group, and a root pruned with a layer of its group
  or a consumer factored is forbidden by a pairwise cost (that rank was set for the full width).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import onnx

from engine.errors import LayerLabError
from engine.evaluate.calibration import Calibration, build_variant
from engine.evaluate.evaluator import Evaluator
from engine.evaluate.sensitivity import LayerSensitivity, Sensitivity
from engine.evaluate.structural import STRUCTURAL, is_structural, measure_structural, variant_plan
from engine.ir.graph import ModelGraph
from engine.measure.tables import Profile, Stats
from engine.passes import prune
from engine.progress import Job, Progress

__all__ = ["FORBIDDEN_MS", "forbidden_pairs", "structural_profile", "sweep_has_structural", "with_structural"]

logger = logging.getLogger(__name__)

#: The pairwise cost that rules out a pruned root with a factored consumer (finite: DPRS needs numbers).
FORBIDDEN_MS = 1e6

Latency = Callable[[Mapping[str, onnx.ModelProto]], Job[dict[str, Stats]]]


def sweep_has_structural(sens: Sensitivity | None) -> bool:
    """True when the sweep measured any structural variant."""
    return sens is not None and any(is_structural(r) for ls in sens.layers.values() for r in ls.drops)


def structural_profile(graph: ModelGraph, profile: Profile, sens: Sensitivity, calibration: Calibration,
                       latency: Latency) -> Job[Profile]:
    """A copy of ``profile`` whose layers also time each structural routine the sweep measured (see the
    module docstring); ``latency`` times a dict of models (with "fp32", the unchanged model) interleaved."""
    models: dict[str, onnx.ModelProto] = {"fp32": graph.model}
    for name, ls in sens.layers.items():
        for routine in (r for r in STRUCTURAL if r in ls.drops):
            try:
                models[f"{name}|{routine}"] = build_variant(graph, variant_plan(graph, name, routine, calibration),
                                                            calibration).model
            except LayerLabError as exc:
                logger.info("%s %s: not timed (%s)", name, routine, exc)
    yield Progress(0, 1, f"timing {len(models) - 1} structural variant(s) against fp32")
    stats = yield from latency(models)
    base = stats["fp32"].median
    extra: dict[str, dict[str, float]] = {}
    for key, s in stats.items():
        if key == "fp32":
            continue
        name, routine = key.split("|", 1)
        extra.setdefault(name, {})[routine] = s.median - base
    layers = []
    for lp in profile.layers:
        deltas = extra.get(lp.name)
        layers.append(lp if not deltas else
                      replace(lp, routines={**lp.routines, **{r: max(lp.ms + d, 0.0) for r, d in deltas.items()}}))
        if deltas:
            logger.info("%s: fp32 %.4f ms; structural end-to-end deltas %s", lp.name, lp.ms,
                        ", ".join(f"{r} {d:+.4f} ms" for r, d in deltas.items()))
    return replace(profile, layers=layers)


def forbidden_pairs(graph: ModelGraph, times: Mapping[str, Mapping[str, float]]) -> dict[tuple[str, str], dict[tuple[str, str], float]]:
    """Pair costs ruling out (root pruned, another layer of its group or a consumer factored): that layer's
    rank was chosen for its full width."""
    pairs: dict[tuple[str, str], dict[tuple[str, str], float]] = {}
    for root, offered in times.items():
        prunes = [r for r in offered if r.startswith("prune:")]
        if not prunes:
            continue
        group = prune.prune_group(graph, root)
        for consumer in dict.fromkeys([*group.layers, *group.consumers]):
            ranks = [r for r in times.get(consumer, {}) if r.startswith("rank:")]
            if consumer != root and ranks:
                pairs[(root, consumer)] = {(p, k): FORBIDDEN_MS for p in prunes for k in ranks}
    return pairs


def with_structural(graph: ModelGraph, evaluator: Evaluator, sens: Sensitivity, prof: Profile,
                     calibration: Calibration, feeds: Mapping[str, Any], options: Any) -> Job[tuple[Sensitivity, Profile]]:
    """The sweep with structural drops (measured now when a reused one lacks them) and the profile with
    each structural variant timed end to end (``engine.optimize.structural``)."""
    if not sweep_has_structural(sens):
        yield Progress(2, 5, "structural variants")
        found = yield from measure_structural(graph, evaluator, sens.baseline, [n.name for n in graph.layers],
                                              options.threads or 0)
        sens = copy.deepcopy(sens)
        for name, drops in found.items():
            sens.layers.setdefault(name, LayerSensitivity(name)).drops.update(drops)

    def latency(models: Mapping[str, onnx.ModelProto]) -> Job[dict[str, Stats]]:
        return (yield from _latencies(dict(models), feeds, options))

    return sens, (yield from structural_profile(graph, prof, sens, calibration, latency))


def _latencies(models: dict[str, onnx.ModelProto], feeds: Mapping[str, Any], options: Any) -> Job[dict[str, Stats]]:
    """Each model timed in turns with the others (here or on the options' target)."""
    from engine.measure.interleave import interleaved_latency
    from engine.measure.timing import physical_cores

    if options.target is not None:
        return (yield from options.target.latency_job(models, feeds, options.threads, options.repeats))
    return (yield from interleaved_latency(models, dict(feeds), options.threads or physical_cores(), options.repeats))

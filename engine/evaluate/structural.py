"""Structural variants in the sensitivity sweep: the metric lost when one prune group is pruned or one layer factored.

Routine names (next to "int8", "fp16", ... in ``LayerSensitivity.drops`` and the profile's tables):

- ``prune:0.25``, ``prune:0.5``: structured pruning of the layer's whole prune group at that ratio
  (``engine.passes.prune``), with least-squares reconstruction of the consumers when real calibration
  data exists (``engine.evaluate.calibration``: never the scored samples; on random inputs it is off).
  A group is one choice: it is measured, and offered to DPRS, on its first layer in graph order
  only, since every layer of the group loses the same channels (digits: conv2 carries the group
  {conv2, res/conv_b} of the residual sum).
- ``rank:0.25``, ``rank:0.5``: truncated SVD at that fraction of the layer's break-even rank
  (``engine.passes.lowrank``; whitened by the input's second moments when calibration exists).
  Fractions, not absolute ranks, so one name means the same effort on every layer.

Each variant is built with ``build_variant`` from the single-layer plan ``variant_plan`` returns —
the plan ``tune`` builds when it picks that routine — and scored on the whole model, so the drop is
exactly a direct evaluation of that plan. Opt-in (``SweepSettings(structural=True)``, ``layerlab
sensitivity --structural``): one full evaluation per variant, which the cached sweep does not need.
"""

from __future__ import annotations

import logging
from typing import Any

from engine.errors import LayerLabError
from engine.evaluate.calibration import Calibration, build_variant, calibration_for
from engine.evaluate.evaluator import Evaluator, evaluate_job
from engine.ir.graph import ModelGraph
from engine.ir.ops import op_facts
from engine.model.plan import LayerSettings, Plan, PruneSettings
from engine.passes import lowrank, prune
from engine.progress import Job, Progress

__all__ = ["PRUNE_RATIOS", "RANK_FRACTIONS", "STRUCTURAL", "is_structural", "layer_settings", "measure_structural",
           "structural_routines", "variant_plan"]

logger = logging.getLogger(__name__)

PRUNE_RATIOS = (0.25, 0.5)
RANK_FRACTIONS = (0.25, 0.5)
STRUCTURAL = tuple(f"prune:{r:g}" for r in PRUNE_RATIOS) + tuple(f"rank:{f:g}" for f in RANK_FRACTIONS)


def is_structural(routine: str) -> bool:
    """True for ``prune:<ratio>`` and ``rank:<fraction>`` routine names."""
    return routine.startswith(("prune:", "rank:"))


def _value(routine: str) -> float:
    try:
        return float(routine.split(":", 1)[1])
    except (IndexError, ValueError):
        raise LayerLabError(f"routine {routine!r}: expected prune:<ratio> or rank:<fraction>") from None


def _rank(graph: ModelGraph, layer: str, fraction: float) -> int | None:
    even = int(lowrank.break_even_rank(graph, layer))
    rank = max(1, int(fraction * even))
    return rank if rank < even and lowrank.lowrank_problem(graph, layer, rank) is None else None


def structural_routines(graph: ModelGraph, layer: str) -> list[str]:
    """The structural routines ``layer`` can take: prune ratios on the root of a prunable group, ranks
    below break-even on a factorable layer (none when neither applies)."""
    node = graph.node(layer)
    facts = op_facts(node.op_type)
    out: list[str] = []
    try:
        if facts.prunable:
            group = prune.prune_group(graph, layer)
            order = {n.name: i for i, n in enumerate(graph.nodes)}
            root = min(group.layers, key=lambda n: order.get(n, len(order))) if group.layers else None
            if group.prunable and root == layer and group.channels >= 4:
                out += [r for r in STRUCTURAL if r.startswith("prune:")]
    except (LayerLabError, ValueError, KeyError) as exc:  # an odd layer is skipped, not the sweep
        logger.info("%s: no prune variants (%s)", layer, exc)
    try:
        if facts.lowrank and lowrank.lowrank_problem(graph, layer, 1) is None:
            out += [f"rank:{f:g}" for f in RANK_FRACTIONS if _rank(graph, layer, f) is not None]
    except (LayerLabError, ValueError, KeyError) as exc:
        logger.info("%s: no rank variants (%s)", layer, exc)
    return out


def layer_settings(graph: ModelGraph, layer: str, routine: str, data: bool) -> LayerSettings:
    """The plan entry of ``layer`` under structural ``routine``; ``data``: real calibration exists, so
    pruning reconstructs the consumers."""
    value = _value(routine)
    if routine.startswith("prune:"):
        return LayerSettings("fp32", prune=PruneSettings(value, "structured", reconstruct=data))
    rank = _rank(graph, layer, value)
    if rank is None:
        raise LayerLabError(f"{graph.label}: {layer} cannot take {routine} (break-even rank too small)")
    return LayerSettings("fp32", rank=rank)


def variant_plan(graph: ModelGraph, layer: str, routine: str, calibration: Calibration) -> Plan:
    """The plan with only ``layer`` in structural ``routine`` (every other layer fp32)."""
    return Plan(LayerSettings("fp32"), {layer: layer_settings(graph, layer, routine, not calibration.random)})


def measure_structural(graph: ModelGraph, evaluator: Evaluator, baseline: float, layers: list[str],
                       threads: int = 0, into: dict[str, dict[str, float]] | None = None) -> Job[dict[str, dict[str, float]]]:
    """Layer -> structural routine -> drop against ``baseline``: one whole-model evaluation per variant.
    A variant the passes refuse is logged and left out, never offered blind. Each drop goes into
    ``into`` (returned) as soon as it is measured, so a cancelled caller keeps the finished ones."""
    drops: dict[str, dict[str, float]] = {} if into is None else into
    calibration = calibration_for(graph, evaluator)
    work = [(name, r) for name in layers for r in structural_routines(graph, name)]
    for i, (name, routine) in enumerate(work):
        yield Progress(i, len(work), f"{name} {routine}")
        try:
            model = build_variant(graph, variant_plan(graph, name, routine, calibration), calibration).model
        except LayerLabError as exc:
            logger.info("%s %s: not measured (%s)", name, routine, exc)
            continue
        scored = yield from _quiet(evaluate_job(model, evaluator, threads=threads), Progress(i, len(work), f"{name} {routine}"))
        drops.setdefault(name, {})[routine] = baseline - scored.metric
    yield Progress(len(work), len(work), "structural variants done")
    return drops


def _quiet(job: Job[Any], shown: Progress) -> Job[Any]:
    """A job's result, showing ``shown`` instead of its per-sample progress (each yield still lets a cancel in)."""
    while True:
        try:
            next(job)
        except StopIteration as stop:
            return stop.value
        yield shown

"""The pass manager: a plan becomes a variant model, and a plan is checked against a model.

``apply_plan`` composes the passes from a plan: structural passes first (prune, then low-rank, on
fp32 weights), then precision (int8 static, int8_dynamic, fp16); when a step fails the error names
the steps that already ran. ``check_plan`` lists every problem of a plan on a model up front, asking
each pass's own check (``can_prune``, ``lowrank_problem``, the op facts) why a setting cannot apply.
A ``prune`` in the plan's default applies to every layer that can be pruned; the pass lists the
layers it skipped and why. Structured pruning refits the consumers on ``calibration`` when given.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx

from engine.errors import SettingsError
from engine.ir.graph import ModelGraph
from engine.ir.ops import op_facts
from engine.model.plan import Plan
from engine.passes.base import PassResult
from engine.ir.routines import routine_problem
from engine.passes.lowrank import LowRankPass, lowrank_names, lowrank_problem
from engine.passes.bias_correction import BiasCorrectionPass
from engine.passes.cle import CLEPass
from engine.passes.smoothquant import SmoothQuantPass
from engine.passes.precision import PrecisionPass
from engine.passes.prune import PrunePass, can_prune, graph_shapes

__all__ = ["ApplyResult", "apply_plan", "check_plan"]

logger = logging.getLogger(__name__)


@dataclass
class ApplyResult:
    """The variant model a plan gives, notes for the user, and whether anything changed."""

    model: onnx.ModelProto
    notes: list[str]
    modified: bool


def apply_plan(
    graph: ModelGraph,
    plan: Plan,
    calibration: Sequence[dict[str, np.ndarray]] | None = None,
) -> ApplyResult:
    """Build the variant of ``graph.model`` that ``plan`` describes (``graph.model`` is not changed).

    Every problem of the plan is reported up front in one SettingsError; ``auto`` precision is one of
    them ("resolve auto with layerlab tune first"). An all-fp32 plan returns the model unchanged.
    Without ``calibration``, int8 layers are calibrated on random inputs (and a note says so).
    """
    problems = check_plan(plan, graph)
    settings = {n.name: plan.settings_for(n.name) for n in graph.layers}
    problems += [f"layer {k!r}: precision auto: resolve auto with layerlab tune first" for k, s in settings.items() if s.precision == "auto"]
    if problems:
        raise SettingsError(f"{graph.label}: plan cannot be applied: {'; '.join(problems)}")
    if all(s.is_identity for s in settings.values()) and plan.ops == "fp32":
        return ApplyResult(graph.model, [], False)

    prune = {k: s.prune for k, s in settings.items() if s.prune is not None and s.prune.ratio > 0}
    # a default prune reaches every layer: the ones it cannot prune are listed in the notes, not failed
    from_default = [k for k in prune if k not in plan.layers]
    prune = {k: v for k, v in prune.items() if k in plan.layers or op_facts(graph.node(k).op_type).prunable}
    ranks = {k: s.rank for k, s in settings.items() if s.rank is not None}
    by_precision: dict[str, list[str]] = {"int8": [], "int8_dynamic": [], "fp16": []}
    for name, s in settings.items():
        if s.precision in by_precision:
            # a factored layer is two nodes now: both take its precision
            by_precision[s.precision] += list(lowrank_names(name)) if name in ranks else [name]
    methods = {n: s.calibration for n, s in settings.items() if s.precision == "int8" and s.calibration and n not in ranks}
    symmetric = [n for n, s in settings.items() if s.precision == "int8" and s.symmetric and n not in ranks]
    precision = PrecisionPass(calibration=calibration, **by_precision, int8_calibration=methods, int8_symmetric=symmetric,
                              int8_ops_except=_layer_nodes(settings, ranks) if plan.ops == "int8" else None)
    corrected = [n for n, s in settings.items() if s.bias_correction and s.precision == "int8" and n not in ranks]
    steps: list[tuple[str, Callable[[onnx.ModelProto], PassResult]]] = [
        ("prune", PrunePass(prune, calibration=calibration, skip_refused=from_default, shapes=graph_shapes(graph))),
        ("low-rank", LowRankPass(ranks, calibration=calibration)),
        ("equalization", CLEPass({n for n, s in settings.items() if s.cle and n not in ranks and n not in prune},
                                  approximate=True, samples=calibration or ())),
        ("smoothquant", SmoothQuantPass({n: s.smoothquant for n, s in settings.items()
                                         if s.smoothquant is not None and n not in ranks}, calibration)),
        ("precision", BiasCorrectionPass(precision, corrected, calibration) if corrected else precision),
    ]
    model, notes, modified, done = graph.model, [], False, []
    for label, step in steps:
        try:
            result = step(model)
        except SettingsError as exc:
            after = f" (after {', '.join(done)})" if done else ""
            raise SettingsError(f"{graph.label}: {label} failed{after}: {exc}") from None
        model, modified = result.model, modified or result.modified
        notes += result.notes
        done += [label] if result.modified else []
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:  # a bug in a pass, not the user's fault: keep the traceback
        raise RuntimeError(f"{graph.label}: the transformed model is invalid: {exc}") from exc
    return ApplyResult(model, notes, modified)


def _layer_nodes(settings: dict[str, Any], ranks: dict[str, int]) -> set[str]:
    """Names the layers have in the transformed model (a factored layer is two nodes)."""
    return {m for name in settings for m in (lowrank_names(name) if name in ranks else (name,))}





def check_plan(plan: Plan, graph: ModelGraph) -> list[str]:
    """Every problem of ``plan`` on ``graph``, one line each; empty when it can be applied."""
    problems: list[str] = []
    names = {n.name: n for n in graph.nodes}
    layer_names = [n.name for n in graph.layers]
    if plan.default.rank is not None:
        problems.append("default: rank cannot be a default (each layer's limit differs); set it per layer")
    for name in plan.layers:
        if name not in names:
            close = difflib.get_close_matches(name, layer_names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(f"layer {name!r}: no such node in the model{hint}")
        elif not names[name].tunable:
            problems.append(f"layer {name!r}: is a {names[name].op_type} op without a constant weight, not a layer")
    for node in graph.layers:
        s = plan.settings_for(node.name)
        where = f"layer {node.name!r} ({node.op_type})"
        facts = op_facts(node.op_type)
        why = routine_problem(graph, node, s.precision) if s.precision in ("int8", "int8_dynamic", "fp16") else ""
        if why:
            problems.append(f"{where}: {why}")
        if s.prune is not None and s.rank is not None:
            problems.append(f"{where}: choose pruning or a rank, not both")
        if s.prune is not None and s.prune.ratio > 0 and node.name in plan.layers:  # a default skips what it cannot prune
            if not facts.prunable:
                problems.append(f"{where}: cannot be pruned")
            elif s.prune.mode == "structured":
                reason = can_prune(graph, node.name)
                if reason:
                    problems.append(f"{where}: structured pruning refused: {reason}")
        if s.rank is not None:
            reason = lowrank_problem(graph, node.name, s.rank)
            if reason:
                problems.append(f"{where}: rank {s.rank} refused: {reason}")
    return problems

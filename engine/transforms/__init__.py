"""Model transforms as passes: precision, pruning and low-rank factorisation.

Each pass lives in its own module, takes typed settings in its constructor and is called on a
``ModelProto``; it clones the model first (the caller's proto never changes) and returns a
``PassResult``. ``apply_plan`` composes them from a plan: structural passes first (prune, then
low-rank, on fp32 weights), then precision (int8 static, int8_dynamic, fp16). This module also holds
what the passes share: the result type and small proto helpers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
from onnx import numpy_helper

from engine.errors import SettingsError

if TYPE_CHECKING:
    from engine.graph import ModelGraph
    from engine.plan import Plan

__all__ = ["ApplyResult", "PassResult", "apply_plan", "clone", "consumers", "drop_unused_initializers", "initializers", "refresh_shapes", "set_initializer"]

logger = logging.getLogger(__name__)


@dataclass
class PassResult:
    """What a pass returns: the new model, whether it changed anything, and notes for the user."""

    model: onnx.ModelProto
    modified: bool
    notes: list[str] = field(default_factory=list)


def clone(model: onnx.ModelProto) -> onnx.ModelProto:
    """A deep copy of ``model``: passes never change their input."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    return copy


def initializers(graph: onnx.GraphProto) -> dict[str, onnx.TensorProto]:
    """Initializers by name."""
    return {t.name: t for t in graph.initializer}


def consumers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    """For each tensor name, the nodes that read it (in graph order)."""
    users: dict[str, list[onnx.NodeProto]] = {}
    for n in graph.node:
        for t in dict.fromkeys(n.input):
            if t:
                users.setdefault(t, []).append(n)
    return users


def set_initializer(graph: onnx.GraphProto, name: str, array: np.ndarray) -> None:
    """Replace (or add) the initializer ``name`` with ``array``."""
    tensor = numpy_helper.from_array(np.ascontiguousarray(array), name)
    for i, t in enumerate(graph.initializer):
        if t.name == name:
            graph.initializer[i].CopyFrom(tensor)
            return
    graph.initializer.append(tensor)


def refresh_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """Drop the recorded intermediate shapes (a structural pass made them stale) and infer them again."""
    del model.graph.value_info[:]
    try:
        return onnx.shape_inference.infer_shapes(model)
    except Exception as exc:  # best effort: the model is still valid without value_info
        logger.info("shape inference after transform failed (%s)", exc)
        return model


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
    from engine.transforms.lowrank import LowRankPass, lowrank_names
    from engine.transforms.precision import PrecisionPass
    from engine.transforms.prune import PrunePass

    problems = plan.validate(graph)
    settings = {n.name: plan.settings_for(n.name) for n in graph.layers}
    problems += [f"layer {k!r}: precision auto: resolve auto with layerlab tune first" for k, s in settings.items() if s.precision == "auto"]
    if problems:
        raise SettingsError(f"{graph.label}: plan cannot be applied: {'; '.join(problems)}")
    if all(s.is_identity for s in settings.values()) and plan.ops == "fp32":
        return ApplyResult(graph.model, [], False)

    prune = {k: s.prune for k, s in settings.items() if s.prune is not None and s.prune.ratio > 0}
    ranks = {k: s.rank for k, s in settings.items() if s.rank is not None}
    by_precision: dict[str, list[str]] = {"int8": [], "int8_dynamic": [], "fp16": []}
    for name, s in settings.items():
        if s.precision in by_precision:
            # a factored layer is two nodes now: both take its precision
            by_precision[s.precision] += list(lowrank_names(name)) if name in ranks else [name]
    if by_precision["int8"]:
        unknown = [
            n.name
            for n in graph.layers
            if n.name in by_precision["int8"] and getattr(graph.tensors.get(n.inputs[0]), "shape", None) is None
        ]
        if unknown:
            raise SettingsError(f"{graph.label}: shapes unknown at {unknown[0]!r}; give concrete input shapes (--input NAME=SHAPE)")
    steps: list[tuple[str, Callable[[onnx.ModelProto], PassResult]]] = [
        ("prune", PrunePass(prune)),
        ("low-rank", LowRankPass(ranks)),
        ("precision", PrecisionPass(calibration=calibration, **by_precision,
                                    int8_ops_except=_layer_nodes(settings, ranks) if plan.ops == "int8" else None)),
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
    from engine.transforms.lowrank import lowrank_names

    return {m for name in settings for m in (lowrank_names(name) if name in ranks else (name,))}


def drop_unused_initializers(graph: onnx.GraphProto) -> None:
    """Delete the initializers no node reads, in place (deleting, not rebuilding, copies no weights)."""
    used = {t for node in graph.node for t in node.input}
    for i in reversed([i for i, t in enumerate(graph.initializer) if t.name not in used]):
        del graph.initializer[i]

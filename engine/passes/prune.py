"""Pruning: unstructured (zero the smallest weights) and structured (remove channels by groups).

Unstructured magnitude pruning zeroes the ``ratio`` smallest weights by absolute value. The tensors
keep their size and ONNX Runtime's CPU kernels do not skip zeros, so it saves no time: the pass says
so in its notes.

Structured pruning removes whole channels of a layer's *group* (``engine.passes.prune_groups``):
every layer feeding the same residual sum, depthwise convs and per-channel parameters in between,
and every consumer's input channels, really shrinking the tensors. Channels are ranked by their
weight norm pooled over the group's layers (``criterion`` l1/l2), or by how much of the consumers'
output they carry on calibration data (``criterion`` "data"). When calibration data is given the
consumers are then refitted by least squares to reproduce the unpruned outputs
(``engine.passes.reconstruct``), unless the settings say ``reconstruct: false``.

``can_prune(graph, layer)`` says why a layer cannot be pruned (None when it can) and
``prune_group(graph, layer)`` returns the group itself, to show which layers shrink together.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from engine.errors import SettingsError
from engine.model.plan import PruneSettings
from engine.passes.base import PassResult, clone, consumers, initializers, refresh_shapes, set_initializer
from engine.passes.prune_groups import LAYER_OPS, Group, build_group, shapes_of
from engine.passes.reconstruct import activation_importance, reconstruct

__all__ = ["LAYER_OPS", "PrunePass", "can_prune", "fill_shapes", "graph_shapes", "prune_group"]

logger = logging.getLogger(__name__)


def _shapes(graph: Any) -> dict[str, list[int | None]]:
    """The model's own shapes, completed by the graph's concrete ones where the model has a -1."""
    return fill_shapes(shapes_of(graph.model), graph_shapes(graph))


def graph_shapes(graph: Any) -> dict[str, list[int | None]]:
    """The concrete shapes a ModelGraph inferred for its given input shapes."""
    out = {}
    for name, info in getattr(graph, "tensors", {}).items():
        shape = getattr(info, "shape", None)
        if shape is not None:
            out[name] = [int(d) if isinstance(d, (int, np.integer)) and int(d) > 0 else None for d in shape]
    return out


def fill_shapes(shapes: dict[str, list[int | None]], given: Mapping[str, list[int | None]]) -> dict[str, list[int | None]]:
    """``shapes`` with its unknown dims taken from ``given`` (never its known ones: those may have shrunk)."""
    for name, dims in given.items():
        own = shapes.get(name)
        if own is None:
            shapes[name] = list(dims)
        elif None in own and len(own) == len(dims):
            shapes[name] = [d if d is not None else g for d, g in zip(own, dims)]
    return shapes


def prune_group(graph: Any, layer: str) -> Group:
    """The group ``layer`` (a node of ``graph.model``) belongs to; ``details()`` describes it."""
    return build_group(graph.model, layer, _shapes(graph))


def can_prune(graph: Any, layer: str) -> str | None:
    """Why structured pruning of ``layer`` (in a ModelGraph) is refused, or None when it is possible."""
    return prune_group(graph, layer).reason


class PrunePass:
    """Prune the named layers as their ``PruneSettings`` say (ratio 0 leaves a layer unchanged).

    ``calibration`` (a few input feeds) enables reconstruction and data-aware ranking. With
    ``skip_refused`` a structured layer that cannot be pruned is listed in the notes instead of
    failing the pass (a plan default applies to every layer; some are bound to be refused).
    """

    def __init__(
        self,
        settings: Mapping[str, PruneSettings],
        calibration: Sequence[dict[str, np.ndarray]] | None = None,
        skip_refused: Sequence[str] = (),
        shapes: Mapping[str, list[int | None]] | None = None,
    ) -> None:
        self.settings = {k: v for k, v in settings.items() if v.ratio > 0}
        self.calibration = list(calibration or [])
        self.skip_refused = set(skip_refused)
        self.shapes = dict(shapes or {})
        self.groups: list[Group] = []  # the groups pruned by the last call

    def __call__(self, model: onnx.ModelProto) -> PassResult:
        if not self.settings:
            return PassResult(model, False)
        original, model = model, clone(model)
        names = {n.name for n in model.graph.node}
        missing = sorted(set(self.settings) - names)
        if missing:
            raise SettingsError(f"no node named {missing[0]!r}")
        notes: list[str] = []
        structured = {k: s for k, s in self.settings.items() if s.mode == "structured"}
        for layer, s in self.settings.items():
            if s.mode == "unstructured":
                notes.append(_unstructured(model, layer, s))
        if len(structured) < len(self.settings):
            notes.append("unstructured sparsity saves no time on ONNX Runtime's CPU kernels (zeros are still multiplied)")
        if structured:
            notes += self._structured(original, model, structured)
            model = refresh_shapes(model)
        return PassResult(model, True, notes)

    def _shapes_now(self, model: onnx.ModelProto) -> dict[str, list[int | None]]:
        return fill_shapes(shapes_of(model), self.shapes)

    def _structured(self, original: onnx.ModelProto, model: onnx.ModelProto, settings: Mapping[str, PruneSettings]) -> list[str]:
        notes, skipped, done = [], [], set()
        self.groups = []
        if not model.graph.value_info:
            model.CopyFrom(refresh_shapes(model))
        refit: dict[str, bool] = {}
        kept: dict[str, np.ndarray] = {}
        for layer, s in settings.items():
            if layer in done:
                continue
            shapes = self._shapes_now(model)
            group = build_group(model, layer, shapes)
            if not group.prunable:
                if layer in self.skip_refused:
                    skipped.append(f"{layer} ({group.reason})")
                    continue
                raise SettingsError(f"layer {layer!r}: structured pruning refused: {group.reason}")
            n_keep = max(1, int(round(group.channels * (1 - s.ratio))))
            if s.criterion == "data" and self.calibration:
                scores = activation_importance(model, group, self.calibration)
            else:
                scores = group.scores(model, "l2" if s.criterion == "l2" else "l1")
            drop = sorted(int(i) for i in np.argsort(scores, kind="stable")[: group.channels - n_keep])
            group.prune(model, drop)
            for name in group.layers:  # which unpruned output channels each layer keeps (for the refit)
                out = next(n.output[0] for n in model.graph.node if n.name == name)
                dim = group.dims[out]
                kept[name] = np.setdiff1d(np.arange(shapes[out][dim.axis]), dim.removed(drop))
            model.CopyFrom(refresh_shapes(model))
            done |= set(group.layers)
            self.groups.append(group)
            for c in group.consumers:
                refit[c] = refit.get(c, True) and s.reconstruct
            unit = f" blocks of {group.unit} (heads, shuffle columns or conv groups)" if group.unit > 1 else " channels"
            others = [n for n in group.layers if n != layer]
            also = f", with {', '.join(others)}" if others else ""
            notes.append(f"{layer}: kept {n_keep} of {group.channels}{unit}{also}")
        if skipped:
            notes.append(f"structured pruning skipped {len(skipped)} layer(s): {'; '.join(skipped)}")
        targets = [c for c, on in refit.items() if on]
        if targets and self.calibration:
            notes += reconstruct(original, model, targets, self.calibration, kept)
        elif targets:
            notes.append("no calibration data: pruned consumers were not refitted (reconstruction needs data)")
        return notes


def _unstructured(model: onnx.ModelProto, layer: str, s: PruneSettings) -> str:
    node = next(n for n in model.graph.node if n.name == layer)
    inits = initializers(model.graph)
    slots = [1, 0] if node.op_type == "MatMul" else [1]
    slot = next((i for i in slots if len(node.input) > i and node.input[i] in inits), None)
    if slot is None:
        raise SettingsError(f"layer {node.name!r}: no constant weight to prune")
    name = node.input[slot]
    w = numpy_helper.to_array(inits[name]).copy()
    if len(consumers(model.graph).get(name, [])) > 1:  # shared weight: prune a private copy
        name = f"{node.name}.pruned_weight"
        node.input[slot] = name
    flat = w.reshape(-1)
    count = int(round(s.ratio * flat.size))
    order = np.argsort(flat**2 if s.criterion == "l2" else np.abs(flat), kind="stable")
    flat[order[:count]] = 0
    set_initializer(model.graph, name, w)
    sparsity = float(np.mean(w == 0))
    return f"{node.name}: {sparsity:.1%} of {w.size} weights are zero (unstructured)"

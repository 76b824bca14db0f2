"""Pruning: unstructured (zero the smallest weights) and structured (remove output channels).

Unstructured magnitude pruning zeroes the ``ratio`` smallest weights by absolute value. The tensors
keep their size and ONNX Runtime's CPU kernels do not skip zeros, so it saves no time: the pass says
so in its notes.

Structured pruning removes the output channels of a Conv, ConvTranspose or Gemm with the smallest
L1/L2 weight norm, really shrinking the tensors, and rewires every reader of those channels:
BatchNormalization parameters, the next Conv's / ConvTranspose's input channels, a Gemm's or
MatMul's weight rows, through element-wise ops (Relu, Clip, HardSigmoid, ..., Mul/Add by a scalar),
pools, depthwise convs (pruned along) and Flatten (blocks of H*W columns). Where channels are tied to
something else (a residual Add, a Concat, a reshape, a graph output, a shared weight) it refuses
with a SettingsError whose reason the UI can show; ``can_prune`` gives that reason up front.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from engine.errors import SettingsError
from engine.model.plan import PruneSettings
from engine.passes.base import (
    PassResult,
    clone,
    consumers,
    initializers,
    refresh_shapes,
    set_initializer,
)

__all__ = ["STRUCTURED_OPS", "PrunePass", "can_prune"]

logger = logging.getLogger(__name__)

STRUCTURED_OPS = ("Conv", "ConvTranspose", "Gemm")
# Ops that keep the channel layout: the kept channels flow through them unchanged.
_PASS_THROUGH = {
    "Relu", "Clip", "HardSigmoid", "HardSwish", "Sigmoid", "Tanh", "LeakyRelu", "Elu", "Selu",
    "Softplus", "Identity", "Dropout", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool",
    "LpPool", "Neg", "Abs", "Erf", "Gelu", "Mish", "Cast",
}
_SCALAR_BINARY = {"Mul", "Add", "Sub", "Div"}


@dataclass(frozen=True)
class _Slice:
    tensor: str
    axis: int
    keep: tuple[int, ...]


@dataclass(frozen=True)
class _SetGroup:
    node: str
    group: int


class _Refused(Exception):
    pass


def _attr(node: onnx.NodeProto, name: str, default: Any) -> Any:
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


class _Tracer:
    """Collects the edits that remove channels ``keep`` of a producer; raises _Refused with a reason."""

    def __init__(self, model: onnx.ModelProto) -> None:
        g = model.graph
        self.inits = initializers(g)
        self.users = consumers(g)
        self.outputs = {o.name for o in g.output}
        self.shapes = {
            v.name: [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim]
            for v in list(g.value_info) + list(g.input) + list(g.output)
        }
        self.edits: list[_Slice | _SetGroup] = []

    def weight(self, node: onnx.NodeProto, i: int) -> np.ndarray:
        name = node.input[i] if len(node.input) > i else ""
        if name not in self.inits:
            raise _Refused(f"{node.op_type} {node.name!r} has no constant input {i}")
        if len(self.users.get(name, [])) > 1:
            raise _Refused(f"weight {name!r} of {node.name!r} is shared with other nodes")
        return numpy_helper.to_array(self.inits[name])

    def producer(self, node: onnx.NodeProto) -> int:
        """Edits on the layer itself; returns its output-channel count."""
        op = node.op_type
        if op not in STRUCTURED_OPS:
            raise _Refused(f"structured pruning supports {', '.join(STRUCTURED_OPS)}, not {op}")
        w = self.weight(node, 1)
        if op in ("Conv", "ConvTranspose") and _attr(node, "group", 1) != 1:
            raise _Refused(f"{op} {node.name!r} is grouped/depthwise: its output channels are tied to its input")
        if op == "Gemm" and _attr(node, "transA", 0):
            raise _Refused(f"Gemm {node.name!r} uses transA")
        return int(w.shape[1] if op == "ConvTranspose" or (op == "Gemm" and not _attr(node, "transB", 0)) else w.shape[0])

    def producer_edits(self, node: onnx.NodeProto, keep: tuple[int, ...], total: int) -> None:
        op = node.op_type
        axis = 1 if op == "ConvTranspose" or (op == "Gemm" and not _attr(node, "transB", 0)) else 0
        self.edits.append(_Slice(node.input[1], axis, keep))
        if len(node.input) > 2 and node.input[2]:
            bias = self.weight(node, 2)
            if bias.size == total:
                self.edits.append(_Slice(node.input[2], bias.ndim - 1, keep))
            elif bias.size != 1:
                raise _Refused(f"bias of {node.name!r} has shape {list(bias.shape)}, not per channel")
        self.follow(node.output[0], keep, total)

    def follow(self, tensor: str, keep: tuple[int, ...], total: int) -> None:
        """Rewire every reader of ``tensor``, whose channel axis (1) keeps ``keep`` of ``total``."""
        if tensor in self.outputs:
            raise _Refused(f"tensor {tensor!r} is a graph output: its channel count is fixed")
        for user in self.users.get(tensor, []):
            self.consumer(user, tensor, keep, total)

    def consumer(self, node: onnx.NodeProto, tensor: str, keep: tuple[int, ...], total: int) -> None:
        op, name = node.op_type, node.name
        slot = list(node.input).index(tensor)
        if op in _PASS_THROUGH and slot == 0:
            return self.follow(node.output[0], keep, total)
        if op in _SCALAR_BINARY:
            other = node.input[1 - slot] if len(node.input) == 2 else ""
            if other in self.inits and int(np.prod(self.inits[other].dims)) == 1:
                return self.follow(node.output[0], keep, total)
            raise _Refused(f"channels are tied by {op} {name!r} (a residual or per-channel operand)")
        if op == "BatchNormalization" and slot == 0:
            for i in range(1, 5):
                self.weight(node, i)
                self.edits.append(_Slice(node.input[i], 0, keep))
            return self.follow(node.output[0], keep, total)
        if op in ("Conv", "ConvTranspose") and slot == 0:
            w = self.weight(node, 1)
            group = _attr(node, "group", 1)
            if group == 1:
                self.edits.append(_Slice(node.input[1], 1 if op == "Conv" else 0, keep))
                return None
            if op == "Conv" and group == total and w.shape[0] == total:  # depthwise: prune it along
                self.edits += [_Slice(node.input[1], 0, keep), _SetGroup(name, len(keep))]
                if len(node.input) > 2 and node.input[2]:
                    self.weight(node, 2)
                    self.edits.append(_Slice(node.input[2], 0, keep))
                return self.follow(node.output[0], keep, total)
            raise _Refused(f"{op} {name!r} is grouped ({group} groups): its channels are tied")
        if op == "Gemm" and slot == 0 and not _attr(node, "transA", 0):
            self.weight(node, 1)
            self.edits.append(_Slice(node.input[1], 1 if _attr(node, "transB", 0) else 0, keep))
            return None
        if op == "MatMul" and slot == 0 and len(self.shapes.get(tensor) or [0, 0, 0]) == 2:
            if self.weight(node, 1).ndim == 2:
                self.edits.append(_Slice(node.input[1], 0, keep))
                return None
        if op == "Flatten" and slot == 0 and _attr(node, "axis", 1) == 1:
            shape = self.shapes.get(tensor)
            if not shape or any(not d for d in shape[2:]):
                raise _Refused(f"Flatten {name!r}: the spatial size of its input is unknown")
            hw = math.prod(shape[2:])
            flat = tuple(c * hw + j for c in keep for j in range(hw))
            return self.follow(node.output[0], flat, total * hw)
        raise _Refused(f"channels are read by {op} {name!r}, which structured pruning cannot rewire")


def _find(model: onnx.ModelProto, layer: str) -> onnx.NodeProto:
    for n in model.graph.node:
        if n.name == layer:
            return n
    raise SettingsError(f"no node named {layer!r}")


def can_prune(graph: Any, layer: str) -> str | None:
    """Why structured pruning of ``layer`` (in a ModelGraph) is refused, or None when it is possible."""
    try:
        node = _find(graph.model, layer)
        tracer = _Tracer(graph.model)
        total = tracer.producer(node)
        tracer.producer_edits(node, tuple(range(total)), total)
    except SettingsError as exc:
        return str(exc)
    except _Refused as exc:
        return str(exc)
    return None


def _channel_scores(node: onnx.NodeProto, w: np.ndarray, criterion: str) -> np.ndarray:
    axis = 1 if node.op_type == "ConvTranspose" or (node.op_type == "Gemm" and not _attr(node, "transB", 0)) else 0
    per_channel = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1).astype(np.float64)
    return np.abs(per_channel).sum(1) if criterion == "l1" else np.sqrt((per_channel**2).sum(1))


class PrunePass:
    """Prune the named layers as their ``PruneSettings`` say (ratio 0 leaves a layer unchanged)."""

    def __init__(self, settings: Mapping[str, PruneSettings]) -> None:
        self.settings = {k: v for k, v in settings.items() if v.ratio > 0}

    def __call__(self, model: onnx.ModelProto) -> PassResult:
        if not self.settings:
            return PassResult(model, False)
        model = clone(model)
        notes: list[str] = []
        structural = False
        for layer, s in self.settings.items():
            node = _find(model, layer)
            if s.mode == "structured":
                notes.append(self._structured(model, node, s))
                structural = True
            else:
                notes.append(self._unstructured(model, node, s))
        if any(s.mode == "unstructured" for s in self.settings.values()):
            notes.append("unstructured sparsity saves no time on ONNX Runtime's CPU kernels (zeros are still multiplied)")
        return PassResult(refresh_shapes(model) if structural else model, True, notes)

    @staticmethod
    def _structured(model: onnx.ModelProto, node: onnx.NodeProto, s: PruneSettings) -> str:
        tracer = _Tracer(model)
        try:
            total = tracer.producer(node)
            w = numpy_helper.to_array(tracer.inits[node.input[1]])
            n_keep = max(1, int(round(total * (1 - s.ratio))))
            scores = _channel_scores(node, w, s.criterion)
            keep = tuple(sorted(int(i) for i in np.argsort(-scores, kind="stable")[:n_keep]))
            tracer.producer_edits(node, keep, total)
        except _Refused as exc:
            raise SettingsError(f"layer {node.name!r}: structured pruning refused: {exc}") from None
        for edit in tracer.edits:
            if isinstance(edit, _SetGroup):
                target = _find(model, edit.node)
                for a in target.attribute:
                    if a.name == "group":
                        a.i = edit.group
            else:
                array = numpy_helper.to_array(initializers(model.graph)[edit.tensor])
                set_initializer(model.graph, edit.tensor, np.take(array, list(edit.keep), axis=edit.axis))
        return f"{node.name}: kept {len(keep)} of {total} output channels ({s.criterion} norm)"

    @staticmethod
    def _unstructured(model: onnx.ModelProto, node: onnx.NodeProto, s: PruneSettings) -> str:
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
        order = np.argsort(np.abs(flat), kind="stable") if s.criterion == "l1" else np.argsort(flat**2, kind="stable")
        flat[order[:count]] = 0
        set_initializer(model.graph, name, w)
        sparsity = float(np.mean(w == 0))
        return f"{node.name}: {sparsity:.1%} of {w.size} weights are zero (unstructured)"

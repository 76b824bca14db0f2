"""SmoothQuant-style migration (Xiao et al. 2023) of activation outliers into the weights of MatMul/Gemm.

Per-tensor int8 activations lose most where a few input channels are much larger than the rest (as
in transformers after LayerNorm): the outliers set the scale and the other channels get a few levels.
For a layer ``Y = X W`` with constant W ([K, N]; a Gemm's B, transposed when ``transB``), channel j of
X is divided by s_j and row j of W multiplied by it, so Y is unchanged:

    s_j = max|X_j| ** alpha / max|W_j| ** (1 - alpha)

with max|X_j| over the calibration samples and max|W_j| over row j (over every layer that reads X,
which share one s). The division is folded into X's producer when it is a LayerNormalization over the
last axis that only these layers read (its scale and bias are divided by s: exact), else a Mul by 1/s
is inserted before the layers. fp32 outputs change only by float error; the activations the int8
layers quantize have flatter channel ranges. Channels that are all zero keep s = 1.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper

from engine.passes.base import PassResult, clone, initializers, set_initializer
from engine.ir.shapes import session_with_outputs

__all__ = ["SmoothQuantPass", "channel_absmax", "smoothable"]

logger = logging.getLogger(__name__)

_FLOOR = 1e-8


def _attr(node: onnx.NodeProto, name: str, default: int) -> int:
    return next((int(helper.get_attribute_value(a)) for a in node.attribute if a.name == name), default)


def smoothable(model: onnx.ModelProto, layers: Iterable[str] | None = None) -> dict[str, list[onnx.NodeProto]]:
    """Input tensor -> the MatMul/Gemm layers (of ``layers``; None: all) reading it as X with a constant 2-D W."""
    wanted = None if layers is None else set(layers)
    inits = initializers(model.graph)
    groups: dict[str, list[onnx.NodeProto]] = {}
    for n in model.graph.node:
        if n.op_type not in ("MatMul", "Gemm") or (wanted is not None and n.name not in wanted):
            continue
        if len(n.input) < 2 or n.input[0] in inits or n.input[1] not in inits or len(inits[n.input[1]].dims) != 2:
            continue
        if n.op_type == "Gemm" and _attr(n, "transA", 0):
            continue
        groups.setdefault(n.input[0], []).append(n)
    return groups


def _weight_rows(node: onnx.NodeProto, w: np.ndarray) -> np.ndarray:
    """W as [K, N] (K: the channels of X)."""
    return w.T if node.op_type == "Gemm" and _attr(node, "transB", 0) else w


def channel_absmax(model: onnx.ModelProto, tensors: Sequence[str], samples: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """max |x| per channel (last axis) of each tensor over ``samples``, from one fp32 run per sample."""
    session = session_with_outputs(model, tensors)
    names = [o.name for o in session.get_outputs()]
    out: dict[str, np.ndarray] = {}
    for sample in samples:
        values = dict(zip(names, session.run(None, {i.name: sample[i.name] for i in session.get_inputs()})))
        for t in tensors:
            v = np.abs(values[t].astype(np.float64))
            m = v.reshape(-1, v.shape[-1]).max(axis=0)
            out[t] = np.maximum(out[t], m) if t in out else m
    return out


class SmoothQuantPass:
    """Migrate activation outliers into the weights of ``layers`` (layer -> alpha in [0, 1]; see the docstring)."""

    def __init__(self, layers: Mapping[str, float], samples: Sequence[Mapping[str, np.ndarray]] | None) -> None:
        self.layers = dict(layers)
        self.samples = list(samples or [])

    def __call__(self, model: onnx.ModelProto) -> PassResult:
        if not self.layers:
            return PassResult(model, False)
        if not self.samples:
            return PassResult(model, False, ["smoothquant skipped: it needs calibration samples (--calib)"])
        if not smoothable(model, self.layers):
            return PassResult(model, False, [f"smoothquant: no MatMul/Gemm with a constant weight among {len(self.layers)} layer(s)"])
        model = clone(model)
        graph = model.graph
        groups = smoothable(model, self.layers)
        absmax = channel_absmax(model, list(groups), self.samples)
        inits = initializers(graph)
        readers: dict[str, list[onnx.NodeProto]] = {}
        for n in graph.node:
            for t in n.input:
                readers.setdefault(t, []).append(n)
        producer = {o: n for n in graph.node for o in n.output}
        outputs = {o.name for o in graph.output}
        folded = inserted = 0
        for tensor, nodes in groups.items():
            alpha = max(self.layers[n.name] for n in nodes)
            rows = [_weight_rows(n, numpy_helper.to_array(inits[n.input[1]]).astype(np.float64)) for n in nodes]
            if any(r.shape[0] != absmax[tensor].shape[0] for r in rows):
                continue
            w_max = np.max([np.abs(r).max(axis=1) for r in rows], axis=0)
            x_max = absmax[tensor]
            ok = (x_max > _FLOOR) & (w_max > _FLOOR)
            s = np.ones_like(x_max)
            s[ok] = x_max[ok] ** alpha / w_max[ok] ** (1 - alpha)
            for n, r in zip(nodes, rows):
                scaled = r * s[:, None]
                stored = scaled.T if n.op_type == "Gemm" and _attr(n, "transB", 0) else scaled
                set_initializer(graph, n.input[1], stored.astype(np.float32))
            if self._fold(graph, inits, producer.get(tensor), tensor, nodes, readers, outputs, s):
                folded += 1
                continue
            inverse = f"{tensor}.smooth_inv"
            graph.initializer.append(numpy_helper.from_array((1.0 / s).astype(np.float32), inverse))
            smoothed = f"{tensor}_smoothed"
            graph.node.append(helper.make_node("Mul", [tensor, inverse], [smoothed], name=f"{tensor}_smooth"))
            for n in nodes:
                n.input[0] = smoothed
            inserted += 1
        _sort(graph)
        notes = [f"smoothquant of {sum(len(v) for v in groups.values())} layer(s): {folded} folded into a LayerNormalization, {inserted} Mul(s) inserted"]
        logger.info(notes[0])
        return PassResult(model, True, notes)

    @staticmethod
    def _fold(graph: onnx.GraphProto, inits: dict[str, onnx.TensorProto], node: onnx.NodeProto | None, tensor: str,
              nodes: list[onnx.NodeProto], readers: dict[str, list[onnx.NodeProto]], outputs: set[str], s: np.ndarray) -> bool:
        """Divide a LayerNormalization producer's scale and bias by s when only ``nodes`` read its output."""
        if node is None or node.op_type != "LayerNormalization" or tensor in outputs or _attr(node, "axis", -1) != -1:
            return False
        if {id(r) for r in readers.get(tensor, [])} != {id(n) for n in nodes}:
            return False
        params = [t for t in node.input[1:3] if t]
        if any(t not in inits or len(readers.get(t, [])) != 1 for t in params):
            return False
        for t in params:
            value = numpy_helper.to_array(inits[t]).astype(np.float64)
            if value.shape[-1:] != s.shape:
                return False
        for t in params:
            set_initializer(graph, t, (numpy_helper.to_array(inits[t]).astype(np.float64) / s).astype(np.float32))
        return True


def _sort(graph: onnx.GraphProto) -> None:
    """Put the inserted Muls before their readers (the graph stays topologically sorted)."""
    from engine.ir.graph import topological_order

    ordered = [graph.node[i] for i in topological_order(graph)]
    copies = []
    for n in ordered:
        c = onnx.NodeProto()
        c.CopyFrom(n)
        copies.append(c)
    del graph.node[:]
    graph.node.extend(copies)

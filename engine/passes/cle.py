"""Cross-layer equalization (Nagel et al. 2019, "Data-Free Quantization"; AIMET's CLE) of Conv pairs.

For a chain ``Conv A -> [BatchNormalization] -> [activation] -> Conv B`` in which each tensor has one
reader, output channel i of A (with its bias, or its BatchNormalization's scale and shift) is divided
by s_i and input channel i of B is multiplied by s_i. With ReLU, PReLU, LeakyReLU or no activation,
f(x / s) = f(x) / s for s > 0, so the fp32 model computes the same values (within float error).
s_i = sqrt(r1_i / r2_i), where r1_i is the range of A's effective weights of channel i (weights times
BatchNormalization's gamma / sqrt(var + eps) when there is one) and r2_i the range of B's weights that
read channel i, so both become sqrt(r1_i * r2_i): the spread of per-channel weight ranges narrows and
the activation between them, quantized per tensor, has more even channel ranges.

B may be a full conv (group 1) or a depthwise conv (group = channels, one weight row per channel);
A may be depthwise too (depthwise-separable blocks equalize pairwise along the chain).

Approximations, only with ``approximate=True`` (AIMET does the same): a Clip with lower bound 0
(ReLU6) becomes a ReLU, which changes the fp32 output wherever it was above the upper bound.
Hard-swish and other activations that are not positively homogeneous are left alone, as AIMET does.
High-bias absorption is not done: it needs the BatchNormalization statistics of the pre-activation
and is exact only for biases the ReLU removes, so it is left to the empirical bias correction.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from engine.passes.base import PassResult, clone, initializers, set_initializer

__all__ = ["CLEPass", "Pair", "find_pairs"]

logger = logging.getLogger(__name__)

_EXACT = {"Relu", "PRelu", "LeakyRelu"}
_SCALE_FLOOR = 1e-8  # channels whose weights are all zero keep s = 1


@dataclass(frozen=True)
class Pair:
    """Two convs to equalize, with the BatchNormalization and activation between them (None if absent)."""

    first: str
    second: str
    norm: str | None
    activation: str | None


def _attr(node: onnx.NodeProto, name: str, default: object) -> object:
    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name), default)


def _clip_is_relu6(node: onnx.NodeProto, inits: dict[str, onnx.TensorProto]) -> bool:
    low = node.input[1] if len(node.input) > 1 and node.input[1] else None
    return low is not None and low in inits and float(numpy_helper.to_array(inits[low])) == 0.0


def find_pairs(model: onnx.ModelProto, approximate: bool = False) -> list[Pair]:
    """The Conv pairs of ``model`` that CLE can equalize (see the module docstring)."""
    graph = model.graph
    inits = initializers(graph)
    outputs = {o.name for o in graph.output}
    readers: dict[str, list[onnx.NodeProto]] = {}
    for n in graph.node:
        for t in n.input:
            readers.setdefault(t, []).append(n)

    def only_reader(tensor: str) -> onnx.NodeProto | None:
        rs = readers.get(tensor, [])
        return rs[0] if len(rs) == 1 and tensor not in outputs else None

    pairs = []
    for a in graph.node:
        if a.op_type != "Conv" or len(a.input) < 2 or a.input[1] not in inits:
            continue
        node, norm, act = only_reader(a.output[0]), None, None
        if node is not None and node.op_type == "BatchNormalization" and all(t in inits for t in node.input[1:5]):
            norm, node = node, only_reader(node.output[0])
        if node is not None and (node.op_type in _EXACT or (approximate and node.op_type == "Clip" and _clip_is_relu6(node, inits))):
            if node.op_type == "PRelu" and node.input[1] not in inits:
                continue
            act, node = node, only_reader(node.output[0])
        if node is None or node.op_type != "Conv" or node.input[0] != (act or norm or a).output[0] or node.input[1] not in inits:
            continue
        params = [t for t in list(a.input[1:3]) + [node.input[1]] + (list(norm.input[1:5]) if norm else []) if t]
        if any(len(readers.get(t, [])) != 1 for t in params):
            continue  # a weight another node reads too would change under it
        channels = numpy_helper.to_array(inits[a.input[1]]).shape[0]
        w2 = numpy_helper.to_array(inits[node.input[1]])
        group = int(_attr(node, "group", 1))
        if not (group == 1 and w2.shape[1] == channels) and not (group == channels and w2.shape[0] == channels and w2.shape[1] == 1):
            continue
        pairs.append(Pair(a.name, node.name, norm.name if norm else None, act.name if act else None))
    return pairs


class CLEPass:
    """Equalize every pair ``find_pairs`` finds (or only those whose first conv is in ``layers``)."""

    def __init__(self, layers: set[str] | None = None, approximate: bool = False) -> None:
        self.layers = layers
        self.approximate = approximate

    def __call__(self, model: onnx.ModelProto) -> PassResult:
        pairs = [p for p in find_pairs(model, self.approximate) if self.layers is None or p.first in self.layers]
        if not pairs:
            return PassResult(model, False)
        model = clone(model)
        graph = model.graph
        by_name = {n.name: n for n in graph.node}
        notes = []
        for pair in pairs:
            _equalize(graph, by_name, pair)
            act = by_name.get(pair.activation) if pair.activation else None
            if act is not None and act.op_type == "Clip":
                del act.input[2:]  # ReLU6 -> ReLU (AIMET's approximation): the upper bound would need per-channel values
                notes.append(f"{pair.activation}: ReLU6 replaced by ReLU for equalization (approximation)")
        notes.insert(0, f"cross-layer equalization of {len(pairs)} conv pair(s)")
        return PassResult(model, True, notes)


def _equalize(graph: onnx.GraphProto, by_name: dict[str, onnx.NodeProto], pair: Pair) -> None:
    inits = initializers(graph)
    a, b = by_name[pair.first], by_name[pair.second]
    w1 = numpy_helper.to_array(inits[a.input[1]]).astype(np.float64)
    w2 = numpy_helper.to_array(inits[b.input[1]]).astype(np.float64)
    depthwise = int(_attr(b, "group", 1)) > 1
    r1 = np.abs(w1).reshape(w1.shape[0], -1).max(axis=1)
    norm = by_name[pair.norm] if pair.norm else None
    if norm is not None:
        gamma, beta, _, var = (numpy_helper.to_array(inits[t]).astype(np.float64) for t in norm.input[1:5])
        eps = float(_attr(norm, "epsilon", 1e-5))
        r1 = r1 * np.abs(gamma) / np.sqrt(var + eps)
    # B's weights that read channel i: row i (depthwise) or column i (full conv)
    r2 = np.abs(w2 if depthwise else np.moveaxis(w2, 1, 0)).reshape(r1.shape[0], -1).max(axis=1)
    ok = (r1 > _SCALE_FLOOR) & (r2 > _SCALE_FLOOR)
    s = np.ones_like(r1)
    s[ok] = np.sqrt(r1[ok] / r2[ok])
    shape1 = (-1,) + (1,) * (w1.ndim - 1)
    if norm is not None:  # scale the BatchNormalization's output: exact whatever its epsilon
        for index in (1, 2):
            t = norm.input[index]
            set_initializer(graph, t, (numpy_helper.to_array(inits[t]).astype(np.float64) / s).astype(np.float32))
    else:
        set_initializer(graph, a.input[1], (w1 / s.reshape(shape1)).astype(np.float32))
        if len(a.input) > 2 and a.input[2]:
            set_initializer(graph, a.input[2], (numpy_helper.to_array(inits[a.input[2]]).astype(np.float64) / s).astype(np.float32))
    scale2 = s.reshape((-1,) + (1,) * (w2.ndim - 1)) if depthwise else s.reshape((1, -1) + (1,) * (w2.ndim - 2))
    set_initializer(graph, b.input[1], (w2 * scale2).astype(np.float32))

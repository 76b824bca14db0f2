"""The Conv pairs cross-layer equalization can scale (``engine.passes.cle``), and how their activation scales.

A pair is ``Conv A -> [BatchNormalization] -> [activation] -> Conv B`` where every tensor between A and
B has one reader (two for a gated activation's input: the gate and the product) and no weight is shared.
The activation's ``kind``:

- ``exact``: none, ReLU, PReLU (constant slope) or LeakyReLU: f(x / s) = f(x) / s;
- ``gated``: f(x) = x * g(x) with g a chain of elementwise ops on x alone (hard-swish as ``HardSwish``,
  ``x * HardSigmoid(x)`` or ``x * Clip(x + 3, 0, 6) / 6``; swish / SiLU as ``x * Sigmoid(x)``), optionally
  followed by a Div or Mul by a scalar: exact once the gate reads s * x';
- ``relu6``: a Clip with lower bound 0 (ReLU6), only when approximations are allowed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from engine.passes.base import initializers

__all__ = ["Pair", "attr", "find_pairs"]

logger = logging.getLogger(__name__)

_EXACT = {"Relu", "PRelu", "LeakyRelu"}
# ops a gate chain may hold: elementwise on one tensor, any other input a constant scalar
_GATE_OPS = {"Add", "Sub", "Mul", "Div", "Clip", "HardSigmoid", "Sigmoid", "Relu"}
_MAX_GATE = 4


@dataclass(frozen=True)
class Pair:
    """Two convs to equalize, with the BatchNormalization and activation between them (None if absent).

    ``activation`` names the activation's node (for a gated one, the product Mul or the HardSwish);
    ``gate`` the first node of the gate chain, ``gate_op`` a short description of it."""

    first: str
    second: str
    norm: str | None
    activation: str | None
    kind: str = "exact"
    gate: str | None = None
    gate_op: str = ""


def attr(node: onnx.NodeProto, name: str, default: object) -> object:
    """The value of ``node``'s attribute ``name``, else ``default``."""
    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name), default)


def _scalar(name: str, inits: dict[str, onnx.TensorProto]) -> bool:
    return name in inits and int(np.prod(inits[name].dims)) == 1


def _clip_is_relu6(node: onnx.NodeProto, inits: dict[str, onnx.TensorProto]) -> bool:
    if len(node.input) > 1:
        low = node.input[1] if node.input[1] else None
        return low is not None and _scalar(low, inits) and float(numpy_helper.to_array(inits[low])) == 0.0
    return float(attr(node, "min", -np.inf)) == 0.0  # type: ignore[arg-type]  # opset < 11: bounds are attributes


def find_pairs(model: onnx.ModelProto, approximate: bool = False) -> list[Pair]:
    """The Conv pairs of ``model`` that CLE can equalize (see the module docstring)."""
    graph = model.graph
    inits = initializers(graph)
    outputs = {o.name for o in graph.output}
    readers: dict[str, list[onnx.NodeProto]] = {}
    for n in graph.node:
        for t in dict.fromkeys(n.input):
            readers.setdefault(t, []).append(n)

    def only_reader(tensor: str) -> onnx.NodeProto | None:
        rs = readers.get(tensor, [])
        return rs[0] if len(rs) == 1 and tensor not in outputs else None

    def gate_step(node: onnx.NodeProto, src: str) -> bool:
        """Whether ``node`` is elementwise on ``src`` alone (any other input a constant scalar)."""
        if node.op_type in ("Sigmoid", "Relu", "HardSigmoid"):
            return list(node.input) == [src]
        if node.op_type == "Clip":
            return node.input[0] == src and all(_scalar(t, inits) for t in node.input[1:] if t)
        others = [t for t in node.input if t != src]
        return node.op_type in _GATE_OPS and len(node.input) == 2 and len(others) == 1 and _scalar(others[0], inits)

    def gated(x: str) -> tuple[onnx.NodeProto, onnx.NodeProto | None, str] | None:
        """(product or HardSwish node, gate start, description) when ``x`` feeds a gated activation."""
        rs = readers.get(x, [])
        if x in outputs:
            return None
        if len(rs) == 1 and rs[0].op_type == "HardSwish":
            return rs[0], None, "HardSwish"
        if len(rs) != 2:
            return None
        for product, start in (rs, rs[::-1]):
            if product.op_type != "Mul" or sorted(product.input).count(x) != 1:
                continue
            node, src, ops = start, x, []
            while node is not None and len(ops) < _MAX_GATE and gate_step(node, src):
                ops.append(node.op_type)
                src = node.output[0]
                nxt = readers.get(src, []) if src not in outputs else []
                if nxt == [product]:
                    return product, start, " -> ".join(ops)
                node = nxt[0] if len(nxt) == 1 else None
        return None

    pairs = []
    for a in graph.node:
        if a.op_type != "Conv" or len(a.input) < 2 or a.input[1] not in inits:
            continue
        node, norm, act, kind, gate, gate_op = only_reader(a.output[0]), None, None, "exact", None, ""
        x = last = a.output[0]
        if node is not None and node.op_type == "BatchNormalization" and all(t in inits for t in node.input[1:5]):
            norm, x = node, node.output[0]
            node, last = only_reader(x), x
        found = gated(x)
        if found is not None:
            act, start, gate_op = found
            kind, gate = "gated", start.name if start is not None else None
            node, last = only_reader(act.output[0]), act.output[0]
            if node is not None and node.op_type in ("Div", "Mul") and node.input[0] == last and _scalar(node.input[1], inits):
                node, last = only_reader(node.output[0]), node.output[0]  # hard-swish's "/ 6"
        elif node is not None and (node.op_type in _EXACT or (approximate and node.op_type == "Clip" and _clip_is_relu6(node, inits))):
            if node.op_type == "PRelu" and node.input[1] not in inits:
                continue
            kind = "relu6" if node.op_type == "Clip" else "exact"
            act, node, last = node, only_reader(node.output[0]), node.output[0]
        if node is None or node.op_type != "Conv" or node.input[0] != last or len(node.input) < 2 or node.input[1] not in inits:
            continue
        params = [t for t in list(a.input[1:3]) + [node.input[1]] + (list(norm.input[1:5]) if norm else []) if t]
        if any(len(readers.get(t, [])) != 1 for t in params):
            continue  # a weight another node reads too would change under it
        channels = numpy_helper.to_array(inits[a.input[1]]).shape[0]
        w2 = numpy_helper.to_array(inits[node.input[1]])
        group = int(attr(node, "group", 1))  # type: ignore[arg-type]
        if not (group == 1 and w2.shape[1] == channels) and not (group == channels and w2.shape[0] == channels and w2.shape[1] == 1):
            continue
        pairs.append(Pair(a.name, node.name, norm.name if norm else None, act.name if act else None, kind, gate, gate_op))
    return pairs

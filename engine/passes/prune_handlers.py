"""Per-op handlers of the prune-group tracer: how channel indices pass through one op.

A handler is called when a tensor the op reads or writes joins a group (``t`` with its ``Dim``). It
maps the indices to the op's other tensors (``b.add``), records the constants and attributes that
shrink (``b.edit`` / ``b.join``), names the op's role (``b.member``) and raises ``Refused`` with the
reason when the op ties the channels to something that cannot shrink. Handlers are looked up by op
type in ``HANDLERS`` (this module's handlers plus ``prune_layout_handlers``); an op without one refuses the group.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import onnx

from engine.passes.prune_dims import Dim, Handler, Refused, SetCount, SliceParam, attr, fit_units, registrar, through, who
from engine.passes.prune_layout_handlers import LAYOUT_HANDLERS

__all__ = ["HANDLERS"]

logger = logging.getLogger(__name__)

HANDLERS: dict[str, Handler] = {}

_UNARY = (
    "Relu", "Sigmoid", "Tanh", "LeakyRelu", "Elu", "Selu", "Softplus", "Softsign", "HardSigmoid", "HardSwish",
    "Identity", "Dropout", "Neg", "Abs", "Erf", "Gelu", "Mish", "Cast", "Sqrt", "Exp", "Log", "Reciprocal",
    "Floor", "Ceil", "Round", "Sign", "Sin", "Cos", "ThresholdedRelu", "Celu", "Not", "IsNaN",
)
_POOLS = ("MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "LpPool", "GlobalLpPool")
_BINARY = ("Add", "Sub", "Mul", "Div", "PRelu", "Pow", "Max", "Min", "Sum", "Mean", "Equal", "Less", "Greater", "Where")

_handles = registrar(HANDLERS)


@_handles(*_UNARY, "Clip")
def _unary(b: Any, node: onnx.NodeProto, t: str, dim: Dim) -> None:
    b.member(node, "activation")
    through(b, node, t, dim)


@_handles(*_POOLS)
def _pool(b: Any, node: onnx.NodeProto, t: str, dim: Dim) -> None:
    if dim.axis != 1:
        raise Refused(f"{who(node)} pools over the pruned axis {dim.axis}")
    b.member(node, "pool")
    through(b, node, t, dim)


@_handles("Softmax", "LogSoftmax")
def _softmax(b: Any, node: onnx.NodeProto, t: str, dim: Dim) -> None:
    axis = int(attr(node, "axis", -1)) % b.rank(t)
    if axis == dim.axis:
        raise Refused(f"{who(node)} normalizes over the pruned axis")
    through(b, node, t, dim)


@_handles(*_BINARY)
def _binary(b: Any, node: onnx.NodeProto, t: str, dim: Dim) -> None:
    """Element-wise with broadcasting: per-channel constants are sliced, tensors of full size join."""
    out = node.output[0]
    out_rank = b.rank(out)
    axis = dim.axis + out_rank - b.rank(t) if t != out else dim.axis
    b.add(out, Dim(axis, dim.rows), node)
    for slot, name in enumerate(node.input):
        if not name or name == t:
            continue
        ax = axis - (out_rank - b.rank(name))
        shape = b.shape(name)
        if ax < 0 or (shape is not None and shape[ax] == 1):
            continue  # broadcast along the pruned axis
        if b.const(name) is not None:
            b.member(node, "per-channel operand")
            b.edit(SliceParam(b.index(node), slot, ax, out))
        else:
            b.member(node, "residual" if node.op_type in ("Add", "Sub", "Sum") else "joins")
            b.add(name, Dim(ax, dim.rows), node)


@_handles("BatchNormalization", "InstanceNormalization")
def _norm(b: Any, node: onnx.NodeProto, t: str, dim: Dim) -> None:
    if dim.axis != 1 or t not in (node.input[0], node.output[0]):
        raise Refused(f"{who(node)}: channels on axis {dim.axis}, not 1")
    b.member(node, "per-channel params")
    through(b, node, t, dim)
    for slot in range(1, 5 if node.op_type == "BatchNormalization" else 3):
        b.need_const(node, slot)
        b.edit(SliceParam(b.index(node), slot, 0, node.output[0]))


@_handles("LayerNormalization")
def _layernorm(b: Any, node: onnx.NodeProto, t: str, dim: Dim) -> None:
    if dim.axis >= int(attr(node, "axis", -1)) % b.rank(t):
        raise Refused(f"{who(node)} normalizes over the pruned axis (its mean and variance would change)")
    through(b, node, t, dim)


@_handles("Conv")
def _conv(b: Any, node: onnx.NodeProto, t: str, dim: Dim) -> None:
    w = b.need_const(node, 1)
    group = int(attr(node, "group", 1))
    i = b.index(node)
    if dim.axis != 1 or t not in (node.input[0], node.output[0]):
        raise Refused(f"{who(node)}: channels on axis {dim.axis} or its weight input")
    if group == 1:
        if t == node.input[0]:
            b.member(node, "consumer")
            b.edit(SliceParam(i, 1, 1, t))
        else:
            b.member(node, "layer")
            b.edit(SliceParam(i, 1, 0, t))
            if len(node.input) > 2 and node.input[2]:
                b.edit(SliceParam(i, 2, 0, t))
        return
    _grouped_conv(b, node, t, dim, w.shape[1], w.shape[0] // group, group)


def _grouped_conv(b: Any, node: onnx.NodeProto, t: str, dim: Dim, per_in: int, per_out: int, group: int) -> None:
    """A conv of ``group`` groups (``per_in`` inputs, ``per_out`` outputs each) couples channels per group.

    Whole groups (their inputs, their outputs and the ``group`` attribute go together) when the group
    channels cover whole groups on the side they arrive at: always for a depthwise conv reached from
    its input, which is then pruned along with its producer. Otherwise the same channel of every group
    goes (a *column*), so the groups stay equal in size and ``group`` stays: an input column is one
    input slice of the weight, an output column one output row per group."""
    i, cin, cout = b.index(node), per_in * group, per_out * group
    side = "input" if t == node.input[0] else "output"
    per = per_in if side == "input" else per_out
    size = cin if side == "input" else cout
    if b.shape(t) is not None and b.shape(t)[1] not in (None, size):
        raise Refused(f"{who(node)}: its {side} has {b.shape(t)[1]} channels, its weight {size}")
    blocks = np.arange(size) // per
    if all(np.array_equal(r, (np.unique(blocks[r])[:, None] * per + np.arange(per)).reshape(-1)) for r in dim.rows):
        kept = tuple(np.unique(blocks[r]) for r in dim.rows)  # whole groups
        ins = tuple((g[:, None] * per_in + np.arange(per_in)).reshape(-1) for g in kept)
        outs = tuple((g[:, None] * per_out + np.arange(per_out)).reshape(-1) for g in kept)
        b.add(node.output[0] if side == "input" else node.input[0], Dim(1, outs if side == "input" else ins), node)
        b.member(node, "depthwise" if per_in == 1 else "grouped (whole groups)")
        b.edit(SliceParam(i, 1, 0, node.output[0]))
        b.edit(SetCount(i, "group", group, node.input[0], per=per_in))
        if len(node.input) > 2 and node.input[2]:
            b.edit(SliceParam(i, 2, 0, node.output[0]))
        return
    whole, columns = fit_units(dim, np.arange(size) % per)  # Regroup when a column holds several group channels
    if not whole.same(dim):
        b.add(t, whole, node)  # the rest of a column nobody owned (e.g. the other input of a Concat)
    if side == "input":
        local = f"{node.name}/input columns"  # weight axis 1 counts the channels within a group
        b.space(local, Dim(1, columns))
        b.member(node, "consumer")
        b.edit(SliceParam(i, 1, 1, local))
    else:
        b.member(node, "layer")
        b.edit(SliceParam(i, 1, 0, t))
        if len(node.input) > 2 and node.input[2]:
            b.edit(SliceParam(i, 2, 0, t))


@_handles("ConvTranspose")
def _conv_transpose(b: Any, node: onnx.NodeProto, t: str, dim: Dim) -> None:
    b.need_const(node, 1)
    if int(attr(node, "group", 1)) != 1 or dim.axis != 1:
        raise Refused(f"{who(node)} is grouped or pruned on axis {dim.axis}")
    i = b.index(node)
    if t == node.input[0]:
        b.member(node, "consumer")
        b.edit(SliceParam(i, 1, 0, t))
    elif t == node.output[0]:
        b.member(node, "layer")
        b.edit(SliceParam(i, 1, 1, t))
        if len(node.input) > 2 and node.input[2]:
            b.edit(SliceParam(i, 2, 0, t))
    else:
        raise Refused(f"the channels reach the weight of {who(node)}")


@_handles("Gemm")
def _gemm(b: Any, node: onnx.NodeProto, t: str, dim: Dim) -> None:
    w = b.need_const(node, 1)
    trans_b, i = int(attr(node, "transB", 0)), b.index(node)
    if attr(node, "transA", 0) or dim.axis != 1 or t not in (node.input[0], node.output[0]):
        raise Refused(f"{who(node)} uses transA or reads the channels as its weight")
    if t == node.input[0]:
        b.member(node, "consumer")
        b.edit(SliceParam(i, 1, 1 if trans_b else 0, t))
        return
    b.member(node, "layer")
    b.edit(SliceParam(i, 1, 0 if trans_b else 1, t))
    if len(node.input) > 2 and node.input[2]:
        c = b.need_const(node, 2)
        if c.ndim and c.shape[-1] == w.shape[0 if trans_b else 1] and c.shape[-1] > 1:
            b.edit(SliceParam(i, 2, c.ndim - 1, t))


@_handles("MatMul")
def _matmul(b: Any, node: onnx.NodeProto, t: str, dim: Dim) -> None:
    """y = a @ b over the last two axes; leading axes broadcast like an element-wise op."""
    a, w, out = node.input[0], node.input[1], node.output[0]
    ra, rb, ro = b.rank(a), b.rank(w), b.rank(out)
    if ra < 2 or rb < 2:
        raise Refused(f"{who(node)} multiplies a vector")
    rows = dim.rows
    if t == a and dim.axis == ra - 1:  # contracted: b's rows shrink too
        b.member(node, "consumer" if b.const(w) is not None else "contraction")
        b.join(node, 1, rb - 2, t)
        return
    if t == w and dim.axis == rb - 2:
        b.member(node, "contraction")
        b.join(node, 0, ra - 1, t)
        return
    if t == a and dim.axis == ra - 2:
        return b.add(out, Dim(ro - 2, rows), node)
    if t == w and dim.axis == rb - 1:
        return b.add(out, Dim(ro - 1, rows), node)
    if t == out and dim.axis == ro - 1:
        b.member(node, "layer" if b.const(w) is not None else "joins")
        return b.join(node, 1, rb - 1, out)
    if t == out and dim.axis == ro - 2:
        return b.add(a, Dim(ra - 2, rows), node)
    # a broadcast (batch) axis, as in attention heads: both sides and the output share it
    axis = dim.axis + ro - b.rank(t)
    b.add(out, Dim(axis, rows), node)
    for slot, name in ((0, a), (1, w)):
        ax, shape = axis - (ro - b.rank(name)), b.shape(name)
        if name != t and ax >= 0 and not (shape is not None and shape[ax] == 1):
            b.join(node, slot, ax, out)


HANDLERS.update(LAYOUT_HANDLERS)

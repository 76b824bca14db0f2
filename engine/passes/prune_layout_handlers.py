"""Prune-group handlers for ops that move the channel axis or cut it: Flatten, Transpose, (Un)Squeeze,
Pad, Resize, reductions, Concat, Split, Slice, Reshape (heads, channel shuffle) and Shape.

Same contract as ``engine.passes.prune_handlers`` (which merges ``LAYOUT_HANDLERS`` into ``HANDLERS``):
a handler maps channel indices through one op, records what shrinks and raises ``Refused`` with the
reason when the channels cannot be traced.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import onnx

from engine.passes.prune_dims import (Dim, Handler, Refused, SetCount, SliceBounds, SplitSizes, attr, fit_units,
                                      registrar, through, who)

__all__ = ["LAYOUT_HANDLERS"]

logger = logging.getLogger(__name__)

LAYOUT_HANDLERS: dict[str, Handler] = {}

_handles = registrar(LAYOUT_HANDLERS)


@_handles("Flatten")
def _flatten(b: Any, node: onnx.NodeProto, t: str, dim: Dim) -> None:
    shape = b.shape(node.input[0])
    if t != node.input[0] or int(attr(node, "axis", 1)) != 1 or dim.axis != 1:
        raise Refused(f"{who(node)}: only a Flatten at axis 1 of the pruned tensor is followed")
    if shape is None or any(d is None for d in shape[2:]):
        raise Refused(f"{who(node)}: the spatial size of its input is unknown")
    hw = math.prod(shape[2:])
    b.member(node, "flatten")
    b.add(node.output[0], Dim(1, tuple((r[:, None] * hw + np.arange(hw)).reshape(-1) for r in dim.rows)), node)


@_handles("Transpose")
def _transpose(b: Any, node: onnx.NodeProto, t: str, dim: Dim) -> None:
    perm = list(attr(node, "perm", list(reversed(range(b.rank(t))))))
    if t == node.input[0]:
        b.add(node.output[0], Dim(perm.index(dim.axis), dim.rows), node)
    else:
        b.add(node.input[0], Dim(perm[dim.axis], dim.rows), node)


@_handles("Unsqueeze", "Squeeze")
def _squeeze(b: Any, node: onnx.NodeProto, t: str, dim: Dim) -> None:
    short, long = (node.input[0], node.output[0]) if node.op_type == "Unsqueeze" else (node.output[0], node.input[0])
    axes = b.const(node.input[1]) if len(node.input) > 1 else attr(node, "axes", None)
    if axes is None:
        raise Refused(f"{who(node)}: its axes are not constant")
    n = b.rank(long)
    kept = [i for i in range(n) if i not in {int(a) % n for a in np.ravel(axes)}]
    if t == short:
        b.add(long, Dim(kept[dim.axis], dim.rows), node)
    elif dim.axis in kept:
        b.add(short, Dim(kept.index(dim.axis), dim.rows), node)
    else:
        raise Refused(f"{who(node)} squeezes the pruned axis")


@_handles("Pad")
def _pad(b: Any, node: onnx.NodeProto, t: str, dim: Dim) -> None:
    pads = b.const(node.input[1]) if len(node.input) > 1 and node.input[1] else attr(node, "pads", None)
    n = b.rank(t)
    if pads is None or len(node.input) > 3 and node.input[3]:
        raise Refused(f"{who(node)}: pads not constant or given per axis")
    pads = np.ravel(pads)
    if pads[dim.axis] or pads[dim.axis + n]:
        raise Refused(f"{who(node)} pads the pruned axis")
    b.member(node, "pad")
    through(b, node, t, dim)


@_handles("Resize", "Upsample")
def _resize(b: Any, node: onnx.NodeProto, t: str, dim: Dim) -> None:
    b.member(node, "resize")
    through(b, node, t, dim)
    sizes = node.input[3] if len(node.input) > 3 and node.input[3] else ""
    if sizes:
        if b.const(sizes) is None:
            raise Refused(f"{who(node)}: its sizes are computed at run time")
        b.edit(SetCount(b.index(node), "shape", int(b.const(sizes)[dim.axis]), node.output[0], 3, dim.axis))


@_handles("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceL2", "ReduceProd")
def _reduce(b: Any, node: onnx.NodeProto, t: str, dim: Dim) -> None:
    """A reduction over other axes keeps the channels (moved down by the axes dropped before them)."""
    n = b.rank(node.input[0])
    axes = b.const(node.input[1]) if len(node.input) > 1 and node.input[1] else attr(node, "axes", None)
    if axes is None:
        raise Refused(f"{who(node)} reduces over all axes")
    axes = {int(a) % n for a in np.ravel(axes)}
    keep = int(attr(node, "keepdims", 1))
    kept = [i for i in range(n) if keep or i not in axes]  # output axis i reads input axis kept[i]
    if t == node.input[0]:
        if dim.axis in axes:
            raise Refused(f"{who(node)} reduces over the pruned axis")
        b.add(node.output[0], Dim(kept.index(dim.axis), dim.rows), node)
    elif t == node.output[0]:
        b.add(node.input[0], Dim(kept[dim.axis], dim.rows), node)
    else:
        raise Refused(f"the channels reach the axes of {who(node)}")


@_handles("Concat")
def _concat(b: Any, node: onnx.NodeProto, t: str, dim: Dim) -> None:
    axis = int(attr(node, "axis", 0)) % b.rank(node.output[0])
    if axis != dim.axis:
        for name in [*node.input, node.output[0]]:
            if name != t:
                b.add(name, dim, node) if b.const(name) is None else b.join(node, list(node.input).index(name), dim.axis, t)
        return
    sizes = [(b.shape(n) or [None] * (axis + 1))[axis] for n in node.input]
    if any(s is None for s in sizes):
        raise Refused(f"{who(node)}: the channel count of an input is unknown")
    b.member(node, "concat")
    offsets = np.cumsum([0, *sizes])
    if t == node.output[0]:
        for name, lo, hi in zip(node.input, offsets, offsets[1:]):
            part = dim.window(int(lo), int(hi))
            if not part.empty:
                b.add(name, part, node)
        return
    for name, lo, hi in zip(node.input, offsets, offsets[1:]):
        if name == t:
            return b.add(node.output[0], dim.shifted(int(lo)), node)


@_handles("Split")
def _split(b: Any, node: onnx.NodeProto, t: str, dim: Dim) -> None:
    axis = int(attr(node, "axis", 0)) % b.rank(node.input[0])
    if axis != dim.axis:
        for name in [node.input[0], *node.output]:
            if name != t:
                b.add(name, dim, node)
        return
    sizes = [(b.shape(n) or [None] * (axis + 1))[axis] for n in node.output]
    if any(s is None for s in sizes):
        raise Refused(f"{who(node)}: the size of an output is unknown")
    b.member(node, "split")
    offsets = np.cumsum([0, *sizes])
    whole = dim
    if t != node.input[0]:
        k = list(node.output).index(t)
        whole = dim.shifted(int(offsets[k]))
        b.add(node.input[0], whole, node)
    for name, lo, hi in zip(node.output, offsets, offsets[1:]):
        part = whole.window(int(lo), int(hi))
        if name != t and not part.empty:
            b.add(name, part, node)
    b.edit(SplitSizes(b.index(node), tuple(int(s) for s in sizes), node.input[0]))


@_handles("Slice")
def _slice(b: Any, node: onnx.NodeProto, t: str, dim: Dim) -> None:
    starts, ends = b.const(node.input[1]), b.const(node.input[2])
    axes = b.const(node.input[3]) if len(node.input) > 3 and node.input[3] else np.arange(len(np.ravel(starts)))
    steps = b.const(node.input[4]) if len(node.input) > 4 and node.input[4] else np.ones(len(np.ravel(starts)))
    if starts is None or ends is None or axes is None or steps is None:
        raise Refused(f"{who(node)}: its bounds are computed at run time")
    n = b.rank(node.input[0])
    where = [i for i, a in enumerate(np.ravel(axes)) if int(a) % n == dim.axis]
    if not where:
        return through(b, node, t, dim)
    pos = where[0]
    size = (b.shape(node.input[0]) or [None] * n)[dim.axis]
    if int(np.ravel(steps)[pos]) != 1 or size is None:
        raise Refused(f"{who(node)} slices the pruned axis with a step or an unknown size")
    start, end = (int(np.clip(v + size if v < 0 else v, 0, size)) for v in (np.ravel(starts)[pos], np.ravel(ends)[pos]))
    b.member(node, "slice")
    whole = dim if t == node.input[0] else dim.shifted(start)
    if t != node.input[0]:
        b.add(node.input[0], whole, node)
    part = whole.window(start, end)
    if t != node.output[0] and not part.empty:
        b.add(node.output[0], part, node)
    b.edit(SliceBounds(b.index(node), pos, start, end, node.input[0]))


@_handles("Reshape")
def _reshape(b: Any, node: onnx.NodeProto, t: str, dim: Dim) -> None:
    src, dst = (node.input[0], node.output[0]) if t == node.input[0] else (node.output[0], node.input[0])
    mapped = _map_axis(b.shape(src), b.shape(dst), dim, _shuffled_axes(b, dst))
    if mapped is None:
        raise Refused(f"{who(node)} mixes the pruned axis with others in a way that cannot be traced")
    mapped, whole = mapped
    out_axis = (mapped if dst == node.output[0] else dim).axis
    target = b.const(node.input[1])
    where = (node, 1, out_axis) if target is not None else _shape_piece(b, node.input[1], out_axis)
    if where is None:
        raise Refused(f"{who(node)}: the pruned entry of its target shape is computed at run time")
    b.member(node, "reshape")
    if not whole.same(dim):  # whole units (a shuffle column, a head) take indices nobody owned yet
        b.add(src, whole, node)
    b.add(dst, mapped, node)
    owner, slot, entry = where
    if int(b.const(owner.input[slot])[entry]) > 0:
        old = b.shape(node.output[0])[out_axis]
        b.edit(SetCount(b.index(owner), "shape", old, node.output[0], slot, entry))


def _shuffled_axes(b: Any, t: str) -> set[int]:
    """Axes ``a`` of ``t`` that a Transpose reading ``t`` swaps with ``a + 1``: a channel shuffle
    (ShuffleNet: Reshape [N, G, C/G, H, W], Transpose (0, 2, 1, 3, 4), Reshape [N, C, H, W])."""
    out = set()
    for user in b.users(t):
        if user.op_type != "Transpose" or user.input[0] != t:
            continue
        perm = list(attr(user, "perm", []))
        moved = [i for i, p in enumerate(perm) if p != i]
        if len(moved) == 2 and moved[1] == moved[0] + 1:
            out.add(moved[0])
    return out


def _shape_piece(b: Any, shape: str, axis: int) -> tuple[onnx.NodeProto, int, int] | None:
    """A target shape built by Concat (batch and sequence read at run time, the rest constant):
    the constant input and entry that hold ``axis``."""
    concat = b.producer.get(shape)
    if concat is None or concat.op_type != "Concat":
        return None
    start = 0
    for slot, piece in enumerate(concat.input):
        size = (b.shape(piece) or [None])[0]
        if size is None:
            return None
        if start <= axis < start + size:
            return (concat, slot, axis - start) if b.const(piece) is not None else None
        start += size
    return None


def _map_axis(src: list[int | None] | None, dst: list[int | None] | None, dim: Dim,
              shuffled: set[int] = frozenset()) -> tuple[Dim, Dim] | None:  # type: ignore[assignment]
    """The same channels after a reshape (compared from the innermost axis, so a dynamic batch is fine),
    and ``dim`` completed to the whole units the reshape keeps (``dim`` itself unless it splits the axis).

    A split of the pruned axis into ``[outer, inner]`` prunes whole blocks of the outer axis (attention
    heads), or, when a Transpose then swaps the two (``shuffled``: a channel shuffle), the same inner
    index in every block, so the shuffle keeps its group count."""
    if src is None or dst is None or any(d is None for d in src[dim.axis:]):
        return None
    inner, size = math.prod(src[dim.axis + 1:]), src[dim.axis]
    after = 1
    for j in range(len(dst) - 1, -1, -1):  # dst axes from the innermost out
        if dst[j] is None or after > inner or inner % after:
            return None
        if after == inner and dst[j] == size:
            return Dim(j, dim.rows), dim
        if after == inner and dst[j] < size:
            break  # the innermost part of a split
        if after * dst[j] >= inner * size:  # merged with neighbouring axes
            step = inner // after
            outer = dst[j] // (size * step)
            if outer * size * step != dst[j]:
                return None
            base = np.arange(outer)[:, None, None] * size * step + np.arange(step)[None, None, :]
            return Dim(j, tuple((base + r[None, :, None] * step).reshape(-1) for r in dim.rows)), dim
        after *= dst[j]
    else:
        return None
    # split of the pruned axis into dst[k..j] (k < j)
    span, k = dst[j], j
    while span < size and k > 0:
        k -= 1
        if dst[k] is None:
            return None
        span *= dst[k]
    if span != size:
        return None
    block = size // dst[k]
    if k in shuffled and j == k + 1:  # a channel shuffle: column c of every block goes together
        whole, units = fit_units(dim, np.arange(size) % block)
        return Dim(j, units), whole
    whole, units = fit_units(dim, np.arange(size) // block)  # whole blocks of the outer axis (heads)
    return Dim(k, units), whole


@_handles("Shape")
def _shape(b: Any, node: onnx.NodeProto, t: str, dim: Dim) -> None:
    """Reading the shape is harmless while only other axes are picked out of it."""
    for user in b.users(node.output[0]):
        index = b.const(user.input[1]) if user.op_type == "Gather" and len(user.input) > 1 else None
        if index is None or dim.axis in {int(i) % b.rank(t) for i in np.ravel(index)}:
            raise Refused(f"{who(node)} reads the pruned channel count")

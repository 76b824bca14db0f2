"""The values a prune group is made of: channel index maps (``Dim``) and the edits that shrink a graph.

A group has ``n`` *group channels* (a layer's output channels, or attention heads). Every tensor the
group touches carries a ``Dim``: the axis its channels lie on and, per group channel, the indices along
that axis it owns (one index for a plain channel, H*W indices after a Flatten, head_dim indices for a
head, none where a Concat or Split leaves the channel out). Removing group channels ``drop`` removes
``Dim.removed(drop)`` along the axis of that tensor, and of every parameter indexed the same way.

Edits are small frozen records that say which constant or attribute changes and in which index space
(the tensor whose ``Dim`` gives the indices); ``apply_edit`` carries them out on a ``ModelProto``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

__all__ = ["Dim", "Edit", "Refused", "Regroup", "SetCount", "SliceBounds", "SliceParam", "SplitSizes", "Handler", "apply_edit", "fit_units", "registrar", "through", "who"]

logger = logging.getLogger(__name__)


class Refused(Exception):
    """Raised while tracing: the group cannot be pruned, for the reason in the message."""


class Regroup(Exception):
    """Raised while tracing: some group channels must be pruned together (``merge``: sets of their
    indices), e.g. the channels of one attention head, of one column of a channel shuffle or of a
    grouped conv. The tracer starts again with each set as one group channel."""

    def __init__(self, merge: Sequence[Sequence[int]]) -> None:
        super().__init__(f"prune {len(merge)} set(s) of channels together")
        self.merge = [tuple(int(c) for c in m) for m in merge]


@dataclass(frozen=True)
class Dim:
    """Where a group's channels lie in one tensor: ``rows[c]`` are the indices of group channel c."""

    axis: int
    rows: tuple[np.ndarray, ...]

    @staticmethod
    def identity(axis: int, size: int, unit: int = 1) -> Dim:
        return Dim(axis, tuple(np.arange(size, dtype=np.int64).reshape(-1, unit)))

    def removed(self, drop: Sequence[int]) -> np.ndarray:
        parts = [self.rows[c] for c in drop]
        return np.sort(np.concatenate(parts)) if parts else np.zeros(0, np.int64)

    def same(self, other: Dim) -> bool:
        return self.axis == other.axis and len(self.rows) == len(other.rows) and all(
            np.array_equal(a, b) for a, b in zip(self.rows, other.rows)
        )

    def shifted(self, offset: int, axis: int | None = None) -> Dim:
        return Dim(self.axis if axis is None else axis, tuple(r + offset for r in self.rows))

    def window(self, start: int, stop: int, axis: int | None = None) -> Dim:
        """The indices within [start, stop), moved to start at 0 (a Concat input, a Split output)."""
        rows = tuple(r[(r >= start) & (r < stop)] - start for r in self.rows)
        return Dim(self.axis if axis is None else axis, rows)

    @property
    def empty(self) -> bool:
        return all(r.size == 0 for r in self.rows)


def fit_units(dim: Dim, unit_of: np.ndarray) -> tuple[Dim, tuple[np.ndarray, ...]]:
    """Map ``dim`` onto units of its axis (``unit_of[i]``: the unit index ``i`` belongs to, e.g. one head,
    one column of a channel shuffle, one group of a grouped conv), which are pruned whole.

    Returns ``dim`` completed to whole units (a unit the group owns only in part takes its other
    indices: they are nobody's, e.g. the other input of a Concat) and each group channel's units.
    Raises ``Regroup`` when one unit holds indices of several group channels.
    """
    owner: dict[int, int] = {}
    merge: list[tuple[int, int]] = []
    units = []
    for c, r in enumerate(dim.rows):
        mine = np.unique(unit_of[r])
        units.append(mine)
        for u in mine.tolist():
            if owner.setdefault(u, c) != c:
                merge.append((owner[u], c))
    if merge:
        raise Regroup(merge)
    members = {u: np.flatnonzero(unit_of == u) for u in owner}
    rows = tuple(np.sort(np.concatenate([members[u] for u in mine.tolist()])) if mine.size else np.zeros(0, np.int64)
                 for mine in units)
    return Dim(dim.axis, rows), tuple(units)


@dataclass(frozen=True)
class SliceParam:
    """Delete, from constant input ``slot`` of node ``node``, along ``axis``, the removed indices of ``space``."""

    node: int
    slot: int
    axis: int
    space: str


@dataclass(frozen=True)
class SetCount:
    """Set a count to its old value minus the indices removed from ``space``.

    ``kind`` "group" is a Conv's group attribute; "shape" is entry ``entry`` of a Reshape shape or a
    Resize sizes constant at input ``slot``. ``per``: indices of ``space`` per unit counted (a grouped
    conv loses one group per ``per`` input channels removed).
    """

    node: int
    kind: str
    old: int
    space: str
    slot: int = 0
    entry: int = 0
    per: int = 1


@dataclass(frozen=True)
class SplitSizes:
    """A Split on the channel axis: each output's size loses the removed indices in its range."""

    node: int
    sizes: tuple[int, ...]
    space: str  # the Split's input


@dataclass(frozen=True)
class SliceBounds:
    """A Slice on the channel axis: start and end move down by the removed indices below them."""

    node: int
    position: int  # index into starts/ends
    start: int
    end: int
    space: str  # the Slice's input


Edit = SliceParam | SetCount | SplitSizes | SliceBounds


def _const(graph: onnx.GraphProto, name: str) -> np.ndarray:
    for t in graph.initializer:
        if t.name == name:
            return numpy_helper.to_array(t)
    raise KeyError(name)


def _write(graph: onnx.GraphProto, node: onnx.NodeProto, slot: int, array: np.ndarray, shared: bool) -> None:
    """Store ``array`` as the node's input ``slot``: in place, or as a private copy when shared."""
    name = node.input[slot]
    if shared:
        name = f"{name}.{node.name}.pruned"
        node.input[slot] = name
    tensor = numpy_helper.from_array(np.ascontiguousarray(array), name)
    for t in graph.initializer:
        if t.name == name:
            t.CopyFrom(tensor)
            return
    graph.initializer.append(tensor)


def apply_edit(model: onnx.ModelProto, edit: Edit, dims: Mapping[str, Dim], drop: Sequence[int],
               readers: Mapping[str, int]) -> None:
    """Carry out one edit in place; ``readers`` counts the nodes reading each initializer."""
    graph = model.graph
    node = graph.node[edit.node]
    removed = dims[edit.space].removed(drop)
    if isinstance(edit, SliceParam):
        name = node.input[edit.slot]
        array = np.delete(_const(graph, name), removed, axis=edit.axis)
        _write(graph, node, edit.slot, array, readers.get(name, 1) > 1)
    elif isinstance(edit, SetCount) and edit.kind == "group":
        for a in node.attribute:
            if a.name == "group":
                a.i = edit.old - len(removed) // edit.per
    elif isinstance(edit, SetCount):
        name = node.input[edit.slot]
        array = _const(graph, name).copy()
        array[edit.entry] = edit.old - len(removed)
        _write(graph, node, edit.slot, array, readers.get(name, 1) > 1)
    elif isinstance(edit, SplitSizes):
        bounds = np.cumsum((0,) + edit.sizes)
        sizes = [s - int(np.sum((removed >= lo) & (removed < hi))) for s, lo, hi in zip(edit.sizes, bounds, bounds[1:])]
        array = np.array(sizes, np.int64)
        if len(node.input) > 1 and node.input[1]:
            _write(graph, node, 1, array, readers.get(node.input[1], 1) > 1)
        else:  # equal split (attribute or num_outputs): give explicit sizes
            name = f"{node.name}.split"
            graph.initializer.append(numpy_helper.from_array(array, name))
            kept = [a for a in node.attribute if a.name not in ("split", "num_outputs")]
            del node.attribute[:]
            node.attribute.extend(kept)
            node.input.extend([""] * (2 - len(node.input)))
            node.input[1] = name
    elif isinstance(edit, SliceBounds):
        for slot, old in ((1, edit.start), (2, edit.end)):
            name = node.input[slot]
            array = _const(graph, name).copy()
            array[edit.position] = old - int(np.sum(removed < old))
            _write(graph, node, slot, array, readers.get(name, 1) > 1)


def attr(node: onnx.NodeProto, name: str, default: object) -> object:
    """An attribute's value, or ``default``."""
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def who(node: onnx.NodeProto) -> str:
    """The op as error messages name it."""
    return f"{node.op_type} {node.name!r}"


def through(b: Any, node: onnx.NodeProto, t: str, dim: Dim) -> None:
    """Input 0 and output 0 share the channel layout."""
    if t == node.input[0]:
        b.add(node.output[0], dim, node)
    elif t == node.output[0]:
        b.add(node.input[0], dim, node)
    else:
        raise Refused(f"the channels reach a parameter input of {who(node)}")


Handler = Callable[[Any, onnx.NodeProto, str, Dim], None]


def registrar(table: dict[str, Handler]) -> Callable[..., Callable[[Handler], Handler]]:
    """A decorator factory: ``@handles("Relu", "Clip")`` files the handler under each op type in ``table``."""
    def handles(*ops: str) -> Callable[[Handler], Handler]:
        def register(fn: Handler) -> Handler:
            for op in ops:
                table[op] = fn
            return fn
        return register
    return handles

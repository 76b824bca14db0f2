"""Prune groups on ONNX graphs: the layers and per-channel ops whose channels must shrink together.

As in DepGraph (Fang et al., CVPR 2023; Torch-Pruning's ``DependencyGraph``), a layer's output
channels are traced through the graph, forwards to every reader and backwards to every writer of a
tensor that carries them: a residual Add pulls in the other branch's producer, a depthwise conv is
pruned along with its input, a Concat offsets the indices, a Flatten expands each channel to its
H*W columns, a Reshape that splits features into attention heads turns the group into whole heads,
a channel shuffle (Reshape, Transpose, Reshape) into the same channel of every shuffle group, a
grouped conv into the same channel of every conv group (or whole conv groups). Where channels must go
together the handler raises ``Regroup`` and the trace starts again with them merged.
Each op's index mapping is a small handler in ``engine.passes.prune_handlers``.

``build_group(model, layer)`` returns a ``Group``: a value that says which layers lose output
channels, which consumers lose input channels, which per-channel parameters are sliced, and why the
group cannot be pruned when it cannot (``details()`` prints all of it). ``Group.prune(model, drop)``
removes group channels ``drop`` in place.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import numpy_helper

from engine.passes.base import drop_unused_initializers
from engine.passes.prune_dims import Dim, Edit, Refused, Regroup, SliceParam, apply_edit
from engine.passes.prune_handlers import HANDLERS

__all__ = ["LAYER_OPS", "Group", "Member", "build_group", "shapes_of"]

logger = logging.getLogger(__name__)

LAYER_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
_ATTEMPTS = 8  # traces per group: each Regroup merges channels (heads, shuffle columns, conv groups) and starts again


@dataclass(frozen=True)
class Member:
    """One op of a group and its role: layer, consumer, depthwise, per-channel operand, residual, ..."""

    node: str
    op_type: str
    role: str


@dataclass
class Group:
    """Channels that shrink together; ``reason`` says why not when they cannot."""

    root: str
    channels: int  # group channels (output channels of the root, or blocks of them pruned together)
    unit: int  # indices of the root's output per group channel (1; a head's size; a shuffle's or conv's group count)
    members: list[Member] = field(default_factory=list)
    edits: list[Edit] = field(default_factory=list)
    dims: dict[str, Dim] = field(default_factory=dict)
    reason: str | None = None

    @property
    def prunable(self) -> bool:
        return self.reason is None

    def names(self, role: str) -> list[str]:
        return list(dict.fromkeys(m.node for m in self.members if m.role == role))

    @property
    def layers(self) -> list[str]:
        """Layers that lose output channels."""
        return self.names("layer")

    @property
    def consumers(self) -> list[str]:
        """Layers that lose input channels (the ones reconstruction refits)."""
        return self.names("consumer")

    def details(self) -> str:
        unit = f" (blocks of {self.unit}: heads, shuffle columns or conv groups)" if self.unit > 1 else ""
        head = f"group of {self.root!r}: {self.channels} channels{unit}"
        if self.reason:
            return f"{head}: cannot be pruned: {self.reason}"
        lines = [head]
        roles: dict[str, list[str]] = {}
        for m in self.members:
            roles.setdefault(m.role, [])
            if f"{m.op_type} {m.node}" not in roles[m.role]:
                roles[m.role].append(f"{m.op_type} {m.node}")
        for role, who in roles.items():
            lines.append(f"  {role}: {', '.join(who)}")
        lines.append(f"  {len(self.edits)} constants/attributes change")
        return "\n".join(lines)

    def prune(self, model: onnx.ModelProto, drop: Sequence[int]) -> None:
        """Remove group channels ``drop`` from ``model`` in place (it must be the model the group was built on).

        The model's value_info is dropped (it described the old channel counts)."""
        if self.reason:
            raise Refused(self.reason)
        readers: dict[str, int] = {}
        for n in model.graph.node:
            for t in dict.fromkeys(n.input):
                readers[t] = readers.get(t, 0) + 1
        for edit in self.edits:
            apply_edit(model, edit, self.dims, drop, readers)
        drop_unused_initializers(model.graph)  # shared constants got private copies
        del model.graph.value_info[:]  # the recorded shapes are stale now (refresh_shapes infers them again)

    def scores(self, model: onnx.ModelProto, criterion: str = "l1") -> np.ndarray:
        """Importance per group channel: the weight norm of each producing layer, pooled over the group.

        Each layer's norms are divided by their mean so layers of different scale count alike.
        """
        total = np.zeros(self.channels)
        inits = {t.name: t for t in model.graph.initializer}
        for e in self.edits:
            node = model.graph.node[e.node] if isinstance(e, SliceParam) else None
            if node is None or e.slot != 1 or node.name not in self.layers or e.space != node.output[0]:
                continue
            w = np.moveaxis(numpy_helper.to_array(inits[node.input[1]]).astype(np.float64), e.axis, 0)
            w = w.reshape(w.shape[0], -1)
            per = np.abs(w).sum(1) if criterion == "l1" else (w**2).sum(1)
            score = np.array([per[r].sum() for r in self.dims[e.space].rows])
            total += score / max(score.mean(), 1e-12)
        return total


def shapes_of(model: onnx.ModelProto) -> dict[str, list[int | None]]:
    """Each tensor's dims (None where unknown) from the model's value_info, inputs and outputs."""
    g = model.graph
    out = {
        v.name: [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim]
        for v in list(g.value_info) + list(g.input) + list(g.output)
        if v.type.tensor_type.HasField("shape")
    }
    for t in g.initializer:
        out[t.name] = list(t.dims)
    return out


class _Tracer:
    """Breadth-first walk over the tensors that carry the group's channels (see the handlers)."""

    def __init__(self, model: onnx.ModelProto, shapes: Mapping[str, list[int | None]]) -> None:
        g = model.graph
        self.graph, self.shapes = g, shapes
        self.inits = {t.name: t for t in g.initializer}
        self.order = {tuple(n.output): i for i, n in enumerate(g.node)}
        self.producer = {o: n for n in g.node for o in n.output if o}
        self.readers: dict[str, list[onnx.NodeProto]] = {}
        for n in g.node:
            for t in dict.fromkeys(n.input):
                self.readers.setdefault(t, []).append(n)
        self.outputs = {o.name for o in g.output}
        self.inputs = {i.name for i in g.input} - set(self.inits)
        self.dims: dict[str, Dim] = {}
        self.members: list[Member] = []
        self.edits: list[Edit] = []
        self.queue: deque[tuple[onnx.NodeProto, str]] = deque()
        self.seen: set[tuple[int, str]] = set()

    # --- queries the handlers use (``producer`` too) ---
    def shape(self, t: str) -> list[int | None] | None:
        return self.shapes.get(t)

    def rank(self, t: str) -> int:
        s = self.shapes.get(t)
        if s is None:
            raise Refused(f"the rank of tensor {t!r} is unknown")
        return len(s)

    def const(self, t: str) -> np.ndarray | None:
        return numpy_helper.to_array(self.inits[t]) if t in self.inits else None

    def need_const(self, node: onnx.NodeProto, slot: int) -> np.ndarray:
        value = self.const(node.input[slot]) if len(node.input) > slot else None
        if value is None:
            raise Refused(f"{node.op_type} {node.name!r}: input {slot} is not a constant")
        return value

    def index(self, node: onnx.NodeProto) -> int:
        return self.order[tuple(node.output)]

    def users(self, t: str) -> list[onnx.NodeProto]:
        return self.readers.get(t, [])

    # --- what the handlers record ---
    def member(self, node: onnx.NodeProto, role: str) -> None:
        self.members.append(Member(node.name, node.op_type, role))

    def edit(self, edit: Edit) -> None:
        if edit not in self.edits:
            self.edits.append(edit)

    def space(self, name: str, dim: Dim) -> None:
        """An index space that is no tensor (a grouped conv's channels within a group), for edits to use."""
        self.dims[name] = dim

    def join(self, node: onnx.NodeProto, slot: int, axis: int, space: str) -> None:
        """Input ``slot`` shares the channels of ``space`` on ``axis``: slice it if constant, else trace it."""
        name = node.input[slot]
        if name in self.inits:
            self.edit(SliceParam(self.index(node), slot, axis, space))
        else:
            self.add(name, Dim(axis, self.dims[space].rows), node)

    def add(self, t: str, dim: Dim, via: onnx.NodeProto | None) -> None:
        if via is not None:
            self.seen.add((self.index(via), t))
        again = False
        if t in self.dims:
            old = self.dims[t]
            if old.same(dim):
                return
            dim = _union(t, old, dim)  # e.g. a Concat reached from two of its inputs
            again = True
        if t in self.outputs:
            raise Refused(f"tensor {t!r} is a graph output: its channel count is fixed")
        if t in self.inputs:
            raise Refused(f"tensor {t!r} is a graph input: its channel count is fixed")
        self.dims[t] = dim
        if t in self.inits:  # a constant reaching the group through a Reshape, Unsqueeze, ...: slice it
            if via is None:
                raise Refused(f"constant {t!r} would have to shrink with the channels")
            self.edit(SliceParam(self.index(via), list(via.input).index(t), dim.axis, t))
            return
        nodes = ([self.producer[t]] if t in self.producer else []) + self.readers.get(t, [])
        for n in nodes:
            if again and n is not via or (self.index(n), t) not in self.seen:
                self.seen.add((self.index(n), t))
                self.queue.append((n, t))

    def run(self) -> None:
        while self.queue:
            node, t = self.queue.popleft()
            handler = HANDLERS.get(node.op_type)
            if handler is None:
                raise Refused(f"channels reach {node.op_type} {node.name!r}, which pruning cannot follow")
            handler(self, node, t, self.dims[t])


def _union(t: str, a: Dim, b: Dim) -> Dim:
    """Both index sets per group channel; refused when they disagree on the axis. When two group
    channels own one index (two paths map them onto the same channel), they must be pruned together:
    ``Regroup`` merges them."""
    if a.axis != b.axis or len(a.rows) != len(b.rows):
        raise Refused(f"tensor {t!r} is reached on two paths with different channel axes")
    rows = tuple(np.union1d(x, y) for x, y in zip(a.rows, b.rows))
    flat = np.concatenate(rows)
    owner = np.repeat(np.arange(len(rows)), [len(r) for r in rows])
    order = np.argsort(flat, kind="stable")
    flat, owner = flat[order], owner[order]
    same = np.flatnonzero(flat[1:] == flat[:-1])
    if same.size:
        raise Regroup(sorted(set(zip(owner[same].tolist(), owner[same + 1].tolist()))))
    return Dim(a.axis, rows)


def _merged(rows: tuple[np.ndarray, ...], merge: list[tuple[int, ...]]) -> tuple[np.ndarray, ...]:
    """The root's group channels after joining each set in ``merge`` into one (union-find)."""
    parent = list(range(len(rows)))

    def find(c: int) -> int:
        while parent[c] != c:
            parent[c] = parent[parent[c]]
            c = parent[c]
        return c

    for members in merge:
        for c in members[1:]:
            parent[find(c)] = find(members[0])
    sets: dict[int, list[int]] = {}
    for c in range(len(rows)):
        sets.setdefault(find(c), []).append(c)
    return tuple(np.sort(np.concatenate([rows[c] for c in cs])) for cs in sorted(sets.values(), key=min))


def _root_axis(node: onnx.NodeProto, shapes: Mapping[str, list[int | None]]) -> tuple[int, int]:
    """The channel axis of a layer's output and its size."""
    out = shapes.get(node.output[0])
    if node.op_type == "MatMul":
        if out is None or out[-1] is None:
            raise Refused(f"the output shape of {node.name!r} is unknown")
        return len(out) - 1, out[-1]
    if out is not None and len(out) > 1 and out[1] is not None:
        return 1, out[1]
    raise Refused(f"the output shape of {node.name!r} is unknown")


def build_group(model: onnx.ModelProto, layer: str, shapes: Mapping[str, list[int | None]] | None = None) -> Group:
    """The group of ``layer``'s output channels in ``model`` (reason set when it cannot be pruned)."""
    shapes = shapes if shapes is not None else shapes_of(model)
    node = next((n for n in model.graph.node if n.name == layer), None)
    if node is None:
        return Group(layer, 0, 1, reason=f"no node named {layer!r}")
    if node.op_type not in LAYER_OPS:
        return Group(layer, 0, 1, reason=f"{node.op_type} has no output channels to prune ({', '.join(LAYER_OPS)} do)")
    if node.op_type in ("Conv", "ConvTranspose", "Gemm") and len(node.input) > 1 and node.input[1] not in {
        t.name for t in model.graph.initializer
    }:
        return Group(layer, 0, 1, reason=f"{node.op_type} {layer!r} has no constant weight")
    rows: tuple[np.ndarray, ...] | None = None
    for _ in range(_ATTEMPTS):
        tracer = _Tracer(model, shapes)
        try:
            axis, size = _root_axis(node, shapes)
            root = Dim(axis, rows) if rows is not None else Dim.identity(axis, size)
            tracer.add(node.output[0], root, None)
            tracer.run()
        except Regroup as exc:
            rows = _merged(root.rows, exc.merge)
            continue
        except Refused as exc:
            return Group(layer, 0, _unit(rows), tracer.members, reason=str(exc))
        group = Group(layer, len(root.rows), _unit(root.rows), tracer.members, tracer.edits, tracer.dims)
        if not group.layers:
            group.reason = "no layer in the group has constant weights to slice"
        elif group.channels < 2:
            group.reason = "the group has a single channel (its channels must all go together)"
        return group
    return Group(layer, 0, _unit(rows), reason="the channels cannot be aligned to the blocks they must be pruned in")


def _unit(rows: tuple[np.ndarray, ...] | None) -> int:
    """Indices of the root's output per group channel (the largest, when they differ)."""
    return max((len(r) for r in rows), default=1) if rows else 1

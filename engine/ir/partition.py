"""Cut a model into parts: the layer segments routines are timed on, and runnable sub-models of node sets.

A **segment** is a layer with the ops that follow it in topological order up to the next layer (ops
before the first layer join the first layer's segment). Every node belongs to exactly one segment,
so when each layer picks an execution provider, its ops go with it: a per-layer choice places every
node. ``engine.measure.provider_tables`` times a segment as one micro-model per provider, and DPRS and
``predict_ms`` tie each op to its segment's layer (``owners``).

``cut`` builds the sub-model of a set of nodes: its inputs are the tensors the set reads from outside
(graph inputs and other nodes' outputs), its outputs the tensors it hands on (graph outputs and
tensors read outside it). ``chunks`` splits a per-node placement into maximal runs of one provider
along the topological order: run in that order, every chunk finds its inputs already computed.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper

from engine.errors import LayerLabError
from engine.ir.graph import ModelGraph
from engine.ir.shapes import TensorInfo
from engine.ir.topology import all_inputs

__all__ = ["Chunk", "chunks", "cut", "owners", "segments", "value_info"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Chunk:
    """Consecutive nodes (topological order) placed on one provider."""

    provider: str
    nodes: tuple[str, ...]


def owners(graph: ModelGraph) -> dict[str, str]:
    """node -> the layer whose segment holds it (a layer owns itself); {} when the graph has no layer."""
    layers = [n.name for n in graph.nodes if n.tunable]
    if not layers:
        return {}
    out: dict[str, str] = {}
    current = layers[0]  # ops before the first layer go with it
    for node in graph.nodes:
        if node.tunable:
            current = node.name
        out[node.name] = current
    return out


def segments(graph: ModelGraph) -> dict[str, list[str]]:
    """layer -> the nodes of its segment (the layer first, then its ops in topological order)."""
    out: dict[str, list[str]] = {n.name: [n.name] for n in graph.layers}
    for node, layer in owners(graph).items():
        if node != layer:
            out[layer].append(node)
    return out


def chunks(graph: ModelGraph, placement: Mapping[str, str]) -> list[Chunk]:
    """Maximal runs of one provider along the topological order; ``placement`` maps every node to one."""
    missing = [n.name for n in graph.nodes if n.name not in placement]
    if missing:
        raise LayerLabError(f"{graph.label}: no provider placed for node {missing[0]!r}")
    out: list[Chunk] = []
    for node in graph.nodes:
        p = placement[node.name]
        if out and out[-1].provider == p:
            out[-1] = Chunk(p, out[-1].nodes + (node.name,))
        else:
            out.append(Chunk(p, (node.name,)))
    return out


def value_info(info: TensorInfo) -> onnx.ValueInfoProto:
    """A typed ValueInfo from a graph tensor (its profiled shape when known)."""
    if info.dtype is None:
        return onnx.ValueInfoProto(name=info.name)
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(info.dtype))
    return helper.make_tensor_value_info(info.name, elem, list(info.shape) if info.shape is not None else None)


def cut(
    model: onnx.ModelProto,
    nodes: Collection[str],
    *,
    infos: Mapping[str, TensorInfo] | None = None,
    keep: Iterable[str] = (),
    name: str = "part",
) -> tuple[onnx.ModelProto, list[str], list[str]]:
    """The sub-model of ``nodes`` (names in ``model``), with its input and output tensor names.

    ``infos`` types the cut (graph tensors at the profiled shapes); ``keep`` adds outputs the caller
    needs besides the graph outputs and the tensors read outside the set."""
    wanted = set(nodes)
    inner = [n for n in model.graph.node if n.name in wanted]
    if len(inner) != len(wanted):
        found = {n.name for n in inner}
        raise LayerLabError(f"{model.graph.name or '<model>'}: no node named {sorted(wanted - found)[0]!r} to cut")
    inits = {t.name: t for t in model.graph.initializer}
    produced = {o for n in inner for o in n.output if o}
    reads = list(dict.fromkeys(t for n in inner for t in all_inputs(n)))
    inputs = [t for t in reads if t not in produced and t not in inits]
    outside = {t for n in model.graph.node if n.name not in wanted for t in all_inputs(n)}
    graph_outputs = {o.name for o in model.graph.output}
    extra = set(keep)
    outputs = [o for n in inner for o in n.output if o and (o in outside or o in graph_outputs or o in extra)]
    known = {v.name: v for v in list(model.graph.input) + list(model.graph.value_info) + list(model.graph.output)}
    typed = lambda t: value_info(infos[t]) if infos is not None and t in infos else known.get(t, onnx.ValueInfoProto(name=t))
    graph = helper.make_graph(
        inner, name,
        [typed(t) for t in inputs],
        [typed(t) for t in outputs],
        [inits[t] for t in reads if t in inits],
        value_info=[typed(t) for t in sorted(produced - set(outputs)) if infos is not None and t in infos],
    )
    sub = helper.make_model(graph, opset_imports=list(model.opset_import))
    sub.ir_version = model.ir_version
    return sub, inputs, outputs


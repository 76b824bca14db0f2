"""Graph order: a topological order of a model's nodes, with If/Loop/Scan bodies' outer reads counted.

``engine.ir.graph`` re-exports ``topological_order``; passes and subgraph builders use it to order
nodes after they insert some.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Iterable

import onnx

from engine.errors import ModelError

__all__ = ["all_inputs", "subgraph_inputs", "topological_order"]

logger = logging.getLogger(__name__)


def topological_order(graph: onnx.GraphProto, label: str = "<model>") -> list[int]:
    """Indices of ``graph.node`` in a topological order, keeping the file's order where it is free.

    Raises ModelError naming a node on a cycle.
    """
    producers: dict[str, int] = {}
    for i, n in enumerate(graph.node):
        for o in n.output:
            if o:
                producers[o] = i
    deps: list[set[int]] = [set() for _ in graph.node]
    users: list[list[int]] = [[] for _ in graph.node]
    for i, n in enumerate(graph.node):
        for t in all_inputs(n):
            j = producers.get(t)
            if j is not None and j != i and j not in deps[i]:
                deps[i].add(j)
                users[j].append(i)
            elif j == i:
                raise ModelError(f"{label}: node {n.name or n.op_type!r} consumes its own output (a cycle)")
    waiting = [len(d) for d in deps]
    ready = [i for i, w in enumerate(waiting) if w == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for u in users[i]:
            waiting[u] -= 1
            if waiting[u] == 0:
                heapq.heappush(ready, u)
    if len(order) != len(graph.node):
        stuck = next(i for i, w in enumerate(waiting) if w > 0)
        name = graph.node[stuck].name or graph.node[stuck].op_type
        raise ModelError(f"{label}: the graph has a cycle through node {name!r}")
    return order


def subgraph_inputs(node: onnx.NodeProto) -> Iterable[str]:
    """Outer-scope names a node's subgraphs (If/Loop/Scan bodies) read: implicit inputs."""
    for attr in node.attribute:
        graphs = ([attr.g] if attr.type == onnx.AttributeProto.GRAPH else []) + list(attr.graphs)
        for g in graphs:
            local = {i.name for i in g.input} | {t.name for t in g.initializer}
            local |= {o for n in g.node for o in n.output}
            for n in g.node:
                for t in list(n.input) + list(subgraph_inputs(n)):
                    if t and t not in local:
                        yield t


def all_inputs(node: onnx.NodeProto) -> list[str]:
    """A node's inputs, its subgraphs' outer-scope reads included (both order it after their producers)."""
    return [t for t in node.input if t] + list(subgraph_inputs(node))

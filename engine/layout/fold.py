"""Fold the nodes a compact view does not draw into the edges: "layers only" keeps the layers, ops become edges.

A pure function on names and pairs, no Qt. Layer ``a`` gets an edge to layer ``b`` when a path
``a -> op -> op -> b`` runs through dropped nodes only; each folded edge remembers how many ops it
stands for, so the view can say so. Paths that start or end in dropped nodes (the model's inputs and
outputs) vanish with them. A residual network's skip path is all ops (Add, Relu, Add, ...), so every
layer would reach every later one; the folded graph is therefore transitively reduced: ``a -> c`` is
kept only when no other kept path leads from ``a`` to ``c``. The result feeds
``engine.layout.layered.layout_graph`` unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

__all__ = ["fold_edges"]

logger = logging.getLogger(__name__)


def fold_edges(nodes: Sequence[str], edges: Iterable[tuple[str, str]], keep: Iterable[str]) -> dict[tuple[str, str], int]:
    """Edges between the ``keep`` nodes through dropped nodes only -> the fewest dropped nodes on such a path.

    Direct edges between kept nodes count 0. Each kept node runs one breadth-first walk through the
    dropped nodes, so the cost is the number of (kept node, dropped node reachable from it) pairs.
    """
    kept = set(keep)
    succs: dict[str, list[str]] = {n: [] for n in nodes}
    for src, dst in edges:
        if src in succs and dst in succs and dst not in succs[src]:
            succs[src].append(dst)
    folded: dict[tuple[str, str], int] = {}
    for start in nodes:
        if start not in kept:
            continue
        depth = {start: 0}
        frontier = [start]
        while frontier:
            following: list[str] = []
            for node in frontier:
                for nxt in succs[node]:
                    if nxt in kept:
                        key = (start, nxt)
                        if key not in folded or depth[node] < folded[key]:
                            folded[key] = depth[node]
                    elif nxt not in depth:
                        depth[nxt] = depth[node] + 1
                        following.append(nxt)
            frontier = following
    return _reduce(folded)


def _reduce(edges: dict[tuple[str, str], int]) -> dict[tuple[str, str], int]:
    """Drop ``a -> c`` when ``c`` is reachable from ``a`` through another successor (reachability as bit sets)."""
    succs: dict[str, list[str]] = {}
    for src, dst in edges:
        succs.setdefault(src, []).append(dst)
        succs.setdefault(dst, [])
    bit = {name: 1 << i for i, name in enumerate(succs)}
    reach: dict[str, int] = {}  # name -> bits of every node reachable from it (itself excluded)

    def reachable(start: str) -> int:
        stack = [(start, iter(succs[start]))]
        while stack:  # iterative post-order: deep residual chains would overflow recursion
            node, children = stack[-1]
            child = next((c for c in children if c not in reach), None)
            if child is not None:
                stack.append((child, iter(succs[child])))
                continue
            stack.pop()
            mask = 0
            for c in succs[node]:
                mask |= bit[c] | reach[c]
            reach[node] = mask
        return reach[start]

    for name in succs:
        if name not in reach:
            reachable(name)
    kept = {}
    for (src, dst), ops in edges.items():
        through_others = 0
        for other in succs[src]:
            if other != dst:
                through_others |= reach[other]
        if not through_others & bit[dst]:
            kept[(src, dst)] = ops
    return kept

"""Fold the nodes a compact view does not draw into the edges: "layers only" keeps the layers, ops become edges.

A pure function on names and pairs, no Qt. Layer ``a`` gets an edge to layer ``b`` when a path
``a -> op -> op -> b`` runs through dropped nodes only; each folded edge remembers how many ops it
stands for, so the view can say so. Paths that start or end in dropped nodes (the model's inputs and
outputs) vanish with them. The result feeds ``engine.layout.layered.layout_graph`` unchanged.
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
    return folded

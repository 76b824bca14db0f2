"""Layered (Sugiyama-style) layout of a DAG for the graph view: box centres and edge polylines.

A pure function, positions only, no Qt. The steps:

1. rank: longest path from the sources, then nodes that fan out more than they fan in are pulled
   down next to their successors (shorter edges); empty ranks are removed;
2. long edges get one dummy point per rank they cross, so every polyline passes between boxes;
3. crossing reduction: a DFS start order, then median sweeps down and up, keeping the best order;
4. x placement: Brandes-Köpf (four vertical alignments, each compacted without overlaps), averaged.
   Averaging keeps the separation constraints because each of them is linear. One change to the
   textbook: preferred partners shared by all four alignments (see ``engine.layout.coords``), so
   residual chains stay straight, the skip edge bends instead, and the chain does not drift sideways;
5. polylines: bottom centre of the source, straight down to the bottom of its rank band, through
   the dummy columns, to the top of the target's rank band, then down to its top centre. Inside a
   rank band a polyline is vertical in its own column, so it never crosses a box.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from engine.errors import LayerLabError
from engine.layout.coords import _place_x

__all__ = ["DEFAULT_NODE_SIZE", "Layout", "layout_graph"]

logger = logging.getLogger(__name__)

#: (width, height) of a node box when the caller gives no size for it.
DEFAULT_NODE_SIZE: tuple[float, float] = (160.0, 44.0)

_SWEEPS = 4  # down+up median sweeps; more rarely pays on model graphs


@dataclass(frozen=True)
class Layout:
    """Where every node box and every edge goes; y grows downward, the drawing starts at (0, 0)."""

    positions: dict[str, tuple[float, float]]  # node id -> box centre (x, y)
    sizes: dict[str, tuple[float, float]]  # node id -> (width, height) used
    edges: dict[tuple[str, str], list[tuple[float, float]]]  # (src, dst) -> polyline, downward
    layers: dict[str, int]  # node id -> rank, 0 = top
    width: float
    height: float
    #: (first rank, last rank) of each column once ``engine.layout.wrap`` has wrapped it; () unwrapped
    columns: tuple[tuple[int, int], ...] = ()


def layout_graph(
    nodes: Sequence[str],
    edges: Sequence[tuple[str, str]],
    sizes: Mapping[str, tuple[float, float]] | None = None,
    *,
    node_gap: float = 24.0,
    rank_gap: float = 48.0,
) -> Layout:
    """Lay out a DAG top to bottom.

    ``edges`` may repeat (duplicates are dropped); ``sizes`` may omit nodes (they get
    ``DEFAULT_NODE_SIZE``) and may name nodes not in ``nodes`` (ignored). Raises
    ``LayerLabError`` for a cycle (naming a node on it), an unknown or duplicate node id,
    a bad size or a bad gap. The result depends only on the inputs, including their order.
    """
    names, index, width, height = _check_nodes(nodes, sizes, node_gap, rank_gap)
    n = len(names)
    pairs = _check_edges(edges, index)
    if n == 0:
        return Layout(positions={}, sizes={}, edges={}, layers={}, width=0.0, height=0.0)
    succs: list[list[int]] = [[] for _ in range(n)]
    preds: list[list[int]] = [[] for _ in range(n)]
    for u, v in pairs:
        succs[u].append(v)
        preds[v].append(u)
    rank = _rank(_topological_order(succs, preds, names), succs, preds)

    # Expanded graph: real nodes 0..n-1, then one dummy per rank crossed by a long edge.
    up = [list(p) for p in preds]
    down: list[list[int]] = [[] for _ in range(n)]
    chains: list[list[int]] = []
    for u, v in pairs:
        chain, prev = [], u
        for r in range(rank[u] + 1, rank[v]):
            d = len(rank)
            rank.append(r)
            width.append(0.0)
            height.append(0.0)
            up.append([prev])
            down.append([])
            down[prev].append(d)
            chain.append(d)
            prev = d
        down[prev].append(v)
        if prev != u:
            up[v][up[v].index(u)] = prev
        chains.append(chain)

    layers = _order(_initial_order(rank, down, n), up, down)
    xs = _place_x(layers, up, down, width, n, node_gap)

    # Rank bands: a band is as tall as its tallest box; boxes are centred in their band.
    band = [max(height[v] for v in layer) for layer in layers]
    tops = [0.0] + list(itertools.accumulate(h + rank_gap for h in band[:-1]))
    bottoms = [t + h for t, h in zip(tops, band)]
    left = min(xs[v] - width[v] / 2 for layer in layers for v in layer)
    xs = [x - left for x in xs]  # shift the drawing to start at x = 0
    ys = [(tops[r] + bottoms[r]) / 2 for r in rank]

    positions = {names[v]: (xs[v], ys[v]) for v in range(n)}
    polylines: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for (u, v), chain in zip(pairs, chains):
        pts = [(xs[u], ys[u] + height[u] / 2), (xs[u], bottoms[rank[u]])]
        for d in chain:
            pts += [(xs[d], tops[rank[d]]), (xs[d], bottoms[rank[d]])]
        pts += [(xs[v], tops[rank[v]]), (xs[v], ys[v] - height[v] / 2)]
        polylines[(names[u], names[v])] = _simplify(pts)
    logger.debug("laid out %d nodes, %d edges, %d dummies", n, len(pairs), len(rank) - n)
    return Layout(
        positions=positions,
        sizes={names[v]: (width[v], height[v]) for v in range(n)},
        edges=polylines,
        layers={names[v]: rank[v] for v in range(n)},
        width=max(xs[v] + width[v] / 2 for layer in layers for v in layer),
        height=bottoms[-1],
    )


def _check_nodes(
    nodes: Sequence[str], sizes: Mapping[str, tuple[float, float]] | None,
    node_gap: float, rank_gap: float,
) -> tuple[list[str], dict[str, int], list[float], list[float]]:
    if not (math.isfinite(node_gap) and node_gap >= 0):
        raise LayerLabError(f"layout: node_gap must be finite and >= 0, got {node_gap!r}")
    if not (math.isfinite(rank_gap) and rank_gap > 0):
        raise LayerLabError(f"layout: rank_gap must be finite and > 0, got {rank_gap!r}")
    names = list(nodes)
    index: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in index:
            raise LayerLabError(f"layout: node {name!r} is listed twice")
        index[name] = i
    sizes = sizes or {}
    boxes = [sizes.get(name, DEFAULT_NODE_SIZE) for name in names]
    for name, (w, h) in zip(names, boxes):
        if not (math.isfinite(w) and math.isfinite(h) and w > 0 and h > 0):
            raise LayerLabError(f"layout: node {name!r} has a bad size {(w, h)!r}")
    return names, index, [float(w) for w, _ in boxes], [float(h) for _, h in boxes]


def _check_edges(edges: Sequence[tuple[str, str]], index: dict[str, int]) -> list[tuple[int, int]]:
    seen: dict[tuple[int, int], None] = {}  # dict keeps first-seen order: deterministic output
    for src, dst in edges:
        for end in (src, dst):
            if end not in index:
                raise LayerLabError(f"layout: edge ({src!r}, {dst!r}) names unknown node {end!r}")
        if src == dst:
            raise LayerLabError(f"layout: the graph has a cycle through node {src!r}")
        seen[(index[src], index[dst])] = None
    return list(seen)


def _topological_order(succs: list[list[int]], preds: list[list[int]], names: list[str]) -> list[int]:
    indeg = [len(p) for p in preds]
    order = [v for v in range(len(names)) if indeg[v] == 0]
    for v in order:  # the list grows while we walk it: a FIFO without a deque
        for w in succs[v]:
            indeg[w] -= 1
            if indeg[w] == 0:
                order.append(w)
    if len(order) < len(names):
        # Every node left has a predecessor that is left too; walking them back must loop.
        left = {v for v in range(len(names)) if indeg[v] > 0}
        v, seen = min(left), set()
        while v not in seen:
            seen.add(v)
            v = next(u for u in preds[v] if u in left)
        raise LayerLabError(f"layout: the graph has a cycle through node {names[v]!r}")
    return order


def _rank(order: list[int], succs: list[list[int]], preds: list[list[int]]) -> list[int]:
    rank = [0] * len(order)
    for v in order:
        for u in preds[v]:
            rank[v] = max(rank[v], rank[u] + 1)
    # Longest path puts every source at the top; a node feeding more edges than it takes
    # is pulled down to just above its first successor, which shortens the sum of edge spans.
    for v in reversed(order):
        if succs[v] and len(succs[v]) > len(preds[v]):
            rank[v] = min(rank[w] for w in succs[v]) - 1
    remap = {r: i for i, r in enumerate(sorted(set(rank)))}
    return [remap[r] for r in rank]


def _initial_order(rank: list[int], down: list[list[int]], n: int) -> list[list[int]]:
    # DFS from the real nodes in (rank, input) order: subtrees start out side by side.
    layers: list[list[int]] = [[] for _ in range(max(rank, default=-1) + 1)]
    visited = [False] * len(rank)
    for s in sorted(range(n), key=rank.__getitem__):
        stack = [s]
        while stack:
            v = stack.pop()
            if visited[v]:
                continue
            visited[v] = True
            layers[rank[v]].append(v)
            stack.extend(reversed(down[v]))
    return layers


def _order(layers: list[list[int]], up: list[list[int]], down: list[list[int]]) -> list[list[int]]:
    pos = [0] * len(up)
    for layer in layers:
        for i, v in enumerate(layer):
            pos[v] = i
    best, best_crossings = [list(layer) for layer in layers], _crossings(layers, down, pos)
    sweeps = ((range(1, len(layers)), up, -1), (range(len(layers) - 2, -1, -1), down, 1))
    for _ in range(_SWEEPS):
        for ranks, nbrs, step in sweeps:  # down using the rank above, then up using the one below
            if best_crossings == 0:
                return best
            for r in ranks:
                _reorder(layers[r], nbrs, pos, len(layers[r + step]))
            crossings = _crossings(layers, down, pos)
            if crossings < best_crossings:
                best, best_crossings = [list(layer) for layer in layers], crossings
    return best


def _reorder(layer: list[int], nbrs: list[list[int]], pos: list[int], n_adjacent: int) -> None:
    if len(layer) < 2:
        return
    scale = (n_adjacent - 1) / (len(layer) - 1)
    keys = []
    for i, v in enumerate(layer):
        ps = sorted(pos[w] for w in nbrs[v])
        k = len(ps)
        if k == 0:
            median = i * scale  # no neighbour on that side: stay roughly where it is
        elif k % 2:
            median = ps[k // 2]
        else:
            median = (ps[k // 2 - 1] + ps[k // 2]) / 2
        keys.append((median, i, v))
    keys.sort()
    for i, (_, _, v) in enumerate(keys):
        layer[i] = v
        pos[v] = i


def _crossings(layers: list[list[int]], down: list[list[int]], pos: list[int]) -> int:
    total = 0
    for r in range(len(layers) - 1):
        seq = [p for v in layers[r] for p in sorted(pos[w] for w in down[v])]
        if len(seq) < 2 or seq == sorted(seq):
            continue  # the common case on model graphs: nothing crosses
        tree = [0] * (len(layers[r + 1]) + 1)  # Fenwick tree of lower ends seen so far
        for seen, p in enumerate(seq):
            i, not_above = p + 1, 0
            while i > 0:
                not_above += tree[i]
                i -= i & -i
            total += seen - not_above
            i = p + 1
            while i < len(tree):
                tree[i] += 1
                i += i & -i
    return total


def _simplify(pts: list[tuple[float, float]]) -> list[tuple[float, float]]:
    # Drop points that repeat a y (zero-length steps), then the middle points of vertical runs.
    out = [pts[0]]
    for p in pts[1:]:
        if p[1] > out[-1][1]:
            out.append(p)
    keep = [out[0]] + [q for p, q, r in zip(out, out[1:], out[2:]) if not p[0] == q[0] == r[0]]
    return keep + out[-1:] if len(out) > 1 else keep

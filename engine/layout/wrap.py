"""Wrap a tall, narrow layered layout into side-by-side columns ("newspaper" layout) to fit a view's aspect ratio.

A pure function on an ``engine.layout.layered.Layout``, no Qt. A model that is mostly one chain lays
out as one tall column; fitted into a landscape view its boxes become unreadable slivers. Here the rank
order is cut into consecutive bands, each band becomes a column, and the columns stand left to right:
ranks still read top to bottom, then left to right. Each edge keeps its polyline inside a column;
where it leaves a column it drops below that column's last rank, runs right into the gutter, up
above the next column and over to where it re-enters, and so on to its target. Connectors that
share a gutter get their own lane (a few pixels apart), so they stay distinguishable.
"""

from __future__ import annotations

import bisect
import logging
import math
from dataclasses import replace

from engine.errors import LayerLabError
from engine.layout.layered import Layout

__all__ = ["wrap_layout", "column_bands"]

logger = logging.getLogger(__name__)

_EPS = 1e-9


def _bands(layout: Layout) -> tuple[list[float], list[float]]:
    """Top and bottom y of each rank band (every rank holds at least one real node)."""
    n_ranks = max(layout.layers.values()) + 1
    tops, bottoms = [math.inf] * n_ranks, [-math.inf] * n_ranks
    for name, r in layout.layers.items():
        y, h = layout.positions[name][1], layout.sizes[name][1]
        tops[r], bottoms[r] = min(tops[r], y - h / 2), max(bottoms[r], y + h / 2)
    return tops, bottoms


def column_bands(tops: list[float], bottoms: list[float], columns: int) -> list[tuple[int, int]]:
    """Cut ranks ``0..len(tops)-1`` into at most ``columns`` runs (first, last rank) of balanced height.

    Each cut goes after the rank whose bottom is nearest to the next multiple of total/columns, so no
    column is much taller than the budget total/columns (or than its tallest single rank).
    """
    n = len(tops)
    total = bottoms[-1] - tops[0]
    out: list[tuple[int, int]] = []
    start = 0
    for k in range(1, columns):
        if start >= n - 1:
            break
        goal = tops[0] + total * k / columns
        # the last rank of this column: its bottom nearest the goal (bottoms increase), at least one
        # rank, leaving one for later; a tie goes to the upper rank
        i = bisect.bisect_left(bottoms, goal, start, n - 1)
        best = min({max(i - 1, start), min(i, n - 2)}, key=lambda r: (abs(bottoms[r] - goal), r))
        out.append((start, best))
        start = best + 1
    out.append((start, n - 1))
    return out


def _rank_extents(layout: Layout, tops: list[float], bottoms: list[float],
                  pad: float) -> tuple[list[float], list[float]]:
    """Left and right x of what is drawn in each rank band (boxes, edge points up to ``pad`` outside it)."""
    lo, hi = [math.inf] * len(tops), [-math.inf] * len(tops)
    for name, r in layout.layers.items():
        x, w = layout.positions[name][0], layout.sizes[name][0]
        lo[r], hi[r] = min(lo[r], x - w / 2), max(hi[r], x + w / 2)
    padded = [b + pad for b in bottoms]
    for pts in layout.edges.values():
        for x, y in pts:
            r = bisect.bisect_left(padded, y)  # the first band whose padded bottom is at or below y
            while r < len(tops) and tops[r] - pad <= y:
                lo[r], hi[r] = min(lo[r], x), max(hi[r], x)
                r += 1
    return lo, hi


def _gap_crossings(layout: Layout, tops: list[float], bottoms: list[float]) -> list[int]:
    """How many edge segments cross the middle of each gap between rank r and r + 1 (where a cut goes)."""
    mids = [(bottoms[r] + tops[r + 1]) / 2 for r in range(len(tops) - 1)]
    count = [0] * len(mids)
    for pts in layout.edges.values():
        for (_, y0), (_, y1) in zip(pts, pts[1:]):
            for i in range(bisect.bisect_right(mids, y0), bisect.bisect_left(mids, y1)):
                count[i] += 1
    return count


def _fit_score(widths: list[float], heights: list[float], aspect: float, gap: float, margin: float) -> float:
    """The scale at which the columns fit a view of width/height ``aspect`` (height 1)."""
    width = sum(widths) + gap * (len(widths) - 1)
    height = max(heights) + (2 * margin if len(widths) > 1 else 0.0)
    return min(aspect / width, 1.0 / height)


def wrap_layout(layout: Layout, aspect: float, *, column_gap: float = 90.0, lane: float = 8.0,
                min_gain: float = 1.2, max_columns: int = 40) -> Layout:
    """``layout`` cut into columns so it fits a view of width/height ``aspect`` at the largest scale.

    Tries 1..``max_columns`` columns and keeps the count that fits at the largest scale; the layout
    comes back unchanged (one column) unless wrapping fits at least ``min_gain`` times larger. The
    result's ``columns`` lists each column's (first rank, last rank). Deterministic.
    """
    if not (math.isfinite(aspect) and aspect > 0):
        raise LayerLabError(f"layout: the view's aspect ratio must be finite and > 0, got {aspect!r}")
    if len(layout.layers) < 2:
        return layout
    tops, bottoms = _bands(layout)
    n_ranks = len(tops)
    if n_ranks < 2:
        return layout
    rank_gap = min(tops[r + 1] - bottoms[r] for r in range(n_ranks - 1))
    best: tuple[float, list[tuple[int, int]], list[tuple[float, float]]] | None = None
    one = None
    rank_lo, rank_hi = _rank_extents(layout, tops, bottoms, rank_gap)
    crossing = _gap_crossings(layout, tops, bottoms)
    for count in range(1, min(max_columns, n_ranks) + 1):
        cols = column_bands(tops, bottoms, count)
        if best is not None and len(cols) < count:
            break
        spans = [(min(rank_lo[a:b + 1]), max(rank_hi[a:b + 1])) for a, b in cols]
        margin = rank_gap / 2 + lane * max((crossing[b] for _, b in cols[:-1]), default=0)
        score = _fit_score([hi - lo for lo, hi in spans], [bottoms[b] - tops[a] for a, b in cols],
                           aspect, column_gap, margin)
        if one is None:
            one = score
        if best is None or score > best[0] + _EPS:
            best = (score, cols, spans)
    assert best is not None and one is not None
    if len(best[1]) == 1 or best[0] < one * min_gain:
        return replace(layout, columns=((0, n_ranks - 1),))
    logger.debug("wrapped %d ranks into %d columns (fit scale x%.2f)", n_ranks, len(best[1]), best[0] / one)
    return _apply(layout, best[1], best[2], tops, bottoms, column_gap, lane, rank_gap)


def _cuts(cols: list[tuple[int, int]], tops: list[float], bottoms: list[float]) -> list[float]:
    """The y (original coordinates) between each column's last rank and the next column's first."""
    return [(bottoms[b] + tops[b + 1]) / 2 for _, b in cols[:-1]]


def _crossings(layout: Layout, cuts: list[float]) -> list[list[tuple[float, tuple[str, str]]]]:
    """Per cut, the edges crossing it with the x where they cross, left to right."""
    out: list[list[tuple[float, tuple[str, str]]]] = [[] for _ in cuts]
    for key, pts in layout.edges.items():
        for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
            for i in range(bisect.bisect_right(cuts, y0), bisect.bisect_left(cuts, y1)):
                out[i].append((x0 + (x1 - x0) * (cuts[i] - y0) / (y1 - y0), key))
    for crossing in out:
        crossing.sort()
    return out


def _apply(layout: Layout, cols: list[tuple[int, int]], spans: list[tuple[float, float]],
           tops: list[float], bottoms: list[float], column_gap: float, lane: float, rank_gap: float) -> Layout:
    cuts = _cuts(cols, tops, bottoms)
    crossings = _crossings(layout, cuts)
    margin = rank_gap / 2 + lane * max((len(c) for c in crossings), default=0)
    dx, dy, left = [], [], 0.0
    for (a, _), (lo, hi) in zip(cols, spans):
        dx.append(left - lo)
        dy.append(margin - tops[a])
        left += hi - lo + column_gap
    column_of = [0] * len(tops)
    for k, (a, b) in enumerate(cols):
        for r in range(a, b + 1):
            column_of[r] = k
    lane_of = {(i, key): j for i, crossing in enumerate(crossings) for j, (_, key) in enumerate(crossing)}

    def col_at(y: float) -> int:
        return bisect.bisect_left(cuts, y)

    edges: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for key, pts in layout.edges.items():
        out = [(pts[0][0] + dx[col_at(pts[0][1])], pts[0][1] + dy[col_at(pts[0][1])])]
        for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
            for i in range(col_at(y0), col_at(y1)):  # the cuts this segment crosses, top down
                x = x0 + (x1 - x0) * (cuts[i] - y0) / (y1 - y0)
                j, k = lane_of[(i, key)], len(crossings[i])
                below = bottoms[cols[i][1]] + dy[i] + rank_gap / 2 + lane * (k - j)
                above = margin - rank_gap / 2 - lane * (k - j)
                step = min(lane, column_gap / (k + 1))  # many connectors share the gutter's width
                gutter = spans[i][1] + dx[i] + column_gap / 2 + step * (j - (k - 1) / 2)
                out += [(x + dx[i], cuts[i] + dy[i]), (x + dx[i], below), (gutter, below), (gutter, above),
                        (x + dx[i + 1], above), (x + dx[i + 1], cuts[i] + dy[i + 1])]
            c = col_at(y1)
            out.append((x1 + dx[c], y1 + dy[c]))
        edges[key] = out
    positions = {}
    for name, (x, y) in layout.positions.items():
        k = column_of[layout.layers[name]]
        positions[name] = (x + dx[k], y + dy[k])
    height = margin + max(bottoms[b] - tops[a] for a, b in cols) + margin
    return replace(layout, positions=positions, edges=edges, width=left - column_gap, height=height,
                   columns=tuple(cols))

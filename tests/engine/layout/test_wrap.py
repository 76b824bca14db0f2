"""Tests for engine.layout.wrap: a tall layered layout cut into columns, checked on positions and edge routes."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import LayerLabError
from engine.layout.layered import Layout, layout_graph
from engine.layout.wrap import column_bands, wrap_layout
from tests.engine.layout.test_layout import _segment_enters_box

EPS = 1e-6
BOX = (180.0, 62.0)


def _chain(n: int, skips: tuple[tuple[int, int], ...] = ()) -> tuple[list[str], list[tuple[str, str]]]:
    names = [f"n{i}" for i in range(n)]
    edges = [(names[i], names[i + 1]) for i in range(n - 1)] + [(names[a], names[b]) for a, b in skips]
    return names, edges


def _column(lay: Layout, name: str) -> int:
    r = lay.layers[name]
    return next(k for k, (a, b) in enumerate(lay.columns) if a <= r <= b)


def check_wrapped(lay: Layout, before: Layout) -> None:
    """Everything the view relies on after wrapping."""
    assert set(lay.positions) == set(before.positions) and lay.sizes == before.sizes and lay.layers == before.layers
    assert set(lay.edges) == set(before.edges)
    # the columns are consecutive runs of ranks covering them all
    ranks = max(lay.layers.values()) + 1
    assert lay.columns[0][0] == 0 and lay.columns[-1][1] == ranks - 1
    assert all(b + 1 == c for (_, b), (c, _) in itertools.pairwise(lay.columns))
    boxes = {}
    for name, ((x, y), (w, h)) in ((n, (lay.positions[n], lay.sizes[n])) for n in lay.positions):
        assert -EPS <= x - w / 2 and x + w / 2 <= lay.width + EPS
        assert -EPS <= y - h / 2 and y + h / 2 <= lay.height + EPS
        boxes[name] = (x - w / 2 + EPS, y - h / 2 + EPS, x + w / 2 - EPS, y + h / 2 - EPS)
    for a, b in itertools.combinations(boxes, 2):  # no two boxes overlap
        (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = boxes[a], boxes[b]
        assert ax1 <= bx0 or bx1 <= ax0 or ay1 <= by0 or by1 <= ay0, f"{a} and {b} overlap"
    # order: top to bottom inside a column, columns left to right, each column within its own x band
    for a, b in itertools.combinations(boxes, 2):
        ca, cb = _column(lay, a), _column(lay, b)
        if ca < cb:
            assert boxes[a][2] < boxes[b][0], f"{a} (column {ca}) is not left of {b} (column {cb})"
        elif ca == cb and lay.layers[a] < lay.layers[b]:
            assert lay.positions[a][1] < lay.positions[b][1]
    # each edge leaves its source's bottom, enters its target's top and crosses no other box
    for (src, dst), pts in lay.edges.items():
        (xs, ys), (_, hs) = lay.positions[src], lay.sizes[src]
        (xd, yd), (_, hd) = lay.positions[dst], lay.sizes[dst]
        assert pts[0] == pytest.approx((xs, ys + hs / 2)) and pts[-1] == pytest.approx((xd, yd - hd / 2))
        assert pts[-1][1] > pts[-2][1]  # the arrow head points down into the target
        assert all(-EPS <= x <= lay.width + EPS and -EPS <= y <= lay.height + EPS for x, y in pts)
        for p, q in itertools.pairwise(pts):
            for name, box in boxes.items():
                if name not in (src, dst):
                    assert not _segment_enters_box(p, q, box), f"edge {src}->{dst} crosses {name}"


def test_a_long_chain_wraps_into_balanced_columns_that_fit_the_view() -> None:
    names, edges = _chain(47, skips=((3, 9), (20, 30)))
    tall = layout_graph(names, edges, {n: BOX for n in names}, node_gap=28.0, rank_gap=36.0)
    lay = wrap_layout(tall, 1.5)
    check_wrapped(lay, tall)
    assert len(lay.columns) >= 4
    # each column within the height budget: total / columns, plus at most one rank (a cut lands on a rank's edge)
    budget = tall.height / len(lay.columns) + BOX[1] + 36.0
    for a, b in lay.columns:
        ys = [lay.positions[n][1] for n in names if a <= lay.layers[n] <= b]
        assert max(ys) - min(ys) + BOX[1] <= budget
    # it fits the view far larger than the single column did
    fit = min(1.5 / lay.width, 1.0 / lay.height)
    assert fit > 3 * min(1.5 / tall.width, 1.0 / tall.height)
    assert 0.6 < (lay.width / lay.height) / 1.5 < 1.7
    # the skip edge 20 -> 30 changes column: it is routed down, through the gutter and up over the next column
    assert _column(lay, "n20") < _column(lay, "n30")
    ys = [y for _, y in lay.edges[("n20", "n30")]]
    assert min(ys) < lay.positions["n30"][1] - BOX[1] / 2 and max(ys) > lay.positions["n20"][1]


def test_a_wide_graph_or_a_tall_view_is_left_alone() -> None:
    names = ["top"] + [f"b{i}" for i in range(12)] + ["end"]
    edges = [("top", f"b{i}") for i in range(12)] + [(f"b{i}", "end") for i in range(12)]
    wide = layout_graph(names, edges)
    lay = wrap_layout(wide, 1.5)
    assert lay.positions == wide.positions and lay.edges == wide.edges and lay.columns == ((0, 2),)
    names, edges = _chain(10)
    tall = layout_graph(names, edges)
    assert wrap_layout(tall, 0.2).positions == tall.positions  # a portrait view fits a short chain as it is


def test_wrapping_is_deterministic_and_rejects_a_bad_aspect() -> None:
    names, edges = _chain(60, skips=((5, 40),))
    tall = layout_graph(names, edges)
    assert wrap_layout(tall, 1.6) == wrap_layout(layout_graph(list(names), list(edges)), 1.6)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(LayerLabError, match="aspect"):
            wrap_layout(tall, bad)


def test_column_bands_cut_at_the_rank_nearest_each_share_of_the_height() -> None:
    tops = [float(10 * r) for r in range(10)]
    bottoms = [t + 6.0 for t in tops]  # ranks 6 tall, 4 apart: total 96
    assert column_bands(tops, bottoms, 1) == [(0, 9)]
    assert column_bands(tops, bottoms, 2) == [(0, 4), (5, 9)]  # rank 4 ends at 46, nearest 48
    assert column_bands(tops, bottoms, 3) == [(0, 3), (4, 6), (7, 9)]  # goals 32, 64: rank 3 ends at 36, rank 6 at 66
    assert column_bands(tops, bottoms, 20) == [(r, r) for r in range(10)]


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=2, max_value=40), st.data())
def test_random_dags_wrap_without_overlaps_or_crossed_boxes(n: int, data: st.DataObject) -> None:
    names = [f"v{i}" for i in range(n)]
    pairs = data.draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), max_size=2 * n))
    edges = [(names[a], names[b]) for a, b in pairs if a < b] + [(names[i], names[i + 1]) for i in range(0, n - 1, 2)]
    aspect = data.draw(st.sampled_from([0.5, 1.0, 1.6, 3.0]))
    tall = layout_graph(names, edges)
    check_wrapped(wrap_layout(tall, aspect), tall)


@settings(max_examples=30, deadline=None)
@given(st.integers(min_value=2, max_value=30), st.data())
def test_per_rank_extents_and_gap_crossings_match_a_walk_over_every_point(n: int, data: st.DataObject) -> None:
    from engine.layout.wrap import _bands, _gap_crossings, _rank_extents

    names = [f"v{i}" for i in range(n)]
    pairs = data.draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), max_size=2 * n))
    lay = layout_graph(names, [(names[a], names[b]) for a, b in pairs if a < b])
    tops, bottoms = _bands(lay)
    pad = 48.0
    lo, hi = _rank_extents(lay, tops, bottoms, pad)
    points = [p for pts in lay.edges.values() for p in pts]
    for r in range(len(tops)):
        xs = [lay.positions[v][0] - lay.sizes[v][0] / 2 for v in names if lay.layers[v] == r]
        xs += [lay.positions[v][0] + lay.sizes[v][0] / 2 for v in names if lay.layers[v] == r]
        xs += [x for x, y in points if tops[r] - pad <= y <= bottoms[r] + pad]
        assert (lo[r], hi[r]) == (min(xs), max(xs))
    crossing = _gap_crossings(lay, tops, bottoms)
    for r, count in enumerate(crossing):
        mid = (bottoms[r] + tops[r + 1]) / 2
        assert count == sum(1 for pts in lay.edges.values() for p, q in itertools.pairwise(pts) if p[1] < mid < q[1])

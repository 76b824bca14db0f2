"""Tests for engine.layout.layered: geometry invariants, chain and diamond shapes, errors, random DAGs."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import LayerLabError
from engine.layout.layered import DEFAULT_NODE_SIZE, Layout, layout_graph

EPS = 1e-6


def _boxes_clear(a: str, b: str, lay: Layout, node_gap: float, rank_gap: float) -> bool:
    (xa, ya), (wa, ha) = lay.positions[a], lay.sizes[a]
    (xb, yb), (wb, hb) = lay.positions[b], lay.sizes[b]
    dx = abs(xa - xb) - (wa + wb) / 2
    dy = abs(ya - yb) - (ha + hb) / 2
    return dx >= node_gap - EPS or dy >= rank_gap - EPS


def _segment_enters_box(p, q, box) -> bool:
    """Liang-Barsky clip of segment p-q against the open box (x0, y0, x1, y1)."""
    x0, y0, x1, y1 = box
    t0, t1 = 0.0, 1.0
    dx, dy = q[0] - p[0], q[1] - p[1]
    for d, lo, hi, start in ((dx, x0, x1, p[0]), (dy, y0, y1, p[1])):
        if abs(d) < 1e-12:
            if not (lo < start < hi):
                return False
            continue
        ta, tb = (lo - start) / d, (hi - start) / d
        t0, t1 = max(t0, min(ta, tb)), min(t1, max(ta, tb))
    return t1 - t0 > 1e-9


def check_layout(lay: Layout, nodes, edges, node_gap: float = 24.0, rank_gap: float = 48.0) -> None:
    """Every invariant the graph view relies on."""
    assert set(lay.positions) == set(nodes) == set(lay.sizes) == set(lay.layers)
    assert set(lay.edges) == set(edges)
    for a, b in itertools.combinations(nodes, 2):
        assert _boxes_clear(a, b, lay, node_gap, rank_gap), f"boxes {a} and {b} overlap"
    boxes = {}
    for v in nodes:
        (x, y), (w, h) = lay.positions[v], lay.sizes[v]
        assert -EPS <= x - w / 2 and x + w / 2 <= lay.width + EPS
        assert -EPS <= y - h / 2 and y + h / 2 <= lay.height + EPS
        boxes[v] = (x - w / 2 + EPS, y - h / 2 + EPS, x + w / 2 - EPS, y + h / 2 - EPS)
    for (src, dst), pts in lay.edges.items():
        assert lay.layers[src] < lay.layers[dst]
        (xs, ys), (_, hs) = lay.positions[src], lay.sizes[src]
        (xd, yd), (_, hd) = lay.positions[dst], lay.sizes[dst]
        assert pts[0] == pytest.approx((xs, ys + hs / 2))
        assert pts[-1] == pytest.approx((xd, yd - hd / 2))
        for p, q in itertools.pairwise(pts):
            assert q[1] > p[1], f"edge {src}->{dst} does not run downward: {pts}"
            for v, box in boxes.items():
                assert not _segment_enters_box(p, q, box), f"edge {src}->{dst} crosses box {v}"


def test_chain_is_vertical_and_ranked_in_order():
    nodes = [f"n{i}" for i in range(12)]
    edges = list(itertools.pairwise(nodes))
    lay = layout_graph(nodes[::-1], edges)  # node order must not matter
    check_layout(lay, nodes, edges)
    assert [lay.layers[v] for v in nodes] == list(range(12))
    assert len({lay.positions[v][0] for v in nodes}) == 1
    assert lay.width == pytest.approx(DEFAULT_NODE_SIZE[0])
    assert all(len(pts) == 2 for pts in lay.edges.values())  # straight down


def test_diamond_is_symmetric():
    nodes, edges = ["a", "b", "c", "d"], [("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")]
    lay = layout_graph(nodes, edges)
    check_layout(lay, nodes, edges)
    xa, xb, xc, xd = (lay.positions[v][0] for v in nodes)
    assert xa == pytest.approx(xd)
    assert xa == pytest.approx((xb + xc) / 2)
    assert abs(xb - xc) == pytest.approx(DEFAULT_NODE_SIZE[0] + 24.0)


def test_residual_chain_stays_straight_and_skip_goes_around():
    body = ["in", "conv1", "relu", "conv2", "add", "out"]
    edges = list(itertools.pairwise(body)) + [("in", "add")]
    lay = layout_graph(body, edges)
    check_layout(lay, body, edges)
    assert len({lay.positions[v][0] for v in body}) == 1
    skip = lay.edges[("in", "add")]
    assert len(skip) > 2 and max(x for x, _ in skip) > lay.positions["in"][0] + DEFAULT_NODE_SIZE[0] / 2


def test_long_edges_pass_between_boxes_in_a_wide_graph():
    nodes = ["top"] + [f"m{i}" for i in range(6)] + [f"k{i}" for i in range(6)] + ["bottom"]
    edges = [("top", f"m{i}") for i in range(6)] + [(f"m{i}", f"k{i}") for i in range(6)]
    edges += [(f"k{i}", "bottom") for i in range(6)] + [("top", "bottom"), ("m0", "bottom")]
    check_layout(layout_graph(nodes, edges), nodes, edges)


def test_output_is_deterministic():
    nodes = [f"v{i}" for i in range(30)]
    edges = [(f"v{i}", f"v{j}") for i in range(30) for j in (i + 1, i + 3, i * 2 + 1) if j < 30]
    assert layout_graph(nodes, edges) == layout_graph(list(nodes), list(edges))


def test_duplicate_edges_are_dropped():
    nodes, edges = ["a", "b", "c"], [("a", "b"), ("b", "c"), ("a", "c")]
    once = layout_graph(nodes, edges)
    twice = layout_graph(nodes, edges + edges[::-1])
    assert twice == once
    assert len(twice.edges) == 3


def test_isolated_nodes_are_placed_without_overlap():
    nodes = ["a", "b", "lonely1", "lonely2"]
    edges = [("a", "b")]
    lay = layout_graph(nodes, edges)
    check_layout(lay, nodes, edges)
    assert lay.layers["lonely1"] == lay.layers["lonely2"] == 0


def test_sizes_and_gaps_are_used():
    nodes, edges = ["a", "b", "c"], [("a", "b"), ("a", "c")]
    sizes = {"a": (300.0, 20.0), "b": (50.0, 90.0)}  # c takes the default size
    lay = layout_graph(nodes, edges, sizes, node_gap=40.0, rank_gap=10.0)
    check_layout(lay, nodes, edges, node_gap=40.0, rank_gap=10.0)
    assert lay.sizes == {"a": (300.0, 20.0), "b": (50.0, 90.0), "c": DEFAULT_NODE_SIZE}
    assert lay.height == pytest.approx(20.0 + 10.0 + 90.0)


def test_source_feeding_a_deep_node_is_pulled_down():
    nodes = ["x", "y", "z", "weight"]
    edges = [("x", "y"), ("y", "z"), ("weight", "z"), ("weight", "y")]
    lay = layout_graph(nodes, edges)
    check_layout(lay, nodes, edges)
    assert lay.layers["weight"] == lay.layers["x"] == 0
    lay = layout_graph(nodes, [("x", "y"), ("y", "z"), ("weight", "z")])
    assert lay.layers["weight"] == lay.layers["y"]


def test_empty_graph():
    lay = layout_graph([], [])
    assert lay.positions == {} and lay.edges == {} and lay.width == lay.height == 0.0


def test_cycle_error_names_a_node_on_the_cycle():
    nodes = ["entry", "a", "b", "c", "after"]
    edges = [("entry", "a"), ("a", "b"), ("b", "c"), ("c", "a"), ("c", "after")]
    with pytest.raises(LayerLabError, match="cycle") as info:
        layout_graph(nodes, edges)
    message = str(info.value)
    assert any(f"'{v}'" in message for v in ("a", "b", "c"))
    assert "'entry'" not in message and "'after'" not in message


def test_self_loop_is_a_cycle():
    with pytest.raises(LayerLabError, match="cycle.*'a'"):
        layout_graph(["a"], [("a", "a")])


@pytest.mark.parametrize(
    "nodes, edges, sizes, match",
    [
        (["a"], [("a", "ghost")], None, "unknown node 'ghost'"),
        (["a", "a"], [], None, "listed twice"),
        (["a"], [], {"a": (0.0, 10.0)}, "bad size"),
        (["a"], [], {"a": (float("nan"), 10.0)}, "bad size"),
    ],
)
def test_bad_input_is_a_layerlab_error(nodes, edges, sizes, match):
    with pytest.raises(LayerLabError, match=match):
        layout_graph(nodes, edges, sizes)


def test_bad_gaps_are_rejected():
    with pytest.raises(LayerLabError, match="rank_gap"):
        layout_graph(["a"], [], rank_gap=0.0)
    with pytest.raises(LayerLabError, match="node_gap"):
        layout_graph(["a"], [], node_gap=-1.0)


@st.composite
def _dags(draw):
    n = draw(st.integers(1, 18))
    names = [f"v{i}" for i in range(n)]  # edges only go from lower to higher index: acyclic
    pairs = draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), max_size=40))
    edges = [(names[min(a, b)], names[max(a, b)]) for a, b in pairs if a != b]
    order = draw(st.permutations(names))
    sizes = draw(st.dictionaries(st.sampled_from(names),
                                 st.tuples(st.floats(1.0, 300.0), st.floats(1.0, 120.0))))
    gap = draw(st.sampled_from([0.0, 8.0, 24.0]))
    return order, edges, sizes, gap


@settings(max_examples=300, deadline=None)
@given(_dags())
def test_random_dags_have_no_overlaps_and_downward_edges(case):
    nodes, edges, sizes, gap = case
    lay = layout_graph(nodes, edges, sizes, node_gap=gap)
    check_layout(lay, nodes, list(dict.fromkeys(edges)), node_gap=gap)

"""Layers only: ops fold into edges between the layers they connect, with the fewest ops on the way."""

from __future__ import annotations

from engine.layout.fold import fold_edges


def test_ops_between_layers_become_one_edge() -> None:
    # conv1 -> relu -> conv2 -> relu2 -> add -> conv3, and a skip conv1 -> add (through nothing else)
    nodes = ["in_op", "conv1", "relu", "conv2", "relu2", "add", "conv3", "out_op"]
    edges = [("in_op", "conv1"), ("conv1", "relu"), ("relu", "conv2"), ("conv2", "relu2"), ("relu2", "add"),
             ("conv1", "add"), ("add", "conv3"), ("conv3", "out_op")]
    folded = fold_edges(nodes, edges, ["conv1", "conv2", "conv3"])
    # conv1 -> add -> conv3 is implied by conv1 -> conv2 -> conv3: the reduction drops it
    assert folded == {("conv1", "conv2"): 1, ("conv2", "conv3"): 2}


def test_a_residual_skip_path_of_ops_does_not_link_every_layer_to_every_later_one() -> None:
    nodes, edges, layers, x = ["stem"], [], ["stem"], "stem"
    for i in range(30):  # x -> conv a -> conv b -> add(x, b) -> relu
        a, b, add, relu = f"a{i}", f"b{i}", f"add{i}", f"relu{i}"
        nodes += [a, b, add, relu]
        layers += [a, b]
        edges += [(x, a), (a, b), (b, add), (x, add), (add, relu)]
        x = relu
    folded = fold_edges(nodes, edges, layers)
    assert len(folded) == 60  # one edge into each block's first conv and one inside each block
    assert ("b0", "a1") in folded and ("b0", "a2") not in folded and ("stem", "a0") in folded


def test_direct_edges_count_zero_and_a_path_through_a_layer_stops_there() -> None:
    folded = fold_edges(["a", "b", "c"], [("a", "b"), ("b", "c")], ["a", "b", "c"])
    assert folded == {("a", "b"): 0, ("b", "c"): 0}  # no a -> c: b is drawn
    assert fold_edges(["a", "x", "b"], [("a", "x"), ("x", "b")], []) == {}

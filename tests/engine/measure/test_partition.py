"""The partitioned runner: a graph split into parts, one session each, computes what the whole model does."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from engine.errors import SettingsError
from engine.ir.graph import build_graph
from engine.ir.partition import Chunk, chunks, cut, owners, segments
from engine.ir.feeds import random_feeds
from engine.measure.partition import build_parts, partition
from engine.measure.provider_costs import placement
from engine.measure.providers import CPU
from engine.passes.precision import PrecisionPass
from tests import builders


def _whole(model, feeds):
    return ort.InferenceSession(model.SerializeToString(), providers=[CPU]).run(None, feeds)


def _thirds(graph) -> list[Chunk]:
    names = [n.name for n in graph.nodes]
    k = len(names) // 3
    return [Chunk(CPU, tuple(names[:k])), Chunk(CPU, tuple(names[k:2 * k])), Chunk(CPU, tuple(names[2 * k:]))]


@pytest.mark.parametrize("make", [builders.residual_net, builders.concat_net, builders.transformer_block])
def test_three_cpu_sessions_compute_the_whole_models_outputs(make) -> None:
    graph = build_graph(make())
    feeds = random_feeds(graph, 0)
    parts = build_parts(graph, _thirds(graph), {}, feeds)
    assert len(parts.parts) == 3
    got = parts.session(1, "test").run(None, feeds)
    for a, b in zip(got, _whole(graph.model, feeds)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_int8_layers_in_parts_match_the_whole_int8_variant() -> None:
    """The same calibration samples give each part the scales the whole model gets, and a border
    Dequantize -> Quantize with one scale is exact: the split model computes what the variant does."""
    graph = build_graph(builders.conv_stack(n=4, channels=8, size=8))
    feeds = random_feeds(graph, 0)
    int8 = [n.name for n in graph.layers][1:3]
    parts = build_parts(graph, _thirds(graph), dict.fromkeys(int8, "int8"), feeds)
    variant = PrecisionPass(calibration=[feeds, feeds], int8=int8)(graph.model).model
    got = parts.session(1, "test").run(None, feeds)
    want = _whole(variant, feeds)
    fp32 = _whole(graph.model, feeds)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-4, atol=1e-4)
    assert np.abs(want[0] - fp32[0]).max() > 1e-3  # int8 really ran: the outputs differ from fp32


def test_ops_follow_their_layer_and_runs_of_one_provider_make_one_part() -> None:
    graph = build_graph(builders.conv_stack(n=3, channels=4, size=8))  # conv_i -> conv_i_relu
    assert owners(graph) == {"conv_0": "conv_0", "conv_0_relu": "conv_0", "conv_1": "conv_1",
                             "conv_1_relu": "conv_1", "conv_2": "conv_2", "conv_2_relu": "conv_2"}
    assert segments(graph)["conv_1"] == ["conv_1", "conv_1_relu"]
    where = placement(graph, {"conv_1": "fp32@OpenVINO", "conv_2": "int8@OpenVINO"})
    assert chunks(graph, where) == [Chunk(CPU, ("conv_0", "conv_0_relu")),
                                    Chunk("OpenVINOExecutionProvider", ("conv_1", "conv_1_relu", "conv_2", "conv_2_relu"))]
    with pytest.raises(SettingsError, match="not a layer"):
        placement(graph, {"conv_0_relu": "fp32"})


def test_a_cut_reads_from_outside_and_hands_on_what_is_read_outside() -> None:
    graph = build_graph(builders.residual_net(blocks=1))
    names = [n.name for n in graph.nodes]
    _, inputs, outputs = cut(graph.model, names[1:3], infos=graph.tensors)
    inits = {t.name for t in graph.model.graph.initializer}
    inner_reads = {t for n in graph.nodes[1:3] for t in n.inputs if t and t not in inits}
    assert set(inputs) == inner_reads - {t for n in graph.nodes[1:3] for t in n.outputs}
    inner = {t for n in graph.nodes[1:3] for t in n.outputs}
    read_later = {t for n in graph.nodes[3:] for t in n.inputs}
    assert set(outputs) == inner & (read_later | {o.name for o in graph.outputs})


def test_partition_runs_a_cpu_route_in_one_session_equal_to_the_model() -> None:
    graph = build_graph(builders.conv_stack(n=3, channels=4, size=8))
    feeds = random_feeds(graph, 1)
    parts = partition(graph, {}, feeds)
    assert parts.providers == [CPU]
    np.testing.assert_allclose(parts.session(1, "t").run(None, feeds)[0], _whole(graph.model, feeds)[0], rtol=1e-6)
    with pytest.raises(SettingsError, match="cannot run in a partitioned route"):
        partition(graph, {"conv_0": "prune:0.5"}, feeds)

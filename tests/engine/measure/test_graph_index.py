"""The per-graph walks latency prediction keeps (``engine.measure.graph_index``) answer what a fresh walk answers."""

from __future__ import annotations

import gc
import random

import pytest

from engine.ir.graph import build_graph
from engine.measure import graph_index as gi
from engine.measure.predict import _borders, predict_ms
from engine.measure.tables import AdaptCost, LayerProfile, Profile, Stats
from tests import builders

_MODELS = {
    "residual": lambda: builders.residual_net(blocks=6, channels=4, size=4),
    "concat": lambda: builders.concat_net(),
    "transformer": lambda: builders.transformer_block(),
    "cnn": lambda: builders.classic_cnn(),
}


def _fresh_walks(graph):
    """Producers and consumers as predict_ms built them before the index (a tensor read twice listed twice)."""
    producers = {o: n for n in graph.nodes for o in n.outputs}
    consumers: dict = {}
    for n in graph.nodes:
        for t in n.inputs:
            consumers.setdefault(t, []).append(n)
    return producers, consumers


def _fresh_borders(graph, plan, routine):
    """The island borders walked from scratch, without the index (the rule of ``predict._borders``)."""
    producers, consumers = _fresh_walks(graph)
    same = lambda other: other.op_type == "Conv" and plan.get(other.name) == routine  # noqa: E731

    def island(t, upstream):
        layers, open_end = gi.reached_layers(t, producers, consumers, upstream)
        return not open_end and bool(layers) and all(same(n) for n in layers)

    out = []
    for node in graph.layers:
        if node.op_type != "Conv" or plan.get(node.name) != routine:
            continue
        out += [t for t in node.inputs if t and t not in node.weights and t in graph.tensors and not island(t, True)]
        out += [t for t in node.outputs if not island(t, False)]
    return out


@pytest.mark.parametrize("name", sorted(_MODELS))
def test_every_walk_equals_a_fresh_one(name) -> None:
    graph = build_graph(_MODELS[name]())
    producers, consumers = _fresh_walks(graph)
    index = gi.graph_index(graph)
    tensors = sorted({t for n in graph.nodes for t in (*n.inputs, *n.outputs) if t})
    for _ in range(2):  # the second pass answers from the memo
        for t in tensors:
            for upstream in (True, False):
                for past in (True, False):
                    found, open_end = gi.reached_layers(t, producers, consumers, upstream, past)
                    cached, cached_open = index.reach(t, upstream, past)
                    assert [n.name for n in cached] == [n.name for n in found] and cached_open == open_end, (t, upstream, past)


@pytest.mark.parametrize("name", sorted(_MODELS))
def test_borders_and_predictions_equal_the_uncached_ones(name) -> None:
    graph = build_graph(_MODELS[name]())
    layers = [n.name for n in graph.layers]
    rng = random.Random(7)
    plans = [{n: "int8" for n in layers}, {n: "fp32" for n in layers}]
    plans += [{n: rng.choice(["fp32", "int8", "fp16"]) for n in layers} for _ in range(6)]
    for plan in plans:
        for routine in ("int8", "fp32"):
            assert _borders(graph, plan, routine) == _fresh_borders(graph, plan, routine)
    # a profile with a price on every tensor: any border counted wrongly moves the prediction
    tensors = sorted({t for n in graph.nodes for t in n.outputs} | {t.name for t in graph.inputs})
    adapts = [AdaptCost("", "run", 0.05, "fp32"), AdaptCost("", "transpose", 0.1, "int8"),
              AdaptCost("", "reorder", 0.1, "fp32")]
    adapts += [AdaptCost(t, kind, 0.001 * (i + 1)) for i, t in enumerate(tensors)
               for kind in ("quantize", "dequantize", "transpose", "layout", "cast")]
    profile = Profile(Stats(1.0, 1.0, 1.0), 1.0,
                      [LayerProfile(n.name, n.op_type, n.tunable, 0.1, {"fp32": 0.1, "int8": 0.05, "fp16": 0.2}
                                    if n.tunable else {}) for n in graph.nodes], adapts, threads=1, ort_version="test")
    warm = [predict_ms(profile, graph, plan) for plan in plans]
    gi._indexes.clear()
    cold = [predict_ms(profile, graph, plan) for plan in plans]
    assert warm == cold
    expected = []
    for plan in plans:  # the border term recomputed from fresh walks
        chosen = {n: r for n, r in plan.items() if r != "fp32"}
        full = {**{n: "fp32" for n in layers}, **chosen}
        extra = 0.0
        for routine, kind in (("int8", "transpose"), ("fp32", "layout")):
            n_all = len(_fresh_borders(graph, {n: routine for n in layers}, routine))
            weight = min(1 / n_all, 1.0) if n_all else 0.0
            extra += weight * sum(profile.adapt_ms(t, kind) or 0.0 for t in _fresh_borders(graph, full, routine))
        expected.append(extra)
    no_borders = Profile(profile.end_to_end, 1.0, profile.layers,
                         [a for a in adapts if a.kind not in ("transpose", "layout", "reorder")], threads=1, ort_version="test")
    for plan, total, extra in zip(plans, warm, expected):
        assert total - predict_ms(no_borders, graph, plan) == pytest.approx(extra, abs=1e-12)


def test_each_graph_has_its_own_index_dropped_with_it() -> None:
    a, b = build_graph(builders.conv_stack(n=2)), build_graph(builders.conv_stack(n=3))
    ia, ib = gi.graph_index(a), gi.graph_index(b)
    assert ia is gi.graph_index(a) and ib is not ia and len(ib.producers) > len(ia.producers)
    key = id(a)
    del a, ia
    gc.collect()
    assert key not in gi._indexes

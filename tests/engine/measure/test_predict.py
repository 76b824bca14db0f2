"""predict_ms against a fixed profile whose numbers are known: deterministic, in the default run.

The timing tests that compare predictions with fresh measurements stay opt-in (``-m timing``);
this one checks the arithmetic those predictions rest on, which no noise can move.
"""

from __future__ import annotations

import pytest

from engine.ir.graph import build_graph
from engine.measure.predict import predict_ms
from engine.measure.tables import AdaptCost, LayerProfile, Profile, Stats
from tests import builders

# conv_0 -> conv_0_relu -> conv_1 -> conv_1_relu -> conv_2 -> conv_2_relu
_FP32 = {"conv_0": 1.0, "conv_1": 2.0, "conv_2": 3.0}
_INT8 = {"conv_0": 0.5, "conv_1": 0.8, "conv_2": 1.1}
_FP16 = {"conv_0": 1.5, "conv_1": 2.5, "conv_2": 3.5}
_RELU, _RUN = 0.1, 0.05
_QUANT = {"x": 0.011, "conv_0_relu_out": 0.013, "conv_1_relu_out": 0.017}  # on each layer's input
_DEQUANT = {"conv_0_out": 0.019, "conv_1_out": 0.023, "conv_2_out": 0.029}  # on each layer's output
_CAST = 0.007


@pytest.fixture(scope="module")
def fixed() -> tuple:
    graph = build_graph(builders.conv_stack(n=3, channels=8, size=8))
    layers = []
    for n in graph.nodes:
        if n.op_type == "Conv":
            layers.append(LayerProfile(n.name, "Conv", True, _FP32[n.name],
                                       {"fp32": _FP32[n.name], "int8": _INT8[n.name], "fp16": _FP16[n.name]}))
        else:
            layers.append(LayerProfile(n.name, n.op_type, False, _RELU))
    adapts = [AdaptCost("", "run", _RUN, "fp32")]
    adapts += [AdaptCost(t, "quantize", ms) for t, ms in _QUANT.items()]
    adapts += [AdaptCost(t, "dequantize", ms) for t, ms in _DEQUANT.items()]
    adapts += [AdaptCost(t, "cast", _CAST) for t in (*_QUANT, *_DEQUANT)]
    profile = Profile(Stats(6.5, 6.4, 6.6), 1.0, layers, adapts, threads=1, ort_version="test",
                      adapt_scale={"quantize": 2.0})  # in context a Quantize costs twice its micro-model
    return graph, profile


def test_all_fp32_is_the_sum_of_node_times_and_the_run(fixed) -> None:
    graph, profile = fixed
    assert predict_ms(profile, graph, {}) == pytest.approx(_RUN + sum(_FP32.values()) + 3 * _RELU, abs=1e-12)


def test_one_int8_layer_pays_a_scaled_quantize_and_a_dequantize(fixed) -> None:
    graph, profile = fixed
    expected = (_RUN + _FP32["conv_0"] + _INT8["conv_1"] + _FP32["conv_2"] + 3 * _RELU
                + 2.0 * _QUANT["conv_0_relu_out"] + _DEQUANT["conv_1_out"])
    assert predict_ms(profile, graph, {"conv_1": "int8"}) == pytest.approx(expected, abs=1e-12)


def test_every_layer_int8_and_one_fp16(fixed) -> None:
    graph, profile = fixed
    int8 = (_RUN + sum(_INT8.values()) + 3 * _RELU
            + 2.0 * sum(_QUANT.values()) + sum(_DEQUANT.values()))  # a Relu sits between: no layer pair stays int8
    assert predict_ms(profile, graph, dict.fromkeys(_INT8, "int8")) == pytest.approx(int8, abs=1e-12)
    fp16 = _RUN + _FP32["conv_0"] + _FP16["conv_1"] + _FP32["conv_2"] + 3 * _RELU + 2 * _CAST
    assert predict_ms(profile, graph, {"conv_1": "fp16"}) == pytest.approx(fp16, abs=1e-12)


def _with_context(fixed: tuple, context: dict[str, float]) -> tuple:
    """The fixed profile with every Relu at ``context`` (routine -> ms) in those routines' runs."""
    from dataclasses import replace

    graph, profile = fixed
    layers = [replace(lp, context=dict(context)) if not lp.tunable else lp for lp in profile.layers]
    return graph, replace(profile, layers=layers)


def test_an_op_costs_what_it_did_in_the_run_of_its_layers_routine(fixed) -> None:
    """ORT fuses a bias Add/Relu into an fp32 layer but runs it alone after an int8 one: each Relu took
    0.3 ms in the all-int8 run, 0.1 in the fp32 one. All int8: the int8 run's times; one layer int8:
    each Relu next to it (conv_0_relu between conv_0 and conv_1, conv_1_relu between conv_1 and conv_2)
    pays half the change; conv_2_relu, next to conv_2 alone, none."""
    graph, profile = _with_context(fixed, {"int8": 0.3})
    base = predict_ms(fixed[1], graph, dict.fromkeys(_INT8, "int8"))
    assert predict_ms(profile, graph, dict.fromkeys(_INT8, "int8")) == pytest.approx(base + 3 * (0.3 - _RELU), abs=1e-12)
    one = predict_ms(fixed[1], graph, {"conv_1": "int8"})
    assert predict_ms(profile, graph, {"conv_1": "int8"}) == pytest.approx(one + 2 * (0.3 - _RELU) / 2, abs=1e-12)
    assert predict_ms(profile, graph, {}) == pytest.approx(predict_ms(fixed[1], graph, {}), abs=1e-12)


def test_a_change_two_runs_both_show_is_not_counted_twice(fixed) -> None:
    """A slow fp32 run (the Relus took 0.1 there, 0.03 in both the int8 and the fp16 runs): with conv_0
    fp16 and conv_1 int8, conv_0_relu costs 0.03 (a mix of measured times), not 0.1 - 2 * 0.07."""
    from engine.measure.predict import context_shares

    graph, profile = _with_context(fixed, {"int8": 0.03, "fp16": 0.03})
    shares = context_shares(profile, graph)
    assert shares["conv_0"]["fp16"] == pytest.approx((0.03 - _RELU) / 2, abs=1e-12)  # half of conv_0_relu's change
    assert shares["conv_1"]["int8"] == pytest.approx(0.03 - _RELU, abs=1e-12)  # halves of both Relus beside it
    mixed = predict_ms(profile, graph, {"conv_0": "fp16", "conv_1": "int8"})
    plain = predict_ms(fixed[1], graph, {"conv_0": "fp16", "conv_1": "int8"})
    # conv_0_relu all the way, conv_1_relu half (conv_2 stays fp32), conv_2_relu untouched
    assert mixed == pytest.approx(plain + (0.03 - _RELU) * 1.5, abs=1e-12)


def test_dprs_prices_the_ops_context_as_predict_ms_does(fixed) -> None:
    from itertools import product

    from engine.optimize import dprs
    from engine.optimize.routes import build_problem

    graph, profile = _with_context(fixed, {"int8": 0.3, "fp16": 0.02})
    problem = build_problem(graph, profile, None, routines=("fp32", "int8", "fp16"))
    names = [n.name for n in graph.layers]
    for choice in product(("fp32", "int8", "fp16"), repeat=len(names)):
        routes = dict(zip(names, choice))
        full = {n.name: routes.get(n.name, "fp32") for n in graph.nodes}
        assert dprs.route_cost(problem, full)[0] == pytest.approx(predict_ms(profile, graph, routes), abs=1e-9), routes


def test_the_profile_keeps_each_ops_time_in_every_routines_run() -> None:
    """``_assemble`` fills ``context`` for ops (not layers, not the ops-in-int8 run) from the runs' node times."""
    from engine.measure.profiler import _assemble
    from engine.measure.timing import Calibration

    graph = build_graph(builders.conv_stack(n=2, channels=4, size=6))
    ops = [n.name for n in graph.nodes if not n.tunable]
    run = lambda ms: {"ok": True, "e2e": {"median": 1.0, "p10": 1.0, "p90": 1.0}, "nodes": {n.name: ms for n in graph.nodes}}
    results = {"fp32": run(0.1), "int8": run(0.2), "int8_ops": run(0.05), "fp16": {"ok": False, "unsupported": {}}}
    prof = _assemble(graph, results, {}, Calibration(0.0, 0.0), 1, {"provider": "CPUExecutionProvider"}, {}, True)
    assert ops and all(prof.layer(n).context == {"int8": 0.2} for n in ops)
    assert all(lp.context == {} for lp in prof.layers if lp.tunable)


def test_a_layer_with_its_share_never_costs_less_than_nothing(fixed) -> None:
    """A slow fp32 run can make the ops around an int8 layer look 10 ms faster: DPRS takes no negative
    times, so the share stops at the layer's own time (here conv_2, 1.1 ms in int8)."""
    from engine.measure.predict import context_shares
    from engine.optimize.routes import build_problem

    graph, profile = _with_context(fixed, {"int8": -20.0})
    shares = context_shares(profile, graph)
    assert shares["conv_2"]["int8"] == pytest.approx(-_INT8["conv_2"], abs=1e-12)
    problem = build_problem(graph, profile, None, routines=("fp32", "int8"))
    assert min(t for times in problem.times.values() for t in times.values()) >= 0


def test_layout_adapts_are_priced_as_the_run_of_their_borders_showed_them(fixed) -> None:
    """fp32 Conv islands meet the rest at ``x`` and ``conv_2_out`` (the Relus between Convs keep one
    island): micro-models price a Reorder there at 0.02 + 0.03 ms, the fp32 run showed two for 0.1 ms in
    all. The scale makes the all-fp32 route cost the fp32 run's own Reorders, and an int8 layer's borders
    keep that scale."""
    from dataclasses import replace

    from engine.measure.predict import context_scale

    graph, profile = fixed
    adapts = [*profile.adapts, AdaptCost("x", "layout", 0.02), AdaptCost("conv_2_out", "layout", 0.03),
              AdaptCost("x", "reorder", 0.04, "fp32"), AdaptCost("conv_2_out", "reorder", 0.06, "fp32")]
    scale = context_scale(graph, profile.layers, adapts)
    assert scale["layout"] == pytest.approx(2.0)
    profile = replace(profile, adapts=adapts, adapt_scale={**profile.adapt_scale, **scale})
    assert predict_ms(profile, graph, {}) == pytest.approx(_RUN + sum(_FP32.values()) + 3 * _RELU + 0.1, abs=1e-12)

"""DPRS choosing execution providers per layer from hand-built tables: known numbers, exact routes."""

from __future__ import annotations

from dataclasses import replace
from itertools import product

import pytest

from engine.ir.graph import build_graph
from engine.measure.predict import predict_ms
from engine.measure.provider_costs import node_routines
from engine.measure.tables import AdaptCost, LayerProfile, Profile, Stats
from engine.optimize import dprs
from engine.optimize.routes import build_problem
from tests import builders

_CPU, _OV = "CPUExecutionProvider", "OpenVINOExecutionProvider"
# conv_0 -> conv_0_relu -> conv_1 -> conv_1_relu -> conv_2 -> conv_2_relu; every tensor 8x8x8 fp32 = 2048 B
_FP32 = {"conv_0": 1.0, "conv_1": 2.0, "conv_2": 3.0}
_INT8 = {"conv_0": 0.5, "conv_1": 1.9, "conv_2": 2.9}
_OV_SEG = {"conv_0": 2.0, "conv_1": 0.6, "conv_2": 0.7}  # each conv with its Relu, on OpenVINO
_RELU, _RUN, _Q = 0.1, 0.05, 0.01
_MB = 1024 * 1024
_PER_MB = 100.0  # ms per MB: 2048 B cost 0.1953125 ms on top of the fixed part
_ROUTINES = ("fp32", "int8", "fp32@OpenVINO")


def _profile(fixed: float = 0.2) -> tuple:
    graph = build_graph(builders.conv_stack(n=3, channels=8, size=8))
    layers = []
    for n in graph.nodes:
        if n.op_type == "Conv":
            layers.append(LayerProfile(n.name, "Conv", True, _FP32[n.name],
                                       {"fp32": _FP32[n.name], "int8": _INT8[n.name], "fp32@OpenVINO": _OV_SEG[n.name]}))
        else:
            layers.append(LayerProfile(n.name, n.op_type, False, _RELU))
    adapts = [AdaptCost("", "run", _RUN, "fp32")]
    adapts += [AdaptCost(t, k, _Q) for n in graph.layers for t in (*n.inputs[:1], *n.outputs) for k in ("quantize", "dequantize")]
    crossings = {f"{_CPU}>{_OV}": [fixed, _PER_MB], f"{_OV}>{_CPU}": [fixed, _PER_MB]}
    return graph, Profile(Stats(6.5, 6.4, 6.6), 1.0, layers, adapts, threads=1, ort_version="test", crossings=crossings)


def test_dprs_puts_the_layers_openvino_runs_fastest_there_and_pays_one_crossing() -> None:
    graph, profile = _profile()
    route = dprs.solve(build_problem(graph, profile, None, routines=_ROUTINES))
    crossing = 0.2 + 2048 / _MB * _PER_MB
    assert route.routines == {"conv_0": "int8", "conv_0_relu": "fp32", "conv_1": "fp32@OpenVINO",
                              "conv_1_relu": "fp32@OpenVINO", "conv_2": "fp32@OpenVINO", "conv_2_relu": "fp32@OpenVINO"}
    # int8 conv_0 pays its Quantize and Dequantize; its Relu stays on CPU; one crossing into OpenVINO
    expected = _RUN + _INT8["conv_0"] + 2 * _Q + _RELU + crossing + _OV_SEG["conv_1"] + _OV_SEG["conv_2"]
    assert route.latency_ms == pytest.approx(expected, abs=1e-12)
    assert route == dprs.brute_force(build_problem(graph, profile, None, routines=_ROUTINES))


def test_a_dear_crossing_keeps_the_route_on_one_provider() -> None:
    graph, profile = _profile(fixed=5.0)
    route = dprs.solve(build_problem(graph, profile, None, routines=_ROUTINES))
    assert route.routines == node_routines(graph, dict.fromkeys(_FP32, "fp32@OpenVINO"))
    assert route.latency_ms == pytest.approx(_RUN + sum(_OV_SEG.values()), abs=1e-12)


def test_without_provider_routines_nothing_changes() -> None:
    graph, profile = _profile()
    problem = build_problem(graph, profile, None, routines=("fp32", "int8"))
    assert all(set(t) <= {"fp32", "int8"} for t in problem.times.values())


def test_dprs_and_predict_ms_price_every_mixed_provider_route_alike() -> None:
    graph, profile = _profile()
    # the Relus cost differently in the int8 run: the op context share rides along on CPU layers
    profile = replace(profile, layers=[replace(lp, context={"int8": 0.25}) if not lp.tunable else lp for lp in profile.layers])
    problem = build_problem(graph, profile, None, routines=_ROUTINES)
    names = [n.name for n in graph.layers]
    for choice in product(_ROUTINES, repeat=len(names)):
        routes = dict(zip(names, choice))
        full = node_routines(graph, routes)
        assert dprs.route_cost(problem, full)[0] == pytest.approx(predict_ms(profile, graph, routes), abs=1e-9), routes


def test_predict_ms_of_a_mixed_route_by_hand() -> None:
    graph, profile = _profile()
    crossing = 0.2 + 2048 / _MB * _PER_MB
    got = predict_ms(profile, graph, {"conv_1": "fp32@OpenVINO"})
    assert got == pytest.approx(_RUN + _FP32["conv_0"] + _RELU + _OV_SEG["conv_1"] + _FP32["conv_2"] + _RELU + 2 * crossing, abs=1e-12)

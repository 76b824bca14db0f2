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

"""SmoothQuant migration: fp32 outputs unchanged, int8 error lower on activations with outlier channels."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from engine.errors import SettingsError
from engine.ir.graph import build_graph
from engine.model.plan import LayerSettings, Plan
from engine.passes.manager import apply_plan
from engine.passes.precision import PrecisionPass, prepare, random_calibration
from engine.passes.smoothquant import SmoothQuantPass
from tests import builders

K, N, TOKENS = 32, 24, 16
OUTLIERS = (3, 17)


def outlier_model(layernorm: bool, seed: int = 0) -> onnx.ModelProto:
    """x -> [LayerNorm with two outlier channels] -> MatMul (and a Gemm, transB, reading the same tensor)."""
    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array((rng.standard_normal((K, N)) / np.sqrt(K)).astype(np.float32), "w"),
             numpy_helper.from_array((rng.standard_normal((N, K)) / np.sqrt(K)).astype(np.float32), "g.w")]
    nodes = []
    x = "x"
    if layernorm:
        gamma = np.ones(K, np.float32)
        gamma[list(OUTLIERS)] = 40.0
        inits += [numpy_helper.from_array(gamma, "ln.g"), numpy_helper.from_array(np.full(K, 0.1, np.float32), "ln.b")]
        nodes.append(helper.make_node("LayerNormalization", ["x", "ln.g", "ln.b"], ["h"], name="ln", axis=-1))
        x = "h"
    nodes += [helper.make_node("MatMul", [x, "w"], ["y"], name="mm"),
              helper.make_node("Gemm", [x, "g.w"], ["z"], name="gemm", transB=1)]
    graph = helper.make_graph(nodes, "outliers", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [TOKENS, K])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [TOKENS, N]),
                               helper.make_tensor_value_info("z", TensorProto.FLOAT, [TOKENS, N])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _samples(count: int, seed: int) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        x = rng.standard_normal((TOKENS, K)).astype(np.float32)
        x[:, list(OUTLIERS)] *= 40.0
        out.append({"x": x})
    return out


def _outputs(model: onnx.ModelProto, samples: list[dict[str, np.ndarray]]) -> list[list[np.ndarray]]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return [session.run(None, s) for s in samples]


def _error(a: list[list[np.ndarray]], b: list[list[np.ndarray]]) -> float:
    return float(np.mean([np.mean((x - y) ** 2) / np.mean(y ** 2) for xs, ys in zip(a, b) for x, y in zip(xs, ys)]))


@pytest.mark.parametrize("layernorm", [True, False])
def test_fp32_unchanged_and_int8_error_lower(layernorm: bool) -> None:
    model = prepare(outlier_model(layernorm))
    calib, test = _samples(8, 1), _samples(8, 2)
    smooth = SmoothQuantPass({"mm": 0.5, "gemm": 0.5}, calib)(model)
    assert smooth.modified
    assert any(("1 folded" if layernorm else "1 Mul(s) inserted") in n for n in smooth.notes)
    ref = _outputs(model, test)
    np.testing.assert_allclose(np.concatenate([o for outs in _outputs(smooth.model, test) for o in outs]),
                               np.concatenate([o for outs in ref for o in outs]), rtol=1e-4, atol=1e-4)
    inits = {t.name: numpy_helper.to_array(t) for t in smooth.model.graph.initializer}
    before = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    assert not np.allclose(inits["w"], before["w"])  # the weights took the outliers
    plain = PrecisionPass(int8=["mm", "gemm"], calibration=calib)(model).model
    smoothed = PrecisionPass(int8=["mm", "gemm"], calibration=calib)(smooth.model).model
    err_plain, err_smooth = _error(_outputs(plain, test), ref), _error(_outputs(smoothed, test), ref)
    assert err_smooth < 0.5 * err_plain, (err_smooth, err_plain)


def test_plan_field_applies_and_round_trips() -> None:
    graph = build_graph(outlier_model(True))
    calib = _samples(6, 3)
    layers = {"mm": LayerSettings("int8", smoothquant=0.5), "gemm": LayerSettings("int8", smoothquant=0.5)}
    plan = Plan.from_json(Plan(layers=layers).to_json())
    assert plan.layers["mm"].smoothquant == 0.5
    result = apply_plan(graph, plan, calib)
    assert any("smoothquant of 2 layer(s)" in n for n in result.notes)
    plain = apply_plan(graph, Plan(layers={n: LayerSettings("int8") for n in layers}), calib)
    ref = _outputs(graph.model, _samples(6, 4))
    assert _error(_outputs(result.model, _samples(6, 4)), ref) < _error(_outputs(plain.model, _samples(6, 4)), ref)
    with pytest.raises(SettingsError, match="smoothquant 2"):
        LayerSettings("int8", smoothquant=2)


def test_layers_without_a_constant_weight_are_left_alone() -> None:
    model = prepare(builders.transformer_block())
    result = SmoothQuantPass({"scores": 0.5}, random_calibration(model, 2))(model)  # MatMul of two activations
    assert not result.modified and "no MatMul/Gemm" in result.notes[0]

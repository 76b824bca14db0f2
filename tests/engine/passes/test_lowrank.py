"""Tests for the low-rank pass: exact at full rank, cheaper below break-even, refusals."""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from engine.errors import SettingsError
from engine.ir.graph import build_graph
from engine.passes.lowrank import (
    LowRankPass,
    break_even_rank,
    energy_curve,
    lowrank_names,
    lowrank_problem,
)
from tests import builders


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def _left_matmul() -> onnx.ModelProto:
    w = numpy_helper.from_array(np.random.default_rng(1).standard_normal((12, 8)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["w", "x"], ["y"], name="left")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [8, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [12, 5])], initializer=[w],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


CASES = [
    (builders.gemm_mlp(), "fc0", (4, 64), "Gemm"),
    (builders.conv_stack(), "conv_1", (1, 16, 16, 16), "Conv"),
    (builders.transformer_block(), "mlp_up", (1, 16, 32), "MatMul"),
    (_left_matmul(), "left", (8, 5), "MatMul"),
]


@pytest.mark.parametrize("model, layer, shape, op", CASES)
def test_full_rank_is_exact(model: onnx.ModelProto, layer: str, shape: tuple[int, ...], op: str) -> None:
    graph = build_graph(model)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    full = len(energy_curve(graph, layer))
    result = LowRankPass({layer: full}, check_break_even=False)(graph.model)
    onnx.checker.check_model(result.model, full_check=True)
    assert result.modified
    np.testing.assert_allclose(_run(result.model, x), _run(graph.model, x), atol=1e-4, rtol=1e-4)
    first, second = lowrank_names(layer)
    names = {n.name: n.op_type for n in result.model.graph.node}
    assert names[second] == op and first in names
    assert len(result.model.graph.node) == len(graph.model.graph.node) + 1


@pytest.mark.parametrize("model, layer, shape, op", CASES)
def test_below_break_even_lowers_params_and_macs(model, layer, shape, op) -> None:
    graph = build_graph(model)
    rank = break_even_rank(graph, layer) - 1
    assert lowrank_problem(graph, layer, rank) is None
    result = LowRankPass({layer: rank})(graph.model)
    after = build_graph(result.model)
    assert after.total_params < graph.total_params
    assert after.total_macs < graph.total_macs
    _run(result.model, np.zeros(shape, np.float32))
    assert "keeps" in result.notes[0]


def test_break_even_and_energy_curve() -> None:
    graph = build_graph(builders.gemm_mlp((64, 128, 10)))
    curve = energy_curve(graph, "fc0")  # weight 128 x 64
    assert curve.shape == (64,) and np.all(np.diff(curve) >= -1e-12) and curve[-1] == pytest.approx(1.0)
    assert break_even_rank(graph, "fc0") == 43  # ceil(128*64 / 192)
    with pytest.raises(SettingsError, match="break-even rank 43"):
        LowRankPass({"fc0": 43})(graph.model)
    assert "break-even rank 43" in lowrank_problem(graph, "fc0", 43)


def test_refusals_and_input_unchanged() -> None:
    graph = build_graph(builders.concat_net())
    assert "depthwise" in lowrank_problem(graph, "depthwise", 1)
    with pytest.raises(SettingsError, match="depthwise"):
        LowRankPass({"depthwise": 1}, check_break_even=False)(graph.model)
    with pytest.raises(SettingsError, match="no node named"):
        LowRankPass({"nope": 1})(graph.model)
    before = graph.model.SerializeToString()
    LowRankPass({"stem": 2})(graph.model)
    assert graph.model.SerializeToString() == before


def test_empty_pass_is_not_modified() -> None:
    model = builders.conv_stack()
    result = LowRankPass({})(model)
    assert result.model is model and not result.modified
    assert Counter(n.op_type for n in result.model.graph.node)["Conv"] == 4


def test_whitened_svd_keeps_the_directions_the_data_uses() -> None:
    # Inputs whose features differ in scale by 100x: the plain SVD spends its rank on weight
    # directions the data barely excites; the whitened one minimises the output error instead.
    from engine.passes.lowrank import LowRankPass
    from tests import builders

    model = builders.gemm_mlp((32, 32, 8), batch=64)
    rng = np.random.default_rng(0)
    scales = np.logspace(0, -2, 32).astype(np.float32)
    feeds = [{"x": (rng.standard_normal((64, 32)) * scales).astype(np.float32)} for _ in range(4)]
    x = (rng.standard_normal((64, 32)) * scales).astype(np.float32)

    def run(m):  # type: ignore[no-untyped-def]
        return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]

    ref = run(model)
    plain = LowRankPass({"fc0": 4}, check_break_even=False)(model)
    white = LowRankPass({"fc0": 4}, check_break_even=False, calibration=feeds)(model)
    assert "whitened SVD" in white.notes[0]
    err_plain, err_white = (float(np.mean((run(r.model) - ref) ** 2)) for r in (plain, white))
    assert err_white < 0.5 * err_plain
    full = LowRankPass({"fc0": 32}, check_break_even=False, calibration=feeds)(model)
    np.testing.assert_allclose(run(full.model), ref, rtol=1e-3, atol=1e-4)

"""Tests for the prune pass: unstructured sparsity, structured channel removal and its refusals."""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from engine.errors import SettingsError
from engine.ir.graph import build_graph, load_model
from engine.model.plan import PruneSettings
from engine.passes.prune import PrunePass, can_prune
from tests import builders

STRUCTURED = PruneSettings(0.5, "structured")


def _run(model: onnx.ModelProto, x: np.ndarray, name: str = "x") -> np.ndarray:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {name: x})[0]


def _weight(model: onnx.ModelProto, name: str) -> np.ndarray:
    return numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == name))


def test_unstructured_zeroes_the_smallest_weights() -> None:
    model = builders.conv_stack()
    result = PrunePass({"conv_1": PruneSettings(0.5)})(model)
    w_before, w_after = _weight(model, "conv_1.w"), _weight(result.model, "conv_1.w")
    assert w_after.shape == w_before.shape and result.modified
    assert np.mean(w_after == 0) == pytest.approx(0.5, abs=0.01)
    kept = w_after != 0
    assert np.abs(w_before[kept]).min() >= np.abs(w_before[~kept]).max()
    assert any("saves no time" in n for n in result.notes)
    assert np.array_equal(_weight(model, "conv_1.w"), w_before)  # input unchanged


def test_ratio_zero_is_exact_and_unmodified() -> None:
    model = builders.conv_stack()
    x = np.random.default_rng(0).standard_normal((1, 16, 16, 16)).astype(np.float32)
    result = PrunePass({"conv_1": PruneSettings(0.0, "structured")})(model)
    assert not result.modified
    assert np.array_equal(_run(result.model, x), _run(model, x))


def test_structured_removes_zero_channels_exactly() -> None:
    # Zero the 8 weakest output channels of conv_1 first: removing them must not change the output.
    model = builders.conv_stack()
    w = _weight(model, "conv_1.w").copy()
    weak = np.argsort(np.abs(w).sum(axis=(1, 2, 3)))[:8]
    w[weak] = 0
    for t in model.graph.initializer:
        if t.name in ("conv_1.w", "conv_1.b"):
            arr = w if t.name == "conv_1.w" else numpy_helper.to_array(t).copy()
            if t.name == "conv_1.b":
                arr[weak] = 0
            t.CopyFrom(numpy_helper.from_array(arr, t.name))
    graph = build_graph(model)
    result = PrunePass({"conv_1": STRUCTURED})(graph.model)
    onnx.checker.check_model(result.model, full_check=True)
    assert _weight(result.model, "conv_1.w").shape == (8, 16, 3, 3)
    assert _weight(result.model, "conv_2.w").shape == (16, 8, 3, 3)
    x = np.random.default_rng(0).standard_normal((1, 16, 16, 16)).astype(np.float32)
    np.testing.assert_allclose(_run(result.model, x), _run(graph.model, x), atol=1e-5)
    assert Counter(n.op_type for n in result.model.graph.node) == Counter(n.op_type for n in graph.model.graph.node)
    assert build_graph(result.model).total_macs < graph.total_macs


@pytest.mark.parametrize(
    "model, layer, shrinks",
    [
        (builders.residual_net(), "stem", {"stem.w": 8, "block0_b.w": 8, "block1_b.w": 8}),
        (builders.concat_net(), "left", {"left.w": 4, "depthwise.w": 12}),
        (builders.transformer_block(), "mlp_up", {"mlp_up.w": 64, "mlp_up.b": 64}),
    ],
)
def test_tied_channels_are_pruned_as_a_group(model: onnx.ModelProto, layer: str, shrinks: dict[str, int]) -> None:
    graph = build_graph(model)
    assert can_prune(graph, layer) is None
    result = PrunePass({layer: STRUCTURED})(graph.model)
    onnx.checker.check_model(result.model, full_check=True)
    for name, size in shrinks.items():
        w = _weight(result.model, name)
        assert w.shape[-1 if name.startswith("mlp") else 0] == size
    assert build_graph(result.model).total_macs < graph.total_macs


def test_graph_output_is_refused() -> None:
    graph = build_graph(builders.conv_stack())
    assert "graph output" in (can_prune(graph, "conv_3") or "")
    with pytest.raises(SettingsError, match="refused"):
        PrunePass({"conv_3": STRUCTURED})(graph.model)


def test_prunes_through_depthwise_conv() -> None:
    # stem -> Relu -> depthwise (16 groups) -> Relu -> 1x1 conv: the depthwise conv is pruned along.
    b = builders._Builder(0)
    x = b.conv("x", 3, 16, name="stem")
    x = b.conv(x, 16, 16, name="dw", group=16)
    out = b.conv(x, 16, 8, k=1, name="project", relu=False)
    graph = build_graph(builders.make_model(b, [1, 3, 8, 8], out, [1, 8, 8, 8]))
    assert can_prune(graph, "stem") is None
    result = PrunePass({"stem": PruneSettings(0.25, "structured", "l2")})(graph.model)
    onnx.checker.check_model(result.model, full_check=True)
    assert _weight(result.model, "dw.w").shape == (12, 1, 3, 3)
    assert _weight(result.model, "project.w").shape == (8, 12, 1, 1)
    dw = next(n for n in result.model.graph.node if n.name == "dw")
    assert onnx.helper.get_attribute_value(next(a for a in dw.attribute if a.name == "group")) == 12
    assert _run(result.model, np.ones((1, 3, 8, 8), np.float32)).shape == (1, 8, 8, 8)


def test_prunes_gemm_and_conv_into_flatten_on_digits(digits_model) -> None:
    graph = load_model(digits_model, {"input": (2, 1, 8, 8)})
    settings = {"/conv3/Conv": STRUCTURED, "/fc1/Gemm": STRUCTURED, "/conv1/Conv": STRUCTURED}
    result = PrunePass(settings)(graph.model)
    onnx.checker.check_model(result.model, full_check=True)
    assert _weight(result.model, "conv3.weight").shape[0] == 32
    assert _weight(result.model, "fc1.weight").shape == (32, 128)  # 32 channels x 2x2 positions in
    assert _weight(result.model, "fc2.weight").shape == (10, 32)
    after = build_graph(result.model, {"input": (2, 1, 8, 8)})
    assert after.total_macs < graph.total_macs and after.total_params < graph.total_params
    x = np.random.default_rng(0).standard_normal((2, 1, 8, 8)).astype(np.float32)
    assert _run(result.model, x, "input").shape == (2, 10)


def test_batchnorm_parameters_follow() -> None:
    b = builders._Builder(0)
    y = b.conv("x", 3, 8, name="c1", relu=False)
    for suffix, scale in (("s", 1.0), ("b", 0.1), ("m", 0.1)):
        b.weight(f"bn.{suffix}", (8,), scale)
    b.inits.append(numpy_helper.from_array(np.ones(8, np.float32), "bn.v"))
    y = b.node("BatchNormalization", [y, "bn.s", "bn.b", "bn.m", "bn.v"], name="bn")
    y = b.node("Relu", [y], name="r")
    out = b.conv(y, 8, 4, k=1, name="c2", relu=False)
    graph = build_graph(builders.make_model(b, [1, 3, 6, 6], out, [1, 4, 6, 6]))
    result = PrunePass({"c1": STRUCTURED})(graph.model)
    onnx.checker.check_model(result.model, full_check=True)
    assert all(_weight(result.model, f"bn.{s}").shape == (4,) for s in "sbmv")
    assert _run(result.model, np.ones((1, 3, 6, 6), np.float32)).shape == (1, 4, 6, 6)

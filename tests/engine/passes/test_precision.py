"""Tests for the precision pass: per-layer int8 / int8_dynamic / fp16 and the whole-model baseline."""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from engine.errors import SettingsError
from engine.ir.graph import build_graph, load_model
from engine.passes import precision
from engine.passes.precision import (
    CalibrationCache,
    PrecisionPass,
    quantize_whole_model,
    random_calibration,
    unconverted,
)
from tests import builders


def _run(model: onnx.ModelProto, x: np.ndarray, name: str = "x") -> np.ndarray:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {name: x})[0]


def _ops(model: onnx.ModelProto) -> Counter:
    return Counter(n.op_type for n in model.graph.node)


def _reads_dq_weight(model: onnx.ModelProto, layer: str) -> bool:
    producers = {o: n.op_type for n in model.graph.node for o in n.output}
    node = next(n for n in model.graph.node if n.name == layer)
    return producers.get(node.input[1]) == "DequantizeLinear" and producers.get(node.input[0]) == "DequantizeLinear"


def test_int8_one_layer_quantizes_only_that_layer() -> None:
    graph = build_graph(builders.conv_stack())
    calib = random_calibration(graph.model, 8)
    before = graph.model.SerializeToString()
    result = PrecisionPass(int8=["conv_1"], calibration=calib)(graph.model)
    onnx.checker.check_model(result.model, full_check=True)
    assert graph.model.SerializeToString() == before
    ops = _ops(result.model)
    # input activation + output activation Q/DQ pairs, weight and bias DQ
    assert ops["QuantizeLinear"] == 2 and ops["DequantizeLinear"] == 4 and ops["Conv"] == 4
    assert _reads_dq_weight(result.model, "conv_1")
    assert not any(_reads_dq_weight(result.model, n) for n in ("conv_0", "conv_2", "conv_3"))
    assert {n.name for n in graph.model.graph.node} <= {n.name for n in result.model.graph.node}
    x = calib[0]["x"]
    ref, out = _run(graph.model, x), _run(result.model, x)
    assert np.abs(out - ref).max() < 0.1 * np.abs(ref).max()
    assert result.modified and not result.notes


def test_int8_without_calibration_notes_random_inputs() -> None:
    graph = build_graph(builders.transformer_block())
    result = PrecisionPass(int8=["q", "mlp_up"])(graph.model)
    assert any("random inputs" in n for n in result.notes)
    assert _reads_dq_weight(result.model, "q") and _reads_dq_weight(result.model, "mlp_up")
    assert not _reads_dq_weight(result.model, "k")
    _run(result.model, np.zeros((1, 16, 32), np.float32))


def test_old_opset_is_converted_first() -> None:
    b = builders._Builder(0)
    out = b.conv(b.conv("x", 3, 8, name="a"), 8, 8, name="b")
    graph = build_graph(builders.make_model(b, [1, 3, 8, 8], out, [1, 8, 8, 8], opset=12))
    result = PrecisionPass(int8=["b"])(graph.model)
    assert any("opset 12 -> 13" in n for n in result.notes)
    assert next(i.version for i in result.model.opset_import if i.domain in ("", "ai.onnx")) >= 13
    assert _reads_dq_weight(result.model, "b")
    _run(result.model, np.ones((1, 3, 8, 8), np.float32))


def test_int8_dynamic_gemm_keeps_other_gemms() -> None:
    graph = build_graph(builders.gemm_mlp((64, 128, 32, 10)))
    result = PrecisionPass(int8_dynamic=["fc1"])(graph.model)
    onnx.checker.check_model(result.model, full_check=True)
    ops = _ops(result.model)
    assert ops["MatMulInteger"] == 1 and ops["Gemm"] == 2
    names = {n.name: n.op_type for n in result.model.graph.node}
    assert names["fc0"] == "Gemm" and names["fc2"] == "Gemm" and names["fc1"] == "MatMulInteger"
    x = np.random.default_rng(0).standard_normal((4, 64)).astype(np.float32)
    ref, out = _run(graph.model, x), _run(result.model, x)
    assert np.abs(out - ref).max() < 0.1 * np.abs(ref).max()


def test_fp16_casts_only_at_the_borders() -> None:
    graph = build_graph(builders.conv_stack())
    x = np.random.default_rng(0).standard_normal((1, 16, 16, 16)).astype(np.float32)
    result = PrecisionPass(fp16=["conv_1", "conv_2"])(graph.model)
    onnx.checker.check_model(result.model, full_check=True)
    # conv_1 and conv_2 are separated by a Relu (fp32), so each has its own Cast in and out
    assert _ops(result.model)["Cast"] == 4
    assert result.model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    w = {t.name: t.data_type for t in result.model.graph.initializer}
    assert w["conv_1.w_fp16"] == onnx.TensorProto.FLOAT16 and w["conv_0.w"] == onnx.TensorProto.FLOAT
    np.testing.assert_allclose(_run(result.model, x), _run(graph.model, x), atol=5e-2)


def test_adjacent_fp16_layers_share_tensors_without_cast_pairs() -> None:
    graph = build_graph(builders.gemm_mlp((16, 16, 16), batch=2))  # fc0 -> Relu -> fc1
    result = PrecisionPass(fp16=["fc0", "fc0_relu", "fc1"])(graph.model)
    assert _ops(result.model)["Cast"] == 2
    _run(result.model, np.ones((2, 16), np.float32))


def test_int8_dynamic_quantizes_a_transformer_matmul() -> None:
    graph = build_graph(builders.transformer_block())
    result = PrecisionPass(int8_dynamic=["v"])(graph.model)
    assert _ops(result.model)["MatMulInteger"] == 1
    assert {n.name for n in graph.model.graph.node} <= {n.name for n in result.model.graph.node}


def test_two_precisions_for_one_layer_are_refused() -> None:
    with pytest.raises(SettingsError, match="two precisions"):
        PrecisionPass(int8=["a"], fp16=["a"])
    with pytest.raises(SettingsError, match="no node named"):
        PrecisionPass(fp16=["nope"])(builders.conv_stack())


def test_empty_pass_returns_the_model() -> None:
    model = builders.conv_stack()
    result = PrecisionPass()(model)
    assert result.model is model and not result.modified


def test_whole_model_int8_quantizes_every_layer(digits_model, digits_eval) -> None:
    graph = load_model(digits_model, {"input": (1, 1, 8, 8)})
    data = np.load(digits_eval)
    calib = [{"input": data["input:input"][i : i + 1]} for i in range(16)]
    model = quantize_whole_model(graph.model, calib)
    onnx.checker.check_model(model, full_check=True)
    assert all(_reads_dq_weight(model, n.name) for n in graph.layers)
    x, labels = data["input:input"][:100], data["labels"][:100]
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    assert (session.run(None, {"input": x[:1]})[0].shape) == (1, 10)
    acc = np.mean([session.run(None, {"input": x[i : i + 1]})[0].argmax() == labels[i] for i in range(100)])
    assert acc > 0.9


def _scales(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer if t.name.endswith("_scale")}


def test_calibration_cache_calibrates_once_per_model_with_the_same_ranges(monkeypatch: pytest.MonkeyPatch) -> None:
    graph = build_graph(builders.conv_stack())
    calib = random_calibration(graph.model, 4)
    plain = {layer: PrecisionPass(int8=[layer], calibration=calib)(graph.model).model for layer in ("conv_1", "conv_3")}
    readers = []
    real_collect = precision.collect_ranges
    monkeypatch.setattr(precision, "collect_ranges", lambda *a, **k: readers.append(1) or real_collect(*a, **k))
    cache = CalibrationCache(calib)
    for layer in ("conv_1", "conv_3"):  # the second layer's ranges come from the first run's calibration
        cached = PrecisionPass(int8=[layer], calibration=cache)(graph.model).model
        assert _reads_dq_weight(cached, layer)
        scales = _scales(cached)
        assert scales.keys() == _scales(plain[layer]).keys() and scales
        for name, value in _scales(plain[layer]).items():
            np.testing.assert_array_equal(scales[name], value)
    assert len(readers) == 1
    changed = onnx.ModelProto()
    changed.CopyFrom(graph.model)  # new weights, same names (as after pruning): its ranges must not be reused
    w = changed.graph.initializer[0]
    w.CopyFrom(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(w) * 3, w.name))
    PrecisionPass(int8=["conv_1"], calibration=cache)(changed)
    quantize_whole_model(graph.model, cache)  # the first model again, all layers: its ranges are kept
    assert len(readers) == 2


def test_unconverted_names_layers_left_in_fp32() -> None:
    graph = build_graph(builders.transformer_block())
    int8 = PrecisionPass(int8=["q", "k"], calibration=random_calibration(graph.model, 2))(graph.model).model
    assert unconverted(int8, ["q", "k", "v"], "int8") == ["v"]
    dynamic = PrecisionPass(int8_dynamic=["v"])(graph.model).model
    assert unconverted(dynamic, ["q", "v"], "int8_dynamic") == ["q"]
    half = PrecisionPass(fp16=["proj"])(graph.model).model
    assert unconverted(half, ["proj", "mlp_up"], "fp16") == ["mlp_up"]
    with pytest.raises(SettingsError, match="int4"):
        unconverted(half, ["proj"], "int4")

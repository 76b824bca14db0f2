"""LayerLab's own activation pass gives the ranges ORT's calibrators give, and the same quantized model."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx
import pytest

from engine.errors import SettingsError
from engine.passes.calibration import calibration_tensors, collect_ranges
from engine.passes.precision import _static_int8, prepare, random_calibration
from tests import builders


def _reader(samples: list[dict[str, np.ndarray]]):  # type: ignore[no-untyped-def]
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(samples)

        def get_next(self):  # type: ignore[no-untyped-def]
            return next(self.it, None)

    return Reader()


def _ort_ranges(model: onnx.ModelProto, samples: list[dict[str, np.ndarray]], method: str, **extra: object) -> dict:
    """Ranges from ORT's own calibrator (augmented graph), as quantize_static computes them."""
    from onnxruntime.quantization import CalibrationMethod
    from onnxruntime.quantization.calibrate import create_calibrator

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.onnx"
        onnx.save(model, path)
        calibrator = create_calibrator(path, None, augmented_model_path=str(Path(tmp) / "aug.onnx"),
                                       calibrate_method=getattr(CalibrationMethod, method), extra_options=extra)
        calibrator.collect_data(_reader(samples))
        data = calibrator.compute_data()
    return {name: td.range_value for name, td in data.items()}


def _ort_int8(model: onnx.ModelProto, samples: list[dict[str, np.ndarray]]) -> onnx.ModelProto:
    """Today's path before this change: quantize_static calibrating with its data reader."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.onnx", Path(tmp) / "out.onnx"
        onnx.save(model, src)
        quantize_static(str(src), str(dst), _reader(samples), quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, per_channel=True)
        return onnx.load(str(dst))


MODELS = {"conv_stack": builders.conv_stack, "residual": builders.residual_net, "concat": builders.concat_net,
          "transformer": builders.transformer_block}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_minmax_ranges_equal_ort_calibrator_bit_for_bit(name: str) -> None:
    model = prepare(MODELS[name]())
    samples = random_calibration(model, 5, seed=3)
    ours = collect_ranges(onnx.shape_inference.infer_shapes(model), samples).ranges["minmax"]
    theirs = _ort_ranges(model, samples, "MinMax")
    assert ours.keys() == theirs.keys() and ours
    for t, (lo, hi) in theirs.items():
        np.testing.assert_array_equal(ours[t][0], lo)
        np.testing.assert_array_equal(ours[t][1], hi)
        assert ours[t][0].dtype == lo.dtype and ours[t][0].shape == lo.shape


@pytest.mark.parametrize("name", ["conv_stack", "transformer"])
def test_quantized_model_equals_ort_minmax_path(name: str) -> None:
    model = prepare(MODELS[name]())
    samples = random_calibration(model, 4, seed=1)
    ours, theirs = _static_int8(model, None, samples), _ort_int8(model, samples)
    assert [n.op_type for n in ours.graph.node] == [n.op_type for n in theirs.graph.node]
    ours_inits = {t.name: onnx.numpy_helper.to_array(t) for t in ours.graph.initializer}
    theirs_inits = {t.name: onnx.numpy_helper.to_array(t) for t in theirs.graph.initializer}
    assert ours_inits.keys() == theirs_inits.keys()
    for k, v in theirs_inits.items():
        np.testing.assert_array_equal(ours_inits[k], v)


def test_percentile_and_entropy_equal_ort_histogram_calibrators() -> None:
    model = prepare(builders.conv_stack())
    samples = random_calibration(model, 3, seed=2)
    ours = collect_ranges(onnx.shape_inference.infer_shapes(model), samples, ("percentile99.99", "entropy")).ranges
    for method, ort_method, extra in (("percentile99.99", "Percentile", {"symmetric": False, "percentile": 99.99}),
                                      ("entropy", "Entropy", {})):
        theirs = _ort_ranges(model, samples, ort_method, **extra)
        assert ours[method].keys() == theirs.keys()
        for t, (lo, hi) in theirs.items():
            np.testing.assert_allclose([ours[method][t][0][0], ours[method][t][1][0]], [lo, hi], rtol=1e-6)
    # Post-ReLU tensors: a percentile clips the top, never beyond the MinMax range.
    minmax = collect_ranges(onnx.shape_inference.infer_shapes(model), samples).ranges["minmax"]
    relu = "conv_1_relu_out"
    assert ours["percentile99.99"][relu][1][0] < minmax[relu][1][0]
    assert ours["percentile99.99"][relu][0][0] >= minmax[relu][0][0]


def test_chunks_give_the_same_ranges_as_one_pass() -> None:
    model = onnx.shape_inference.infer_shapes(prepare(builders.residual_net()))
    samples = random_calibration(model, 3)
    whole = collect_ranges(model, samples, ("minmax", "percentile99.9")).ranges
    chunked = collect_ranges(model, samples, ("minmax", "percentile99.9"), max_bytes=1).ranges  # one tensor per chunk
    for method in whole:
        assert whole[method].keys() == chunked[method].keys()
        for t in whole[method]:
            np.testing.assert_array_equal(whole[method][t], chunked[method][t])
    assert len(calibration_tensors(model)) == len(whole["minmax"])


def test_unknown_method_is_one_clear_error() -> None:
    model = prepare(builders.conv_stack())
    with pytest.raises(SettingsError, match="calibration method 'kl'"):
        collect_ranges(model, random_calibration(model, 1), ("kl",))


def test_a_layer_calibrated_by_percentile_reads_its_input_through_the_percentile_range() -> None:
    from engine.passes.precision import PrecisionPass

    model = builders.conv_stack()
    calib = random_calibration(model, 3)
    ranges = collect_ranges(onnx.shape_inference.infer_shapes(prepare(model)), calib, ("minmax", "percentile99.9")).ranges
    plain = PrecisionPass(int8=["conv_1", "conv_2"], calibration=calib)(model).model
    mixed = PrecisionPass(int8=["conv_1", "conv_2"], calibration=calib, int8_calibration={"conv_2": "percentile99.9"})(model).model

    def scale(m: onnx.ModelProto, tensor: str) -> float:
        return float(onnx.numpy_helper.to_array(next(t for t in m.graph.initializer if t.name == f"{tensor}_scale")))

    x2 = "conv_1_relu_out"  # conv_2's input
    lo, hi = ranges["percentile99.9"][x2]
    assert scale(mixed, x2) == pytest.approx(float(hi[0] - min(lo[0], 0)) / 255, rel=1e-6)
    lo, hi = ranges["minmax"][x2]
    assert scale(plain, x2) == pytest.approx(float(hi[0] - min(lo[0], 0)) / 255, rel=1e-6)
    assert scale(mixed, x2) < scale(plain, x2)
    assert scale(mixed, "conv_0_relu_out") == scale(plain, "conv_0_relu_out")  # conv_1's input: MinMax in both
    with pytest.raises(SettingsError, match="calibration method 'kl'"):
        PrecisionPass(int8=["conv_1"], int8_calibration={"conv_1": "kl"})


def test_samples_of_different_sizes_calibrate() -> None:
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="r")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, "w"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, "w"])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    samples = [{"x": np.linspace(-1, 1, 5, dtype=np.float32)[None]}, {"x": np.linspace(-3, 2, 9, dtype=np.float32)[None]}]
    ranges = collect_ranges(model, samples, ("minmax", "percentile99.9")).ranges
    np.testing.assert_array_equal(ranges["minmax"]["y"][1], [2.0])
    assert ranges["percentile99.9"]["y"][1][0] <= 2.0 and ranges["minmax"]["x"][0][0] == -3.0

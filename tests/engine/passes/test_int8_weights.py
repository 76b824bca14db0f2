"""Per-channel weight quantization in numpy gives what ORT's QDQ quantizer gives, bit for bit."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from engine.passes.calibration import collect_ranges
from engine.passes.int8_segments import _quantize
from engine.passes.int8_weights import per_channel_params, quantize_per_channel
from engine.passes.precision import prepare, random_calibration
from tests import builders


@pytest.mark.parametrize("build", [builders.residual_net, builders.concat_net, builders.transformer_block,
                                   builders.gemm_mlp, builders.conv_stack, builders.dynamic_width_cnn])
def test_fast_quantizer_writes_the_same_model_as_ort(build) -> None:  # type: ignore[no-untyped-def]
    model = onnx.shape_inference.infer_shapes(prepare(build()))
    ranges = collect_ranges(model, random_calibration(model, 3)).pick()
    nodes = [n.name for n in model.graph.node]
    fast, slow = _quantize(model, nodes, ranges, fast=True), _quantize(model, nodes, ranges, fast=False)
    assert any(len(t.dims) > 1 and t.data_type == onnx.TensorProto.INT8 for t in slow.graph.initializer)
    assert fast.SerializeToString() == slow.SerializeToString()


def test_edge_channels_match_ort() -> None:
    from onnxruntime.quantization.quant_utils import compute_data_quant_params, quantize_nparray

    rng = np.random.default_rng(3)
    w = rng.standard_normal((6, 4, 3, 3)).astype(np.float32)
    w[1] = 0.0  # all-zero channel: scale 1, zero point 0
    w[2] = np.abs(w[2])  # only positive values
    w[3] *= 1e-30  # tiny range
    w[4] *= 1e6
    for qtype, symmetric in ((onnx.TensorProto.INT8, True), (onnx.TensorProto.UINT8, False), (onnx.TensorProto.INT8, False)):
        for axis in (0, 1):
            zp, scale = per_channel_params(w, axis, qtype, symmetric, False, None)
            for i in range(w.shape[axis]):
                z, s = compute_data_quant_params(w.take(i, axis).ravel(), qtype, symmetric, reduce_range=False)
                assert zp[i] == z and zp.dtype == z.dtype and scale[i].tobytes() == s.tobytes(), (qtype, symmetric, axis, i)
            q = numpy_helper.to_array(quantize_per_channel(numpy_helper.from_array(w, "w"), qtype, zp, scale, axis, "wq"))
            for i in range(w.shape[axis]):
                expected = quantize_nparray(qtype, w.take(i, axis).ravel(), scale[i], zp[i])
                assert q.take(i, axis).ravel().tobytes() == expected.tobytes()

"""ORT's QDQ quantizer with its per-channel weight quantization done in numpy, whole tensors at a time.

``QDQQuantizer`` computes a per-channel weight's scale and zero point one channel at a time
(``compute_data_quant_params`` on ``take(i, axis)``) and quantizes it the same way
(``quantize_onnx_initializer``): a Python loop per channel, which dominates int8 of huge graphs.
``FastQDQQuantizer`` computes the same numbers for all channels at once, with the same dtypes and the
same float operations in the same order (so the results are equal bit for bit, which the tests check
against ORT), and leaves everything else (activations, per-tensor weights, overrides, 4-bit, blocks)
to ORT.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

__all__ = ["FastQDQQuantizer", "per_channel_params", "quantize_per_channel"]

logger = logging.getLogger(__name__)

_INT8 = (onnx.TensorProto.INT8, onnx.TensorProto.UINT8)


def per_channel_params(data: np.ndarray, axis: int, quant_type: int, symmetric: bool, reduce_range: bool,
                       min_real_range: float | None) -> tuple[np.ndarray, np.ndarray] | None:
    """(zero points, scales) per channel as ORT's ``compute_data_quant_params`` gives them channel by
    channel; None where this does not apply (empty channels, other types)."""
    from onnxruntime.quantization.quant_utils import get_qmin_qmax_for_qType

    if quant_type not in _INT8 or data.dtype != np.float32 or data.size == 0:
        return None
    moved = np.moveaxis(data, axis, 0).reshape(data.shape[axis], -1)
    qmin, qmax = get_qmin_qmax_for_qType(quant_type, reduce_range, symmetric=symmetric)
    rmin = np.minimum(moved.min(axis=1), np.array(0, dtype=data.dtype))
    rmax = np.maximum(moved.max(axis=1), np.array(0, dtype=data.dtype))
    if min_real_range is not None:
        rmax = np.maximum(rmax, rmin + np.asarray(min_real_range, dtype=rmin.dtype))
    if symmetric:
        absmax = np.maximum(np.abs(rmin), np.abs(rmax))
        rmin, rmax = -absmax, +absmax
    scale = (rmax.astype(np.float64) - rmin.astype(np.float64)) / (np.float64(qmax) - np.float64(qmin))
    stored = scale.astype(rmax.dtype)
    if symmetric:
        zero_point = np.full(scale.shape, np.round((qmin + qmax) / np.array(2.0, dtype=np.float64)), dtype=qmin.dtype)
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            zero_point = np.round(qmin - rmin / scale).astype(qmin.dtype)
    tiny = scale < np.finfo(rmax.dtype).tiny
    stored[tiny] = 1.0
    zero_point[tiny] = 0
    return zero_point, stored


def quantize_per_channel(weight: onnx.TensorProto, quant_type: int, zero_point: np.ndarray, scale: np.ndarray,
                         axis: int, name: str) -> onnx.TensorProto | None:
    """ORT's per-channel ``quantize_onnx_initializer`` (``quantize_nparray`` per channel) on the whole tensor."""
    from onnxruntime.quantization.quant_utils import get_qmin_qmax_for_qType

    data = numpy_helper.to_array(weight)
    if quant_type not in _INT8 or data.ndim == 0 or np.ndim(scale) != 1:
        return None
    shape = [1] * data.ndim
    shape[axis] = -1
    qmin, qmax = get_qmin_qmax_for_qType(quant_type, reduce_range=False, symmetric=False)
    values = np.asarray((data.astype(np.float32) / np.asarray(scale).reshape(shape)).round() + np.asarray(zero_point).reshape(shape))
    np.clip(values, qmin, qmax, out=values)
    q = values.astype(onnx.helper.tensor_dtype_to_np_dtype(quant_type)).reshape(weight.dims)
    return numpy_helper.from_array(q, name)


@contextlib.contextmanager
def _vectorized_initializers() -> Iterator[None]:
    """Route the QDQ quantizer's per-channel ``quantize_onnx_initializer`` calls to ``quantize_per_channel``."""
    from onnxruntime.quantization import qdq_quantizer
    from onnxruntime.quantization.quant_utils import TENSOR_NAME_QUANT_SUFFIX

    original = qdq_quantizer.quantize_onnx_initializer

    def fast(weight, quant_type, zero_point, scale, axis=None, quant_weight_name=None, block_size=0):
        if axis is not None and not block_size:
            name = quant_weight_name or f"{weight.name}{TENSOR_NAME_QUANT_SUFFIX}"
            done = quantize_per_channel(weight, quant_type, zero_point, scale, axis, name)
            if done is not None:
                return done
        return original(weight, quant_type, zero_point, scale, axis, quant_weight_name, block_size)

    qdq_quantizer.quantize_onnx_initializer = fast
    try:
        yield
    finally:
        qdq_quantizer.quantize_onnx_initializer = original


def _quantizer_class() -> type:
    from onnxruntime.quantization.base_quantizer import QuantizationParams
    from onnxruntime.quantization.qdq_quantizer import QDQQuantizer, QDQQuantTensorType
    from onnxruntime.quantization.quant_utils import normalize_axis

    class FastQDQQuantizer(QDQQuantizer):
        """``QDQQuantizer`` with per-channel weights quantized whole (see the module docstring)."""

        def _calc_initializer_quant_params(self) -> dict[str, Any]:
            inits = {t.name: t for t in self.model.initializer()}
            mine: dict[str, Any] = {}
            for name, info in self.tensors_to_quantize.items():
                if name not in inits or info.axis is None or self.block_size > 0 or self.tensor_quant_overrides.get(name):
                    continue
                data = numpy_helper.to_array(inits[name])
                ok, axis = normalize_axis(info.axis, data.ndim)
                quant_type = self.weight_qType if info.tensor_type is QDQQuantTensorType.WEIGHT else self.activation_qType
                found = per_channel_params(data, axis, quant_type, True, self.reduce_range, self.min_real_range) if ok else None
                if found is not None:
                    mine[name] = QuantizationParams(zero_point=found[0], scale=found[1], quant_type=quant_type, axis=axis)
            everyone = self.tensors_to_quantize
            self.tensors_to_quantize = {k: v for k, v in everyone.items() if k not in mine}
            try:
                theirs = super()._calc_initializer_quant_params()
            finally:
                self.tensors_to_quantize = everyone
            return {k: mine.get(k, theirs.get(k)) for k in everyone if k in mine or k in theirs}

        def quantize_model(self) -> onnx.ModelProto:
            with _vectorized_initializers():
                return super().quantize_model()

    return FastQDQQuantizer


def __getattr__(name: str) -> Any:  # onnxruntime is imported only when the quantizer is wanted
    if name == "FastQDQQuantizer":
        return _quantizer_class()
    raise AttributeError(name)

"""Per-layer precision variants for the sensitivity sweep: int8 (QDQ U8S8 per-channel), int8_dynamic, fp16.

Stand-in until ``engine.transforms.apply_plan`` lands: swap ``VariantBuilder.build`` for it then.
int8 goes through ONNX Runtime's ``quantize_static`` with a calibration cache, so calibration runs
once and every variant uses the same ranges; int8_dynamic through ``quantize_dynamic``; fp16 is a
small local rewrite (casts around the layer, fp16 weights). The layer keeps its node name and its
output names, so the rest of the graph is untouched.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from engine.errors import LayerLabError
from engine.ops import op_facts

__all__ = ["ROUTINES", "applicable", "VariantBuilder"]

logger = logging.getLogger(__name__)

#: The non-fp32 routines a layer can be measured with.
ROUTINES = ("int8", "int8_dynamic", "fp16")


def applicable(op_type: str, routine: str) -> bool:
    """Whether ``routine`` exists for a layer of ``op_type``."""
    if routine == "int8":
        return op_facts(op_type).quantizable
    if routine == "int8_dynamic":
        return op_type in ("MatMul", "Gemm")
    if routine == "fp16":
        return True
    raise LayerLabError(f"routine {routine!r}: must be one of {', '.join(ROUTINES)}")


class VariantBuilder:
    """Builds ``base`` with a set of layers in one routine; a context manager owning a temp folder."""

    def __init__(self, base: onnx.ModelProto, calibration: Sequence[dict[str, np.ndarray]]) -> None:
        self.base = base
        self._calibration = list(calibration)
        self._tmp = tempfile.TemporaryDirectory(prefix="layerlab-variants-")
        self._dir = Path(self._tmp.name)
        self._base_path = self._dir / "base.onnx"
        onnx.save(base, self._base_path)  # ORT's quantizer is happiest with a path
        self._cache = self._dir / "calibration.json"
        self._count = 0
        self._float_tensors: set[str] | None = None

    def __enter__(self) -> "VariantBuilder":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._tmp.cleanup()

    def build(self, layers: Sequence[str], routine: str) -> onnx.ModelProto:
        """``base`` with ``layers`` in ``routine`` and every other node as it was."""
        if routine == "fp16":
            if self._float_tensors is None:
                self._float_tensors = _float_tensors(self.base)
            return _fp16_layers(self.base, layers, self._float_tensors)
        self._count += 1
        out = self._dir / f"variant_{self._count}.onnx"
        with _quiet_quantizer():
            try:
                if routine == "int8":
                    self._int8(layers, out)
                elif routine == "int8_dynamic":
                    self._int8_dynamic(layers, out)
                else:
                    raise LayerLabError(f"routine {routine!r}: must be one of {', '.join(ROUTINES)}")
            except LayerLabError:
                raise
            except Exception as exc:
                raise LayerLabError(f"{routine} of {', '.join(layers)[:200]}: ONNX Runtime's quantizer failed ({exc})") from None
        model = onnx.load(out)
        out.unlink()
        return model

    def _int8(self, layers: Sequence[str], out: Path) -> None:
        from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

        feeds = iter(self._calibration)

        class _Reader(CalibrationDataReader):
            def get_next(self) -> dict[str, np.ndarray] | None:
                return next(feeds, None)

        # The first call calibrates every tensor and writes the cache; later calls only read it.
        reader = None if self._cache.is_file() else _Reader()
        quantize_static(
            str(self._base_path), str(out), reader,
            quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            nodes_to_quantize=list(layers), calibration_cache_path=str(self._cache),
        )

    def _int8_dynamic(self, layers: Sequence[str], out: Path) -> None:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        # quantize_dynamic rewrites every Gemm as MatMul + Add named "<gemm>_MatMul" before it quantizes.
        names = list(layers) + [f"{name}_MatMul" for name in layers]
        quantize_dynamic(str(self._base_path), str(out), nodes_to_quantize=names, weight_type=QuantType.QInt8)


def _fp16_layers(base: onnx.ModelProto, layers: Sequence[str], float_types: set[str]) -> onnx.ModelProto:
    """Each layer reads fp16 copies of its float inputs and weights and casts its outputs back to fp32."""
    model = onnx.ModelProto()
    model.CopyFrom(base)
    graph = model.graph
    wanted = set(layers)
    inits = {t.name: t for t in graph.initializer}
    nodes: list[onnx.NodeProto] = []
    for node in graph.node:
        if node.name not in wanted:
            nodes.append(node)
            continue
        for k, name in enumerate(node.input):
            if not name:
                continue
            if name in inits and inits[name].data_type == TensorProto.FLOAT:
                half = f"{name}_fp16"
                if half not in inits:
                    inits[half] = numpy_helper.from_array(numpy_helper.to_array(inits[name]).astype(np.float16), half)
                    graph.initializer.append(inits[half])
                node.input[k] = half
            elif name not in inits and name in float_types:
                half = f"{name}_{node.name}_fp16"
                nodes.append(helper.make_node("Cast", [name], [half], f"{node.name}_cast_in{k}", to=TensorProto.FLOAT16))
                node.input[k] = half
        outputs = list(node.output)
        for k, name in enumerate(outputs):
            if name:
                node.output[k] = f"{name}_fp16"
        nodes.append(node)
        for k, name in enumerate(outputs):
            if name:
                nodes.append(helper.make_node("Cast", [f"{name}_fp16"], [name], f"{node.name}_cast_out{k}", to=TensorProto.FLOAT))
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.value_info[:]  # the fp16 tensors would contradict the recorded fp32 types
    return model


def _float_tensors(model: onnx.ModelProto) -> set[str]:
    """Names of the fp32 tensors (ONNX shape inference; the graph's recorded types when it fails)."""
    try:
        model = onnx.shape_inference.infer_shapes(model)
    except Exception as exc:
        logger.info("shape inference for fp16 failed (%s); using recorded types", exc)
    values = list(model.graph.input) + list(model.graph.value_info) + list(model.graph.output)
    return {v.name for v in values if v.type.tensor_type.elem_type == TensorProto.FLOAT}


class _DropQuantizerNagging(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing" not in record.getMessage()


@contextlib.contextmanager
def _quiet_quantizer() -> Iterator[None]:
    """ORT's quantizer warns on the root logger about pre-processing on every call; once is enough."""
    root = logging.getLogger()
    flt = _DropQuantizerNagging()
    root.addFilter(flt)
    try:
        yield
    finally:
        root.removeFilter(flt)

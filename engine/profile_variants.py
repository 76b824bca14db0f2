"""Whole-model variants the profiler times: every layer in one routine (fp32, int8, int8_dynamic, fp16).

This is the one place that turns a graph into a routine's model. It calls ONNX Runtime's quantizers
and onnxconverter-common directly; when ``engine.transforms`` lands, ``build_variant`` is the function
to re-point at it. Each builder also says which layers it could not convert, and why: the profiler
reports those routines as unsupported instead of timing an unconverted layer.
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto

from engine.errors import LayerLabError
from engine.graph import ModelGraph, upgrade_opset

__all__ = ["ROUTINES", "build_variant", "int8_variant", "random_feeds", "to_graph"]

logger = logging.getLogger(__name__)

ROUTINES = ("fp32", "int8", "int8_dynamic", "fp16")
_DYNAMIC_OPS = ("MatMul", "Gemm")


def random_feeds(graph: ModelGraph, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded random inputs of the graph's concrete input shapes; LayerLabError when a dim is unknown."""
    rng = np.random.default_rng(seed)
    feeds: dict[str, np.ndarray] = {}
    for t in graph.inputs:
        if t.shape is None or any(not isinstance(d, int) for d in t.shape):
            raise LayerLabError(
                f"{graph.label}: input {t.name!r} has unknown dims {t.shape}; give a shape, e.g. --input {t.name}=1x3x224x224"
            )
        dtype = np.dtype(t.dtype or "float32")
        if dtype.kind == "f":
            feeds[t.name] = rng.random(t.shape).astype(dtype)
        elif dtype.kind == "b":
            feeds[t.name] = rng.random(t.shape) > 0.5
        else:
            feeds[t.name] = rng.integers(0, 8, size=t.shape).astype(dtype)
    return feeds


def build_variant(
    graph: ModelGraph, routine: str, feeds: dict[str, np.ndarray]
) -> tuple[onnx.ModelProto, dict[str, str]]:
    """The model with every layer in ``routine``, and {layer: reason} for layers left unconverted."""
    builders: dict[str, Callable[[ModelGraph, dict[str, np.ndarray]], onnx.ModelProto]] = {
        "fp32": lambda g, f: g.model,
        "int8": _int8_static,
        "int8_dynamic": _int8_dynamic,
        "fp16": _fp16,
    }
    if routine not in builders:
        raise LayerLabError(f"{graph.label}: unknown routine {routine!r} (known: {', '.join(ROUTINES)})")
    if routine == "fp32":
        return graph.model, {}
    candidates = _candidates(graph, routine)
    reasons = {n.name: _not_applicable(routine) for n in graph.layers if n.name not in candidates}
    if not candidates:
        return graph.model, reasons
    variant = builders[routine](graph, feeds)
    for name in candidates:
        if not _converted(graph, variant, name, routine):
            reasons[name] = f"the {routine} converter left {graph.node(name).op_type} in fp32"
    return variant, reasons


def _candidates(graph: ModelGraph, routine: str) -> list[str]:
    if routine == "int8_dynamic":
        return [n.name for n in graph.layers if n.op_type in _DYNAMIC_OPS]
    return [n.name for n in graph.layers]


def _not_applicable(routine: str) -> str:
    return "int8_dynamic applies to MatMul/Gemm layers only" if routine == "int8_dynamic" else f"no {routine} routine"


def _converted(graph: ModelGraph, variant: onnx.ModelProto, layer: str, routine: str) -> bool:
    """A layer is converted when its weight is fp16 (fp16) or a ``<weight>..._quantized`` initializer exists."""
    weights = graph.node(layer).weights
    if not weights:
        return False
    inits = {t.name: t for t in variant.graph.initializer}
    if routine == "fp16":
        w = inits.get(weights[0])
        return w is not None and w.data_type == TensorProto.FLOAT16
    return any(name.startswith(weights[0]) and name.endswith("_quantized") for name in inits)


class _Reader:
    """Calibration data for quantize_static: the profiling inputs, twice (min/max only need a few)."""

    def __init__(self, feeds: dict[str, np.ndarray]) -> None:
        self._items = iter([feeds, feeds])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._items, None)


def int8_variant(graph: ModelGraph, layers: list[str], feeds: dict[str, np.ndarray]) -> onnx.ModelProto:
    """The model with only ``layers`` in int8 (static QDQ U8S8 per-channel); the rest stays fp32."""
    if not layers:
        return graph.model
    return _int8_static(graph, feeds, layers)


def _int8_static(graph: ModelGraph, feeds: dict[str, np.ndarray], layers: list[str] | None = None) -> onnx.ModelProto:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    reader = type("_CalibReader", (_Reader, CalibrationDataReader), {})(feeds)
    layers = layers if layers is not None else [n.name for n in graph.layers]
    return _through_files(
        graph,
        lambda src, dst: quantize_static(
            src, dst, reader, nodes_to_quantize=layers, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, quant_format=QuantFormat.QDQ,
        ),
    )


def _int8_dynamic(graph: ModelGraph, feeds: dict[str, np.ndarray]) -> onnx.ModelProto:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # quantize_dynamic first rewrites Gemm as <name>_MatMul + <name>_Add: name both forms.
    layers = _candidates(graph, "int8_dynamic")
    layers += [f"{name}_MatMul" for name in layers if graph.node(name).op_type == "Gemm"]
    return _through_files(
        graph,
        lambda src, dst: quantize_dynamic(
            src, dst, nodes_to_quantize=layers, op_types_to_quantize=list(_DYNAMIC_OPS), weight_type=QuantType.QInt8
        ),
    )


def _fp16(graph: ModelGraph, feeds: dict[str, np.ndarray]) -> onnx.ModelProto:
    from onnxconverter_common import float16

    block = [n.name for n in graph.nodes if not n.tunable]
    model = onnx.ModelProto()
    model.CopyFrom(upgrade_opset(graph.model, 13))  # the converter edits its argument in place
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "number truncated to 1e-07": expected for fp16 weights
            return float16.convert_float_to_float16(
                model, keep_io_types=True, node_block_list=block, disable_shape_infer=True
            )
    except Exception as exc:  # noqa: BLE001 - converter errors are many and untyped
        raise LayerLabError(f"{graph.label}: fp16 conversion failed ({str(exc).splitlines()[0][:200]})") from None


def _through_files(graph: ModelGraph, convert: Callable[[str, str], None]) -> onnx.ModelProto:
    """ORT's quantizers read and write files; run ``convert`` on a temp copy at opset >= 13."""
    model = upgrade_opset(graph.model, 13)
    with tempfile.TemporaryDirectory(prefix="layerlab-variant-") as tmp:
        src, dst = Path(tmp) / "in.onnx", Path(tmp) / "out.onnx"
        onnx.save(model, src)
        quant_logger = logging.getLogger()
        level = quant_logger.level
        quant_logger.setLevel(logging.ERROR)  # the quantizer warns about pre-processing on the root logger
        try:
            convert(str(src), str(dst))
        except Exception as exc:  # noqa: BLE001 - the quantizer's errors are untyped
            raise LayerLabError(f"{graph.label}: quantization failed ({str(exc).splitlines()[0][:200]})") from None
        finally:
            quant_logger.setLevel(level)
        return onnx.load(dst)


def to_graph(
    graph: ModelGraph, variant: onnx.ModelProto, node_ms: Mapping[str, float], adapts: Mapping[tuple[str, str], float]
) -> tuple[dict[str, float], dict[tuple[str, str], float]]:
    """Move times from the variant's nodes to the graph's: nodes the converter added serve a layer or are adapts."""
    names = {n.name for n in graph.nodes}
    out = {n.name: 0.0 for n in graph.nodes}
    extra: dict[tuple[str, str], float] = {}
    for key, ms in adapts.items():
        extra[key] = extra.get(key, 0.0) + ms
    inits = {t.name for t in variant.graph.initializer}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    producer: dict[str, onnx.NodeProto] = {}
    for n in variant.graph.node:
        for t in n.input:
            consumers.setdefault(t, []).append(n)
        for t in n.output:
            producer[t] = n
    layers = sorted((n for n in graph.layers), key=lambda n: -len(n.name))
    for vnode in variant.graph.node:
        ms = node_ms.get(vnode.name, 0.0)
        if vnode.name in names:
            out[vnode.name] += ms
            continue
        owner = _owner(vnode, names, layers, inits, consumers, producer)
        if owner is not None:
            out[owner] += ms
        else:
            kind = {"QuantizeLinear": "quantize", "DequantizeLinear": "dequantize", "Cast": "cast"}.get(vnode.op_type, "other")
            tensor = vnode.input[0] if vnode.input else vnode.name
            for suffix in ("_QuantizeLinear_Output", "_DequantizeLinear_Output"):
                tensor = tensor.removesuffix(suffix)
            extra[(tensor, kind)] = extra.get((tensor, kind), 0.0) + ms
    return out, extra


def _owner(vnode: onnx.NodeProto, names: set[str], layers: list, inits: set[str],
           consumers: Mapping[str, list[onnx.NodeProto]], producer: Mapping[str, onnx.NodeProto]) -> str | None:
    """The graph layer a converter-added node works for, or None for an adapt between nodes."""
    if vnode.op_type == "DequantizeLinear" and vnode.input and vnode.input[0] in inits:
        users = consumers.get(vnode.output[0], [])
        return users[0].name if users and users[0].name in names else None  # a weight's DQ
    if vnode.op_type == "DynamicQuantizeLinear":
        users = [u for t in vnode.output for u in consumers.get(t, []) if u.op_type != "Mul"]
        return _owner(users[0], names, layers, inits, consumers, producer) if users else None
    if vnode.op_type in ("QuantizeLinear", "DequantizeLinear"):
        return None
    for layer in layers:  # dynamic quantization names its nodes <layer>_... or <layer output>_...
        if vnode.name.startswith(layer.name + "_") or any(vnode.name.startswith(o + "_") for o in layer.outputs):
            return layer.name
    if vnode.op_type == "Cast":  # fp16 converter's casts belong to the fp16 layer they feed or drain
        around = [u for u in consumers.get(vnode.output[0], [])] + [producer[t] for t in vnode.input if t in producer]
        for other in around:
            if other.name in {n.name for n in layers}:
                return other.name
    return None

"""Whole-model variants the profiler times: every layer in one routine (fp32, int8, int8_dynamic, fp16).

The variants come from ``engine.passes.precision.PrecisionPass``, the same transform a plan
applies, calibrated on the profiling inputs. ``build_variant`` also says which layers could not be
converted, and why: the profiler reports those routines as unsupported instead of timing an
unconverted layer. ``to_graph`` maps the variant's node times back onto the graph's nodes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np
import onnx

from engine.errors import LayerLabError, SettingsError
from engine.ir.graph import ModelGraph, Node
from engine.ir.feeds import random_feeds  # re-exported: where the profiler and jobs get their feeds
from engine.ir.routines import routine_problem
from engine.passes.precision import PrecisionPass, unconverted

__all__ = ["OPS_INT8", "ROUTINES", "build_variant", "int8_variant", "random_feeds", "to_graph"]

logger = logging.getLogger(__name__)

ROUTINES = ("fp32", "int8", "int8_dynamic", "fp16")
#: Not a layer routine: every layer in int8 *and* the ops between them (the plan's "ops": "int8").
OPS_INT8 = "int8_ops"


def build_variant(
    graph: ModelGraph, routine: str, feeds: dict[str, np.ndarray]
) -> tuple[onnx.ModelProto, dict[str, str]]:
    """The model with every layer in ``routine``, and {layer: reason} for layers left unconverted."""
    if routine not in ROUTINES + (OPS_INT8,):
        raise LayerLabError(f"{graph.label}: unknown routine {routine!r} (known: {', '.join(ROUTINES)})")
    if routine == "fp32":
        return graph.model, {}
    if routine == OPS_INT8:
        layers = [n.name for n in graph.layers]
        try:
            result = PrecisionPass(calibration=[feeds, feeds], int8=layers, int8_ops_except=layers)(graph.model)
        except SettingsError as exc:
            raise LayerLabError(f"{graph.label}: int8 conversion with ops failed ({exc})") from None
        return result.model, {}
    candidates = {n.name: routine_problem(graph, n, routine) for n in graph.layers}
    reasons = {name: why for name, why in candidates.items() if why}
    chosen = [name for name, why in candidates.items() if not why]
    if not chosen:
        return graph.model, reasons
    variant = _precision(graph, routine, chosen, feeds)
    for name in unconverted(variant, chosen, routine):
        reasons[name] = f"the {routine} converter left {graph.node(name).op_type} in fp32"
    return variant, reasons


def int8_variant(graph: ModelGraph, layers: list[str], feeds: dict[str, np.ndarray]) -> onnx.ModelProto:
    """The model with only ``layers`` in int8 (static QDQ U8S8 per-channel); the rest stays fp32."""
    if not layers:
        return graph.model
    return _precision(graph, "int8", layers, feeds)


def _precision(graph: ModelGraph, routine: str, layers: list[str], feeds: dict[str, np.ndarray]) -> onnx.ModelProto:
    """``graph.model`` through PrecisionPass; calibrated on the profiling inputs (min/max needs only a few)."""
    try:
        result = PrecisionPass(calibration=[feeds, feeds], **{routine: layers})(graph.model)
    except SettingsError as exc:
        raise LayerLabError(f"{graph.label}: {routine} conversion failed ({exc})") from None
    return result.model


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

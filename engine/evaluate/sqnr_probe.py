"""The sweep's SQNR probe: how far a layer's int8 output, as its readers see it, is from the fp32 one.

Runs only the nodes between the cached activations and the layer's reader-side tensor (a
DequantizeLinear output after int8), on a few probe samples, so it costs a small model per layer.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import onnx

from engine.evaluate.evaluator import create_session
from engine.evaluate.subgraph import ActivationCache, Suffix, typed
from engine.ir.graph import ModelGraph

__all__ = ["layer_sqnr", "replacement"]

logger = logging.getLogger(__name__)


def layer_sqnr(
    graph: ModelGraph, layer: str, variant: onnx.ModelProto, suffix: Suffix, probe: ActivationCache, *, threads: int, optimization: str
) -> float | None:
    """SQNR (dB) of what the layer's readers see in the variant against the fp32 output, on the probe samples."""
    node = graph.node(layer)
    fp32_name = node.outputs[0]
    seen = replacement(graph, variant, fp32_name)
    nodes = {o: n for n in suffix.model.graph.node for o in n.output}
    if seen not in nodes:
        return None
    keep, stack = [], [seen]
    visited: set[str] = set()
    while stack:
        t = stack.pop()
        n = nodes.get(t)
        if n is None or n.name in visited:
            continue
        visited.add(n.name)
        keep.append(n)
        stack.extend(n.input)
    order = {n.name: i for i, n in enumerate(suffix.model.graph.node)}
    keep.sort(key=lambda n: order[n.name])
    produced = {o for n in keep for o in n.output}
    inits = {t.name: t for t in suffix.model.graph.initializer}
    inputs = list(dict.fromkeys(t for n in keep for t in n.input if t and t not in produced and t not in inits))
    if not all(probe.has(t) for t in inputs):
        return None
    out = onnx.ValueInfoProto(name=seen)
    small = onnx.helper.make_graph(keep, "probe", [onnx.ValueInfoProto(name=t) for t in inputs], [out],
                                   [inits[t] for t in {t for n in keep for t in n.input if t in inits}])
    model = onnx.helper.make_model(small, opset_imports=list(variant.opset_import))
    model.ir_version = variant.ir_version
    piece = Suffix(model, inputs, [seen], len(keep))
    count = len(probe)
    session = create_session(typed(piece, probe.feed(0, inputs)), threads=threads, optimization=optimization)
    signal = noise = 0.0
    for k in range(count):
        (value,) = session.run([seen], probe.feed(k, inputs))
        ref = probe.value(fp32_name, k).astype(np.float64)
        signal += float((ref * ref).sum())
        noise += float(((value.astype(np.float64) - ref) ** 2).sum())
    if noise == 0:
        return math.inf
    return 10 * math.log10(signal / noise) if signal > 0 else -math.inf


def replacement(graph: ModelGraph, variant: onnx.ModelProto, tensor: str) -> str:
    """The tensor the base's first reader of ``tensor`` reads in the variant (a DQ output after int8)."""
    if tensor in {o.name for o in variant.graph.output}:
        return tensor
    for edge in graph.edges:
        if edge.tensor == tensor:
            base_reader = graph.node(edge.dst)
            slot = list(base_reader.inputs).index(tensor)
            for n in variant.graph.node:
                if n.name == base_reader.name and slot < len(n.input):
                    return n.input[slot]
            break
    return tensor

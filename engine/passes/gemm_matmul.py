"""Gemm <-> MatMul + Add for dynamic int8: ORT's dynamic quantizer handles MatMul, not Gemm.

``gemm_to_matmul`` rewrites the chosen Gemms before ``quantize_dynamic``; ``restore_gemms`` puts back
every Gemm the quantizer left in float, so a layer that did not convert runs as it did.
"""

from __future__ import annotations

import logging

import numpy as np
import onnx
from onnx import helper, numpy_helper

from engine.errors import SettingsError
from engine.passes.base import drop_unused_initializers, initializers, set_initializer

__all__ = ["gemm_to_matmul", "restore_gemms"]

logger = logging.getLogger(__name__)


def restore_gemms(before: onnx.ModelProto, after: onnx.ModelProto) -> onnx.ModelProto:
    """Put back the Gemms ORT's dynamic quantizer split into ``<name>_MatMul`` + ``<name>_Add``.

    It rewrites every Gemm of the model, also those it was told not to quantize; those are untouched
    layers and must keep their node (and name) for plans and profiles.
    """
    names = {n.name for n in after.graph.node}
    originals = {n.name: n for n in before.graph.node if n.op_type == "Gemm" and n.name not in names}
    if not originals:
        return after
    split = {f"{g}_{suffix}": g for g in originals for suffix in ("MatMul", "Add")}
    nodes: list[onnx.NodeProto] = []
    for n in after.graph.node:
        gemm = split.get(n.name)
        if gemm is None:
            nodes.append(n)
        elif n.name.endswith("_MatMul"):
            nodes.append(originals[gemm])
    del after.graph.node[:]
    after.graph.node.extend(nodes)
    have = {t.name for t in after.graph.initializer}
    used = {t for n in nodes for t in n.input}
    after.graph.initializer.extend(t for t in before.graph.initializer if t.name in used and t.name not in have)
    drop_unused_initializers(after.graph)
    return after


def gemm_to_matmul(model: onnx.ModelProto, names: set[str]) -> None:
    """Split the named Gemms into MatMul (same name) + Add, in place: ORT quantizes MatMul dynamically, not Gemm."""
    graph = model.graph
    inits = initializers(graph)
    out: list[onnx.NodeProto] = []
    for n in graph.node:
        if n.op_type != "Gemm" or n.name not in names:
            out.append(n)
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        if attrs.get("transA", 0) or n.input[1] not in inits:
            raise SettingsError(f"layer {n.name!r}: int8_dynamic needs a Gemm with constant B and transA=0")
        w = numpy_helper.to_array(inits[n.input[1]]).astype(np.float32)
        w = (w.T if attrs.get("transB", 0) else w) * float(attrs.get("alpha", 1.0))
        w_name = f"{n.name}.weight_kn"
        set_initializer(graph, w_name, w)
        has_bias = len(n.input) > 2 and n.input[2]
        mid = f"{n.name}_matmul_out" if has_bias else n.output[0]
        out.append(helper.make_node("MatMul", [n.input[0], w_name], [mid], name=n.name))
        if has_bias:
            beta = float(attrs.get("beta", 1.0))
            c = n.input[2]
            if beta != 1.0:
                c = f"{n.name}.bias_scaled"
                set_initializer(graph, c, numpy_helper.to_array(inits[n.input[2]]) * beta)
            out.append(helper.make_node("Add", [mid, c], [n.output[0]], name=f"{n.name}_bias"))
    del graph.node[:]
    graph.node.extend(out)
    drop_unused_initializers(graph)

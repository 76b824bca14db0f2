"""fp16 for chosen layers: fp16 weight copies and a Cast at each border, every other tensor untouched.

Written by hand because onnxconverter-common's block list changes layers the plan left in fp32
(see ``fp16_layers``); kept apart from the int8 code in ``engine.passes.precision``.
"""

from __future__ import annotations

import logging

import numpy as np
import onnx
from onnx import helper, numpy_helper

from engine.passes.base import drop_unused_initializers, initializers, set_initializer

__all__ = ["fp16_layers"]

logger = logging.getLogger(__name__)


def fp16_layers(model: onnx.ModelProto, nodes: set[str]) -> onnx.ModelProto:
    """Run ``nodes`` in fp16 with Casts at the borders; every other tensor stays exactly as it was.

    onnxconverter-common 1.16's ``convert_float_to_float16(node_block_list=...)`` was tried first: on
    the digits model it round-trips untouched tensors with two readers through fp16 (fp32 -> fp16 ->
    fp32 before ``/res/conv_a/Conv``), changing layers the plan left in fp32. This does the same job
    for the chosen layers only: fp16 copies of their weights, a Cast in and a Cast out, and adjacent
    fp16 layers connected directly.
    """
    graph = model.graph
    inits = initializers(graph)
    fp16_out: dict[str, str] = {}  # fp32 tensor name -> its fp16 twin
    twins: set[str] = set()  # fp16 weight copies made (sets and appends: linear in the graph size)
    added: set[str] = set()  # names of the Casts made here
    out: list[onnx.NodeProto] = []
    for n in graph.node:
        if n.name not in nodes:
            out.append(n)
            continue
        for i, t in enumerate(n.input):
            if not t:
                continue
            if t in inits:
                if inits[t].data_type != onnx.TensorProto.FLOAT:
                    continue
                twin = f"{t}_fp16"
                if twin not in twins:
                    twins.add(twin)
                    if twin in inits:
                        set_initializer(graph, twin, numpy_helper.to_array(inits[t]).astype(np.float16))
                    else:
                        graph.initializer.append(numpy_helper.from_array(numpy_helper.to_array(inits[t]).astype(np.float16), twin))
                fp16_out[t] = twin
            elif t not in fp16_out:
                fp16_out[t] = f"{t}_fp16"
                out.append(helper.make_node("Cast", [t], [fp16_out[t]], name=f"{n.name}_cast_in{i}", to=onnx.TensorProto.FLOAT16))
                added.add(out[-1].name)
            n.input[i] = fp16_out[t]
        casts = []
        for j, t in enumerate(n.output):
            fp16_out[t] = f"{t}_fp16"
            n.output[j] = fp16_out[t]
            casts.append(helper.make_node("Cast", [fp16_out[t]], [t], name=f"{n.name}_cast_out{j}", to=onnx.TensorProto.FLOAT))
            added.add(casts[-1].name)
        out += [n, *casts]
    # adjacent fp16 layers read each other's fp16 tensors directly: drop Casts nobody reads
    read = {t for node in out for t in node.input} | {o.name for o in graph.output}
    out = [node for node in out if node.op_type != "Cast" or node.output[0] in read or node.name not in added]
    del graph.node[:]
    graph.node.extend(out)
    drop_unused_initializers(graph)
    del graph.value_info[:]
    return onnx.shape_inference.infer_shapes(model)

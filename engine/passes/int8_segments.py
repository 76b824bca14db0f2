"""Static int8 of a huge graph in linear time: ORT's QDQ quantizer on windows of the graph, stitched back.

ONNX Runtime's ``QDQQuantizer`` is quadratic in the node count: every quantized tensor rewires its
readers by scanning all nodes (``ONNXModel.replace_input_of_all_nodes``), initializers are found by a
linear search (``find_by_name``), and the reader index is rebuilt per call. A 1,000-node chain takes
18 s, a 20,000-node one would take hours. The quantizer's result for a node depends only on the node,
its neighbours and the ranges of the tensors it touches, so ``segmented_int8`` cuts the topologically
ordered graph into windows of ``window`` nodes, gives each window (as a model of its own, typed from
the base's value_info) to the same quantizer with the same ranges, and concatenates the results.

At a window border the producer's window ends its output with Q -> DQ (under the tensor's own name)
and the reader's window starts with another Q -> DQ of the same scale and zero point: quantizing an
already dequantized value with the same parameters gives the same integers back, so values are those
of the one-shot result (ORT's graph optimizer removes the double pair at session creation). Names the
quantizer invents in two windows (a tensor read by both) get a ``__<window>`` suffix. Graphs with
subgraph attributes (If/Loop) are not cut: the caller quantizes them in one piece.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

import numpy as np
import onnx
from onnx import helper

from engine.ir.graph import topological_order
from engine.passes.base import drop_unused_initializers
from engine.progress import Job, Progress

__all__ = ["WINDOW", "cuttable", "segmented_int8"]

logger = logging.getLogger(__name__)

#: Nodes per window: the quantizer's cost per window grows with its square, the fixed cost per window stays.
WINDOW = 32


def cuttable(model: onnx.ModelProto) -> bool:
    """Whether ``model`` can be quantized in windows: no node carries a subgraph, every activation is typed."""
    graph = model.graph
    if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for n in graph.node for a in n.attribute):
        return False
    typed = {v.name for v in list(graph.input) + list(graph.value_info) + list(graph.output)} | {t.name for t in graph.initializer}
    return all(t in typed for n in graph.node for t in list(n.input) + list(n.output) if t)


def _window_model(base: onnx.ModelProto, nodes: list[onnx.NodeProto], types: Mapping[str, onnx.ValueInfoProto],
                  inits: Mapping[str, onnx.TensorProto], read_after: set[str], graph_outputs: set[str]) -> onnx.ModelProto:
    produced = {o for n in nodes for o in n.output if o}
    reads = list(dict.fromkeys(t for n in nodes for t in n.input if t))
    inputs = [types[t] for t in reads if t not in produced and t not in inits]
    outputs = [types[o] for n in nodes for o in n.output if o and (o in read_after or o in graph_outputs)]
    inner = [types[o] for o in produced if o in types]
    graph = helper.make_graph(nodes, "window", inputs, outputs, [inits[t] for t in reads if t in inits], value_info=inner)
    model = helper.make_model(graph, opset_imports=list(base.opset_import))
    model.ir_version = base.ir_version
    return model


def _quantize(model: onnx.ModelProto, nodes: list[str], ranges: Mapping[str, tuple[np.ndarray, np.ndarray]],
              fast: bool = True) -> onnx.ModelProto:
    """The QDQ quantizer with LayerLab's settings (as ``precision._static_int8`` gives ``quantize_static``);
    ``fast``: per-channel weights quantized whole (``engine.passes.int8_weights``, the same numbers)."""
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization.qdq_quantizer import QDQQuantizer
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    from engine.passes import int8_weights
    from engine.passes.calibration import to_tensors_data

    if fast:
        # Every tensor of a window is typed already (``cuttable``): ORT's save, shape inference and reload
        # of each window would change nothing; its metadata flag says it was done.
        from onnxruntime.quantization.quant_utils import add_infer_metadata

        model = _copy(model)
        add_infer_metadata(model)
    touched = {t for n in model.graph.node for t in list(n.input) + list(n.output)}
    data = to_tensors_data({t: r for t, r in ranges.items() if t in touched})
    ops = list(set(QLinearOpsRegistry) | set(QDQRegistry))
    quantizer = (int8_weights.FastQDQQuantizer if fast else QDQQuantizer)(model, True, False, QuantType.QInt8.tensor_type, QuantType.QUInt8.tensor_type,
                             data, nodes, [], ops, {})
    return quantizer.quantize_model()


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    return copy


def _adjusted(graph: onnx.GraphProto, chosen: set[str] | None, ranges: Mapping[str, tuple[np.ndarray, np.ndarray]]
              ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """ORT's ``BaseQuantizer.adjust_tensor_ranges`` done once on the whole graph: a window sees only its
    own nodes, so a Relu/Clip's input (read by it alone) takes its output's range and a Softmax output is
    [0, 1] also where producer and reader fall in different windows."""
    out = dict(ranges)
    readers: dict[str, int] = {}
    for n in graph.node:
        for t in n.input:
            readers[t] = readers.get(t, 0) + 1
    for n in graph.node:
        if chosen is not None and n.name not in chosen:
            continue
        if n.op_type in ("Clip", "Relu") and readers.get(n.input[0]) == 1 and n.input[0] in out and n.output[0] in out:
            out[n.input[0]] = out[n.output[0]]
        elif n.op_type == "Softmax":
            out[n.output[0]] = (np.float32(0.0), np.float32(1.0))
    return out


def segmented_int8(model: onnx.ModelProto, nodes: Iterable[str] | None, ranges: Mapping[str, tuple[np.ndarray, np.ndarray]],
                   window: int = WINDOW) -> Job[onnx.ModelProto]:
    """``model`` (opset >= 13, shapes inferred, topologically sorted) with ``nodes`` (None: all) in static int8."""
    graph = model.graph
    order = topological_order(graph)
    node_list = [graph.node[i] for i in order]
    wanted = None if nodes is None else set(nodes)
    ranges = _adjusted(graph, wanted, ranges)
    types = {v.name: v for v in list(graph.input) + list(graph.value_info) + list(graph.output)}
    inits = {t.name: t for t in graph.initializer}
    graph_outputs = {o.name for o in graph.output}
    original = {t for n in graph.node for t in list(n.input) + list(n.output)} | set(inits) | {n.name for n in graph.node}
    last_read: dict[str, int] = {}
    for i, n in enumerate(node_list):
        for t in n.input:
            last_read[t] = i
    starts = list(range(0, len(node_list), window))
    used: set[str] = set()
    out_nodes: list[onnx.NodeProto] = []
    out_inits: list[onnx.TensorProto] = []
    out_infos: list[onnx.ValueInfoProto] = []
    domains = {o.domain for o in model.opset_import}
    extra_opsets: list[onnx.OperatorSetIdProto] = []
    for w, start in enumerate(starts):
        yield Progress(w, len(starts), f"int8: window {w + 1}/{len(starts)}")
        chunk = node_list[start:start + window]
        chosen = [n.name for n in chunk if wanted is None or n.name in wanted]
        if not chosen:
            out_nodes.extend(chunk)
            continue
        end = start + len(chunk)
        read_after = {t for n in chunk for t in n.output if last_read.get(t, -1) >= end}
        sub = _window_model(model, chunk, types, inits, read_after, graph_outputs)
        quantized = _quantize(sub, chosen, ranges)
        extra_opsets.extend(o for o in quantized.opset_import if o.domain not in domains and o.domain not in {e.domain for e in extra_opsets})
        result = quantized.graph
        fresh = ({o for n in result.node for o in n.output} | {t.name for t in result.initializer} | {n.name for n in result.node}) - original
        rename = {name: f"{name}__{w}" for name in fresh if name in used}
        used |= fresh
        for n in result.node:
            node = onnx.NodeProto()
            node.CopyFrom(n)
            node.name = rename.get(node.name, node.name)
            for k, t in enumerate(node.input):
                node.input[k] = rename.get(t, t)
            for k, t in enumerate(node.output):
                node.output[k] = rename.get(t, t)
            out_nodes.append(node)
        for t in result.initializer:
            if t.name not in inits or t.name in rename:
                copy = onnx.TensorProto()
                copy.CopyFrom(t)
                copy.name = rename.get(t.name, t.name)
                out_inits.append(copy)
        out_infos.extend(v for v in result.value_info if v.name not in types and v.name not in rename)
    yield Progress(len(starts), len(starts), "int8: stitching")
    stitched = onnx.ModelProto()
    stitched.CopyFrom(model)
    stitched.opset_import.extend(extra_opsets)
    g = stitched.graph
    produced = {o for n in out_nodes for o in n.output}
    del g.node[:]
    g.node.extend(out_nodes)
    ordered = [g.node[i] for i in topological_order(g)]  # the quantizer appends its Q/DQ nodes at the end
    del g.node[:]
    g.node.extend(ordered)
    kept = [t for t in g.initializer if t.name not in produced]
    del g.initializer[:]
    g.initializer.extend(kept)
    g.initializer.extend(out_inits)
    g.value_info.extend(out_infos)
    drop_unused_initializers(g)
    logger.info("int8 of %d nodes in %d windows of %d", len(node_list), len(starts), window)
    return stitched

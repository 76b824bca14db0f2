"""One layer to int8 without re-quantizing the whole model: ORT's quantizer on the layer alone, spliced back.

The sensitivity sweep builds one int8 variant per layer. ``quantize_static(base, nodes_to_quantize=
[layer])`` re-reads, shape-infers, analyses and writes the whole model every time (75 ms a layer on
ppocr-rec, a third of the cached sweep). What it adds for one layer depends only on that layer and
the calibrated ranges of the tensors it touches, so ``SingleLayerInt8`` cuts the layer out as a
one-node model, hands that to the same ``quantize_static`` with the same ranges, and puts the
quantized nodes back where the layer was.

ORT's QDQ quantizer rewires *every* reader of a quantized activation to its DequantizeLinear output
(``replace_input_of_all_nodes``), so the splice does the same for the layer's inputs; the layer's
outputs come back under their own names from the DQ (the one-node model's outputs are graph outputs),
which every reader then sees, as in the whole-model result. No ONNX library splices a quantized
subgraph back into a model, hence this module. Where a case is not covered (an input or weight that
is also a graph output or shared with another node, a name clash, another opset) ``build`` returns
None and the caller quantizes the whole model instead. Tests compare its variants bit for bit with
the whole-model path.
"""

from __future__ import annotations

import logging

import onnx
from onnx import helper

from engine.ir.graph import topological_order
from engine.passes.base import drop_unused_initializers

__all__ = ["SingleLayerInt8"]

logger = logging.getLogger(__name__)


class SingleLayerInt8:
    """Cuts one layer of ``prepared`` (opset >= 13, shapes inferred) out as a model of its own
    (``one_node_model``) and puts the quantizer's result back in its place (``splice``). Quantizing
    the cut, with the base's calibrated ranges, is the caller's (``layer_variants.VariantBuilder``)."""

    def __init__(self, prepared: onnx.ModelProto) -> None:
        self.base = prepared
        graph = prepared.graph
        self._inits = {t.name: t for t in graph.initializer}
        self._outputs = {o.name for o in graph.output}
        self._names = {n.name for n in graph.node} | {t for n in graph.node for t in n.output} | set(self._inits)
        self._names |= {i.name for i in graph.input}
        self._readers: dict[str, list[int]] = {}
        for i, n in enumerate(graph.node):
            for t in set(n.input):
                if t:
                    self._readers.setdefault(t, []).append(i)
        self._types = {v.name: v for v in list(graph.input) + list(graph.value_info) + list(graph.output)}

    def one_node_model(self, layer: str) -> onnx.ModelProto | None:
        """The layer alone: its activations as typed graph inputs, its initializers, its outputs; None if not splicable."""
        index = next((i for i, n in enumerate(self.base.graph.node) if n.name == layer), None)
        if index is None:
            return None
        node = self.base.graph.node[index]
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
            return None
        reads = [t for t in dict.fromkeys(node.input) if t]
        for t in reads:
            if t in self._outputs:
                return None  # ORT would rename the producer's output: not covered
            if t in self._inits and len(self._readers.get(t, [])) > 1:
                return None  # a shared weight: ORT may rewire the other readers too
        activations = [t for t in reads if t not in self._inits]
        if any(t not in self._types for t in activations + [o for o in node.output if o]):
            return None  # untyped: the quantizer needs element types
        graph = helper.make_graph(
            [node], "layer", [self._types[t] for t in activations], [self._types[o] for o in node.output if o],
            [self._inits[t] for t in reads if t in self._inits],
        )
        model = helper.make_model(graph, opset_imports=list(self.base.opset_import))
        model.ir_version = self.base.ir_version
        return model

    def splice(self, layer: str, quantized: onnx.ModelProto) -> onnx.ModelProto | None:
        """``base`` with ``layer`` replaced by the quantized one-node model's nodes; None on a clash."""
        if _main_opset(quantized) != _main_opset(self.base):
            return None
        base_graph = self.base.graph
        index = next(i for i, n in enumerate(base_graph.node) if n.name == layer)
        original = base_graph.node[index]
        new_nodes = list(quantized.graph.node)
        # Activations the quantizer put through Q/DQ: mini graph input x -> Q -> DQ -> layer.
        produced = {o: n for n in new_nodes for o in n.output}
        rewire: dict[str, str] = {}
        for value in quantized.graph.input:
            q = next((n for n in new_nodes if n.op_type == "QuantizeLinear" and n.input[0] == value.name), None)
            dq = next((n for n in new_nodes if n.op_type == "DequantizeLinear" and q is not None and n.input[0] == q.output[0]), None)
            if dq is not None:
                rewire[value.name] = dq.output[0]
        # ORT's bias DQ outputs the bias's own name: the layer's initializers (read by it alone) may be reused.
        own = {t for t in original.input if t in self._inits}
        fresh = {n.name for n in new_nodes if n.name != layer} | (set(produced) - set(original.output) - own)
        fresh |= {t.name for t in quantized.graph.initializer if t.name not in self._inits}
        if fresh & self._names:
            return None  # a name the base already uses
        model = onnx.ModelProto()
        model.CopyFrom(self.base)
        graph = model.graph
        nodes: list[onnx.NodeProto] = []
        for i, n in enumerate(graph.node):
            if i == index:
                nodes.extend(new_nodes)
                continue
            node = onnx.NodeProto()
            node.CopyFrom(n)
            for k, t in enumerate(node.input):
                if t in rewire:
                    node.input[k] = rewire[t]
            nodes.append(node)
        del graph.node[:]
        graph.node.extend(nodes)
        order = topological_order(graph)
        sorted_nodes = [graph.node[i] for i in order]
        del graph.node[:]
        graph.node.extend(sorted_nodes)
        kept = [t for t in graph.initializer if t.name not in produced]
        del graph.initializer[:]
        graph.initializer.extend(kept)
        graph.initializer.extend(t for t in quantized.graph.initializer if t.name not in self._inits)
        graph.value_info.extend(v for v in quantized.graph.value_info if v.name not in self._types)
        domains = {o.domain for o in model.opset_import}
        model.opset_import.extend(o for o in quantized.opset_import if o.domain not in domains)
        drop_unused_initializers(graph)
        return model


def _main_opset(model: onnx.ModelProto) -> int:
    return next((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)

"""Evaluate a variant of a model only where it differs from the base: the prefix cache of sensitivity.

A variant that changes one layer (int8, fp16 ...) computes exactly the base model's values upstream
of the change. ``diff_suffix`` finds the nodes of the variant that differ from the base or read
something that does, and cuts them out as a *suffix* model whose inputs are the base tensors they
read. ``ActivationCache`` runs the base model once per sample and keeps those tensors, so the suffix
runs on cached fp32 activations instead of the whole model running again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np
import onnx
from onnx import helper

from engine.ir.graph import topological_order
from engine.progress import Job

__all__ = ["Suffix", "diff_suffix", "typed", "value_infos", "serialized_initializers", "cut_candidates", "ActivationCache"]

logger = logging.getLogger(__name__)


@dataclass
class Suffix:
    """The changed part of a variant: a model reading ``inputs`` (base tensors), producing ``outputs``."""

    model: onnx.ModelProto
    inputs: list[str]
    outputs: list[str]  # the variant's graph outputs this suffix produces (the rest equal the base's)
    nodes: int


def diff_suffix(
    base: onnx.ModelProto,
    variant: onnx.ModelProto,
    base_inits: Mapping[str, bytes] | None = None,
    base_infos: Mapping[str, onnx.ValueInfoProto] | None = None,
) -> Suffix | None:
    """The suffix of ``variant`` that differs from ``base``; None when it needs a feature this cut cannot do.

    A node is unchanged when the base has a node of the same name, type, inputs, outputs and
    attributes, every initializer it reads is byte-identical, and none of its inputs comes from a
    changed node. ``base_inits`` (name -> serialized tensor) saves re-serialising the base each call;
    ``base_infos`` (``value_infos(base)``) types the cut when the variant records no types.
    """
    base_nodes = {n.name: n for n in base.graph.node}
    if len(base_nodes) != len(base.graph.node):
        base_nodes = {}  # names do not identify nodes: every node counts as changed, which is safe
    base_inits = base_inits if base_inits is not None else serialized_initializers(base)
    var_inits = {t.name: t for t in variant.graph.initializer}
    order = topological_order(variant.graph)
    changed: list[onnx.NodeProto] = []
    dirty: set[str] = set()
    for index in order:
        node = variant.graph.node[index]
        if _same(node, base_nodes.get(node.name), var_inits, base_inits, dirty):
            continue
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
            return None  # implicit outer-scope inputs: not worth cutting, evaluate the whole variant
        changed.append(node)
        dirty.update(o for o in node.output if o)
    produced = {o for n in changed for o in n.output}
    inputs = list(dict.fromkeys(t for n in changed for t in n.input if t and t not in produced and t not in var_inits))
    outputs = [o.name for o in variant.graph.output if o.name in produced]
    used_inits = {t for n in changed for t in n.input if t in var_inits}
    # The variant's recorded types and shapes go along: ORT picks kernels and fusions from them, and
    # the suffix must compute bit for bit what the same nodes compute inside the whole variant.
    infos = dict(base_infos or {})
    infos.update({v.name: v for v in list(variant.graph.value_info) + list(variant.graph.input)})
    graph = helper.make_graph(
        list(changed),
        f"{variant.graph.name or 'model'}_suffix",
        [infos.get(t, onnx.ValueInfoProto(name=t)) for t in inputs],  # untyped ones are typed by ``typed``
        [o for o in variant.graph.output if o.name in produced],
        [var_inits[t] for t in sorted(used_inits)],
        value_info=[infos[t] for t in sorted(produced) if t in infos],
    )
    model = helper.make_model(graph, opset_imports=list(variant.opset_import))
    model.ir_version = variant.ir_version
    return Suffix(model, inputs, outputs, len(changed))


def typed(suffix: Suffix, example: Mapping[str, np.ndarray]) -> onnx.ModelProto:
    """The suffix model with its inputs typed from example arrays (dtype only; shapes stay free)."""
    model = onnx.ModelProto()
    model.CopyFrom(suffix.model)
    for value in model.graph.input:
        if value.type.tensor_type.elem_type:
            continue
        elem = helper.np_dtype_to_tensor_dtype(example[value.name].dtype)
        value.CopyFrom(helper.make_tensor_value_info(value.name, elem, None))
    return model


def value_infos(model: onnx.ModelProto) -> dict[str, onnx.ValueInfoProto]:
    """Types and shapes of the model's tensors by name (ONNX shape inference, best effort)."""
    try:
        model = onnx.shape_inference.infer_shapes(model)
    except Exception as exc:
        logger.info("shape inference failed (%s); the cut stays untyped", exc)
    values = list(model.graph.input) + list(model.graph.value_info) + list(model.graph.output)
    return {v.name: v for v in values if v.type.HasField("tensor_type")}


def serialized_initializers(model: onnx.ModelProto) -> dict[str, bytes]:
    """Initializers by name, serialized, for byte comparisons."""
    return {t.name: t.SerializeToString() for t in model.graph.initializer}


def cut_candidates(model: onnx.ModelProto, layer: str) -> set[str]:
    """Base tensors a variant changing ``layer`` is expected to read at its cut.

    The region a change can reach is the layer, the other readers of its inputs and everything
    downstream of them; the cut is what that region reads from outside it. A variant that cuts
    elsewhere is still evaluated correctly, only without the cache.
    """
    graph = model.graph
    inits = {t.name for t in graph.initializer}
    readers: dict[str, list[int]] = {}
    for i, n in enumerate(graph.node):
        for t in n.input:
            if t:
                readers.setdefault(t, []).append(i)
    start = next((i for i, n in enumerate(graph.node) if n.name == layer), None)
    if start is None:
        return set()
    seeds = {start} | {j for t in graph.node[start].input if t not in inits for j in readers.get(t, [])}
    region, stack = set(seeds), list(seeds)
    while stack:
        for t in graph.node[stack.pop()].output:
            for j in readers.get(t, []):
                if j not in region:
                    region.add(j)
                    stack.append(j)
    produced = {o for j in region for o in graph.node[j].output}
    return {t for j in region for t in graph.node[j].input if t and t not in produced and t not in inits}


class ActivationCache:
    """Base-model tensors per sample, from one run of the base model with those tensors as outputs."""

    def __init__(self, tensors: dict[str, list[np.ndarray]], feeds: Sequence[Mapping[str, np.ndarray]]) -> None:
        self._tensors = tensors
        self._feeds = feeds

    @classmethod
    def build(
        cls,
        base: onnx.ModelProto,
        names: Iterable[str],
        feeds: Sequence[Mapping[str, np.ndarray]],
        *,
        threads: int = 0,
        optimization: str = "all",
        label: str = "<model>",
        max_bytes: int | None = None,
    ) -> Job["ActivationCache | None"]:
        """Run ``base`` on every feed keeping ``names`` (graph inputs come from the feeds); a job.

        With ``max_bytes``, the first sample's tensors, scaled by each sample's input size, estimate
        the whole cache, and None comes back at once when the estimate is larger."""
        from engine.evaluate.evaluator import create_session, run_samples

        graph_inputs = {i.name for i in base.graph.input}
        wanted = [n for n in dict.fromkeys(names) if n not in graph_inputs]
        model = onnx.ModelProto()
        model.CopyFrom(base)
        existing = {o.name for o in model.graph.output}
        for name in wanted:
            if name not in existing:
                model.graph.output.append(onnx.ValueInfoProto(name=name))
        session = create_session(model, threads=threads, optimization=optimization, label=label)
        values = []
        if max_bytes is not None and feeds:
            values = yield from run_samples(session, feeds[:1], label, output_names=wanted)
            # Activations grow with the inputs (ppocr-rec: widths 64-320), so scale by each sample's input bytes.
            size = lambda feed: sum(np.asarray(v).nbytes for v in feed.values()) or 1
            estimate = sum(a.nbytes for a in values[0]) * sum(size(f) for f in feeds) / size(feeds[0])
            if estimate > max_bytes:
                logger.info("%s: the activation cache would take %.1f GB (limit %.1f GB)", label, estimate / 1e9, max_bytes / 1e9)
                return None
        values += yield from run_samples(session, feeds[len(values):], label, output_names=wanted, first=len(values))
        tensors = {name: [row[k] for row in values] for k, name in enumerate(wanted)}
        return cls(tensors, feeds)

    def has(self, name: str) -> bool:
        return name in self._tensors or all(name in f for f in self._feeds[:1])

    def feed(self, index: int, names: Sequence[str]) -> dict[str, np.ndarray]:
        """The values of ``names`` for sample ``index``."""
        return {n: self._tensors[n][index] if n in self._tensors else self._feeds[index][n] for n in names}

    def value(self, name: str, index: int) -> np.ndarray:
        return self._tensors[name][index]

    def __len__(self) -> int:
        return len(self._feeds)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for values in self._tensors.values() for a in values)


def _same(
    node: onnx.NodeProto,
    base: onnx.NodeProto | None,
    var_inits: Mapping[str, onnx.TensorProto],
    base_inits: Mapping[str, bytes],
    dirty: set[str],
) -> bool:
    if base is None or base.op_type != node.op_type or base.domain != node.domain:
        return False
    if list(base.input) != list(node.input) or list(base.output) != list(node.output):
        return False
    if any(t in dirty for t in node.input):
        return False
    if [a.SerializeToString() for a in base.attribute] != [a.SerializeToString() for a in node.attribute]:
        return False
    for t in node.input:
        if t in var_inits and base_inits.get(t) != var_inits[t].SerializeToString():
            return False
    return True

"""Load and validate an ONNX model and describe it as LayerLab's model graph.

The graph is what every other part works from: nodes in topological order with their shapes, MACs,
parameters and bytes; edges between nodes; and which nodes are *layers* (tunable: they carry a
constant weight). Shapes come from ONNX's shape inference; symbolic dimensions stay symbolic unless
the user gives concrete input shapes, and whatever cannot be computed is ``None``, never an error.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import helper

from engine.errors import ModelError, SettingsError
from engine.ir.topology import all_inputs, topological_order  # topological_order re-exported
from engine.ir.fold import fold_constants
from engine.ir.ops import Shape, count_macs, op_facts
from engine.ir.feeds import generated_feeds
from engine.ir.shapes import TensorInfo, apply_input_shapes, infer_shapes, observed_shapes, unknown_tensors
from engine.ir.validate import (
    check_dims,
    check_external_data,
    check_input_sizes,
    check_runnable,
    check_structure,
    one_line,
)

__all__ = [
    "TensorInfo",
    "Node",
    "Edge",
    "ModelGraph",
    "load_model",
    "build_graph",
    "parse_input_shape",
    "upgrade_opset",
    "topological_order",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Node:
    """One ONNX node with the facts the view and the engine need."""

    name: str
    op_type: str
    index: int  # position in topological order
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attributes: dict[str, object]
    tunable: bool  # a layer: has a constant weight LayerLab can quantize, prune or factor
    weights: tuple[str, ...]  # names of the initializers it reads
    macs: int | None
    params: int
    weight_bytes: int
    out_shapes: tuple[Shape | None, ...]
    out_bytes: int | None  # activation bytes of all outputs, None when any shape is unknown
    category: str


@dataclass(frozen=True)
class Edge:
    """A tensor flowing from one node to another."""

    src: str
    dst: str
    tensor: str


@dataclass
class ModelGraph:
    """A validated model and its graph.

    ``model`` is the normalised model every transform starts from: nodes sorted and named, Constant
    weights as initializers, value_info inferred from the file's own input dims (so exports keep a
    dynamic batch). The shapes inferred for the given input shapes live in ``tensors``.
    """

    path: Path | None
    model: onnx.ModelProto
    sha256: str
    opset: int
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    nodes: list[Node]
    edges: list[Edge]
    tensors: dict[str, TensorInfo]
    input_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def node(self, name: str) -> Node:
        """The node called ``name``; SettingsError when there is none."""
        for n in self.nodes:
            if n.name == name:
                return n
        raise SettingsError(f"{self.label}: no node named {name!r}")

    @property
    def layers(self) -> list[Node]:
        """The tunable nodes, in topological order."""
        return [n for n in self.nodes if n.tunable]

    @property
    def label(self) -> str:
        """How messages name this model."""
        return str(self.path) if self.path else self.model.graph.name or "<model>"

    @property
    def total_macs(self) -> int | None:
        """Sum of MACs, None when any node's MACs are unknown."""
        values = [n.macs for n in self.nodes]
        return None if any(v is None for v in values) else sum(values)  # type: ignore[misc]

    @property
    def total_params(self) -> int:
        """Parameters in all initializers (each counted once, even when shared)."""
        return sum(int(np.prod(t.dims, dtype=np.int64)) for t in self.model.graph.initializer)

    @property
    def total_weight_bytes(self) -> int:
        """Bytes of all initializers."""
        return sum(_initializer_nbytes(t) for t in self.model.graph.initializer)


def parse_input_shape(text: str) -> tuple[str, tuple[int, ...]]:
    """Parse ``name=1x3x48x320`` (as given on the command line) into a name and a shape."""
    name, sep, dims = text.partition("=")
    if not sep or not name:
        raise SettingsError(f"input shape {text!r}: expected NAME=DxDx..., e.g. x=1x3x48x320, or NAME=scalar")
    if dims.strip().lower() in ("", "scalar", "[]", "()"):
        return name, ()  # a rank-0 input (silero-vad's sample rate)
    try:
        shape = tuple(int(d) for d in dims.lower().split("x"))
    except ValueError:
        raise SettingsError(f"input shape {text!r}: dimensions must be whole numbers separated by 'x'") from None
    return name, check_dims(shape, f"input shape {text!r}")


def load_model(
    path: str | os.PathLike[str],
    input_shapes: Mapping[str, Sequence[int]] | None = None,
) -> ModelGraph:
    """Read, validate and describe the ONNX file at ``path`` (external data next to it is loaded too)."""
    path = Path(path)
    if not path.exists():
        raise ModelError(f"{path}: no such file")
    if path.is_dir():
        raise ModelError(f"{path}: is a directory, not an ONNX file")
    data = path.read_bytes()
    if not data:
        raise ModelError(f"{path}: file is empty")
    try:
        model = onnx.load_model_from_string(data)
    except (DecodeError, RuntimeWarning, ValueError) as exc:  # UnicodeDecodeError is a ValueError
        raise ModelError(f"{path}: not an ONNX model or truncated ({_first_line(exc)})") from None
    if not model.HasField("graph") or model.ir_version == 0:
        raise ModelError(f"{path}: not an ONNX model (no graph or IR version)")
    check_external_data(model, path.parent, str(path))
    try:
        onnx.external_data_helper.load_external_data_for_model(model, str(path.parent))
    except (OSError, ValueError, onnx.checker.ValidationError) as exc:
        raise ModelError(f"{path}: external data missing or unreadable ({_first_line(exc)})") from None
    sha256 = hashlib.sha256(data).hexdigest()
    graph = build_graph(model, input_shapes, path=path, sha256=sha256)
    check_runnable(model, str(path), sha256=sha256, input_shapes=graph.input_shapes, macs=graph.total_macs)
    return graph


def build_graph(
    model: onnx.ModelProto,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    *,
    path: Path | None = None,
    sha256: str | None = None,
) -> ModelGraph:
    """Validate ``model`` (a copy is kept; the caller's proto is not changed) and build its graph."""
    label = str(path) if path else (model.graph.name or "<model>")
    model = _copy(model)
    if len(model.graph.node) == 0:
        raise ModelError(f"{label}: the graph has no nodes")
    check_structure(model, label)
    _name_nodes(model.graph)
    order = topological_order(model.graph, label)
    sorted_nodes = [model.graph.node[i] for i in order]
    del model.graph.node[:]
    model.graph.node.extend(sorted_nodes)
    try:
        onnx.checker.check_model(model)
    except (onnx.checker.ValidationError, UnicodeDecodeError) as exc:  # names that are not UTF-8: a corrupt file
        raise ModelError(f"{label}: invalid ONNX model ({_first_line(exc)})") from None

    _constants_to_initializers(model.graph)
    model, _ = fold_constants(model, label)  # computed weights become initializers: their layers count
    shapes = {k: check_dims(tuple(v), f"{label}: input {k!r}") for k, v in (input_shapes or {}).items()}
    # The model keeps shapes inferred from its own (possibly symbolic) inputs, so transforms see
    # channel and spatial sizes while exports keep a dynamic batch; the given input shapes only
    # make the described tensors concrete.
    model, tensors = infer_shapes(model, label)
    if shapes:
        shaped = _copy(model)
        apply_input_shapes(shaped, shapes, label)
        _, tensors = infer_shapes(shaped, label)
        tensors = _complete_by_run(shaped, tensors, label)
    inits = {t.name: t for t in model.graph.initializer}
    check_input_sizes({i.name: tensors[i.name].shape for i in model.graph.input if i.name in tensors and i.name not in inits}, label)
    const_outputs = {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    producers = {o: n.name for n in model.graph.node for o in n.output if o}
    nodes = [_describe(i, n, tensors, inits, const_outputs) for i, n in enumerate(model.graph.node)]
    edges = [
        Edge(producers[t], n.name, t)
        for n in model.graph.node
        for t in dict.fromkeys(all_inputs(n))
        if t in producers and producers[t] != n.name
    ]
    graph_inputs = [tensors.get(i.name, TensorInfo(i.name, None, None)) for i in model.graph.input if i.name not in inits]
    return ModelGraph(
        path=path,
        model=model,
        sha256=sha256 or hashlib.sha256(model.SerializeToString()).hexdigest(),
        opset=_default_opset(model),
        inputs=graph_inputs,
        outputs=[tensors.get(o.name, TensorInfo(o.name, None, None)) for o in model.graph.output],
        nodes=nodes,
        edges=edges,
        tensors=tensors,
        input_shapes=shapes,
    )


def upgrade_opset(model: onnx.ModelProto, minimum: int = 13) -> onnx.ModelProto:
    """Return ``model`` converted to the default-domain opset ``minimum`` when it is older.

    Per-channel DequantizeLinear needs opset >= 13, so quantization converts old models first.
    """
    current = _default_opset(model)
    if current >= minimum:
        return model
    try:
        converted = onnx.version_converter.convert_version(model, minimum)
    except Exception as exc:
        raise ModelError(f"{model.graph.name or '<model>'}: cannot convert opset {current} to {minimum} ({_first_line(exc)})") from None
    logger.info("converted opset %d -> %d", current, minimum)
    return converted


# --- helpers -------------------------------------------------------------------------------


def _first_line(exc: BaseException) -> str:
    return one_line(exc)


def _complete_by_run(model: onnx.ModelProto, tensors: dict[str, TensorInfo], label: str) -> dict[str, TensorInfo]:
    """``tensors`` with the shapes neither inference computed taken from one fp32 run at the concrete
    input shapes (generated feeds, as timing without an evaluator uses): apply's int8 needs every
    layer's input shape, and tune and the sweep offer only what apply can do."""
    unknown = unknown_tensors(model, tensors)
    inits = {t.name for t in model.graph.initializer}
    inputs = [tensors.get(i.name, TensorInfo(i.name, None, None)) for i in model.graph.input if i.name not in inits]
    if not unknown or any(t.shape is None or not all(isinstance(d, int) for d in t.shape) for t in inputs):
        return tensors
    try:
        feeds = generated_feeds(model, inputs, label)
    except Exception as exc:  # an input ORT could not be fed: the shapes stay unknown, as inference left them
        logger.info("%s: no feeds to record shapes (%s)", label, _first_line(exc))
        return tensors
    observed = observed_shapes(model, feeds, unknown, label)
    logger.info("%s: %d of %d unknown shape(s) recorded from one fp32 run", label, len(observed), len(unknown))
    return {**tensors, **observed}


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    return copy


def _default_opset(model: onnx.ModelProto) -> int:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    return 0


def _name_nodes(graph: onnx.GraphProto) -> None:
    """Give unnamed (or duplicate-named) nodes stable names: plans and sessions key layers by name."""
    seen: set[str] = set()
    for i, n in enumerate(graph.node):
        if not n.name or n.name in seen:
            base = f"{n.op_type}_{i}" if not n.name else f"{n.name}_{i}"
            name = base
            while name in seen:
                name += "_"
            n.name = name
        seen.add(n.name)


def _constants_to_initializers(graph: onnx.GraphProto) -> None:
    """Turn Constant nodes that hold a tensor into initializers.

    Exporters such as paddle2onnx store every weight as a Constant node; ONNX Runtime's quantizer and
    LayerLab's transforms look for weights among the initializers, and the view has no use for them.
    """
    keep = []
    for n in graph.node:
        value = next((a for a in n.attribute if a.name == "value" and a.type == onnx.AttributeProto.TENSOR), None)
        if n.op_type == "Constant" and value is not None and len(n.attribute) == 1:
            tensor = onnx.TensorProto()
            tensor.CopyFrom(value.t)
            tensor.name = n.output[0]
            graph.initializer.append(tensor)
        else:
            keep.append(n)
    if len(keep) != len(graph.node):
        del graph.node[:]
        graph.node.extend(keep)


def _initializer_nbytes(t: onnx.TensorProto) -> int:
    count = int(np.prod(t.dims, dtype=np.int64))
    try:
        return count * np.dtype(helper.tensor_dtype_to_np_dtype(t.data_type)).itemsize
    except (KeyError, TypeError):
        return count


def _describe(
    index: int,
    n: onnx.NodeProto,
    tensors: Mapping[str, TensorInfo],
    inits: Mapping[str, onnx.TensorProto],
    const_outputs: set[str],
) -> Node:
    facts = op_facts(n.op_type)
    attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute if a.type != onnx.AttributeProto.GRAPH}
    attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in attrs.items()}
    weights = tuple(t for t in n.input if t in inits)
    in_shapes = [tensors[t].shape if t in tensors else None for t in n.input]
    out_infos = [tensors.get(t) for t in n.output]
    out_shapes = tuple(i.shape if i else None for i in out_infos)
    out_sizes = [i.nbytes if i else None for i in out_infos]
    tunable = False
    if facts.tunable:
        # A layer needs a constant weight; MatMul may carry it on either side.
        candidates = [facts.weight_input] if n.op_type != "MatMul" else [0, 1]
        tunable = any(
            c is not None and c < len(n.input) and (n.input[c] in inits or n.input[c] in const_outputs)
            for c in candidates
        )
    return Node(
        name=n.name,
        op_type=n.op_type,
        index=index,
        inputs=tuple(n.input),
        outputs=tuple(n.output),
        attributes=attrs,
        tunable=tunable,
        weights=weights,
        macs=count_macs(n.op_type, in_shapes, list(out_shapes), attrs),
        params=sum(int(np.prod(inits[t].dims, dtype=np.int64)) for t in weights),
        weight_bytes=sum(_initializer_nbytes(inits[t]) for t in weights),
        out_shapes=out_shapes,
        out_bytes=None if any(s is None for s in out_sizes) else sum(out_sizes),  # type: ignore[misc]
        category=facts.category,
    )

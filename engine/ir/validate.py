"""Refuse at load, with the reason, models that ONNX Runtime cannot run.

``onnx.checker`` accepts many models that fail later (stride 0, weights of the wrong dtype, opset 99,
an op from an unknown domain), so the file is also handed to ONNX Runtime: creating an inference
session with every optimization off runs ORT's own type and shape checks and kernel creation,
cheaply, because large weights are replaced by graph inputs of the same type and shape for that
check. Checks that ORT leaves to run time (a Conv whose weight does not fit its input, a Reshape to
the wrong size) are caught by one run on zero inputs, done only when it is cheap and cannot steer
control flow: every input float with known dims, small weights and few MACs. What no library checks
(external data outside the model's folder, NaN weights, dims no machine can allocate, a graph with
no outputs) is checked here by hand. Every problem is a ``ModelError`` of one line.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper

from engine.errors import ModelError, SettingsError, one_line

__all__ = [
    "MAX_DIM",
    "MAX_ELEMENTS",
    "check_dims",
    "check_input_sizes",
    "check_external_data",
    "check_structure",
    "check_runnable",
    "one_line",
]

logger = logging.getLogger(__name__)

# Largest dim LayerLab accepts: ORT indexes tensors with int64 element counts, and no CPU holds a
# tensor with a dim beyond 2^31 - 1 anyway; bigger numbers are typos or hostile files.
MAX_DIM = 2**31 - 1
# Largest graph input LayerLab builds feeds for: 2^31 elements (8 GiB of float32); more is a typo.
MAX_ELEMENTS = 2**31
_STRIP_BYTES = 1 << 16  # weights above this become graph inputs for the session check
_DRY_RUN_WEIGHT_BYTES = 64 << 20
_DRY_RUN_MACS = 2 * 10**9
_DRY_RUN_INPUT_BYTES = 64 << 20
_checked: dict[tuple[str, tuple], None] = {}  # (sha256, shapes) already proven runnable in this process


def _name(text: str) -> str:
    """A node or tensor name as messages show it: quoted, escaped, and short."""
    return repr(text if len(text) <= 80 else text[:79] + "…")


def check_dims(shape: Sequence[object], what: str) -> tuple[int, ...]:
    """``shape`` as ints, each 1..MAX_DIM; SettingsError naming ``what`` otherwise."""
    dims = []
    for d in shape:
        if isinstance(d, bool) or not isinstance(d, (int, np.integer)):
            raise SettingsError(f"{what}: dimension {d!r} is not a whole number")
        if d <= 0:
            raise SettingsError(f"{what}: dimensions must be positive, got {d}")
        if d > MAX_DIM:
            raise SettingsError(f"{what}: dimension {d} is beyond {MAX_DIM} (2^31 - 1)")
        dims.append(int(d))
    return tuple(dims)


def check_input_sizes(shapes: Mapping[str, Sequence[object] | None], label: str) -> None:
    """Every concrete input shape within MAX_ELEMENTS elements; SettingsError naming the input otherwise."""
    for name, shape in shapes.items():
        if shape is None or not all(isinstance(d, int) for d in shape):
            continue
        count = int(np.prod([float(d) for d in shape]))
        if count > MAX_ELEMENTS:
            raise SettingsError(f"{label}: input {_name(name)} would hold {count:.3g} elements, beyond {MAX_ELEMENTS:.3g}")


def check_external_data(model: onnx.ModelProto, folder: Path, label: str) -> None:
    """Every external tensor must be a regular file inside ``folder`` with its bytes really there.

    Checked before onnx reads anything, so a hostile location never makes LayerLab open a file
    outside the model's folder.
    """
    root = folder.resolve()
    for tensor in _external_tensors(model):
        info = {e.key: e.value for e in tensor.external_data}
        location = info.get("location", "")
        where = f"{label}: external data of {_name(tensor.name)}"
        if not location or Path(location).is_absolute() or Path(location).drive:
            raise ModelError(f"{where}: location {location!r} must be a file name relative to the model")
        target = (root / location).resolve()
        if root != target and root not in target.parents:
            raise ModelError(f"{where}: location {location!r} points outside the model's folder")
        if not target.is_file():
            raise ModelError(f"{where}: file {location!r} is missing or not a file")
        try:
            offset = int(info.get("offset", 0))
            length = int(info["length"]) if "length" in info else None
        except ValueError:
            raise ModelError(f"{where}: offset or length is not a number") from None
        size = target.stat().st_size
        if offset < 0 or (length is not None and length < 0):
            raise ModelError(f"{where}: negative offset or length")
        if offset > size or (length is not None and offset + length > size):
            raise ModelError(f"{where}: offset {offset} + length {length} runs past the end of {location!r} ({size} bytes)")
        needed = _tensor_bytes(tensor)
        available = length if length is not None else size - offset
        if needed is not None and available < needed:
            raise ModelError(f"{where}: {available} bytes at offset {offset} of {location!r}, the tensor needs {needed}")


def _tensor_bytes(tensor: onnx.TensorProto) -> int | None:
    try:
        itemsize = np.dtype(helper.tensor_dtype_to_np_dtype(tensor.data_type)).itemsize
    except (KeyError, TypeError, ValueError):
        return None
    return int(np.prod(tensor.dims, dtype=np.float64)) * itemsize


def _external_tensors(model: onnx.ModelProto) -> Iterable[onnx.TensorProto]:
    for t in model.graph.initializer:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            yield t
    for n in model.graph.node:
        for a in n.attribute:
            if a.type == onnx.AttributeProto.TENSOR and a.t.data_location == onnx.TensorProto.EXTERNAL:
                yield a.t


def check_structure(model: onnx.ModelProto, label: str) -> None:
    """What the graph must have before anything else reads it: outputs, unique names, no dangling edges,
    allocatable dims and finite weights."""
    graph = model.graph
    if len(graph.output) == 0:
        raise ModelError(f"{label}: the graph has no outputs")
    defined: dict[str, str] = {}
    for kind, names in (
        ("graph input", [i.name for i in graph.input]),
        ("initializer", [t.name for t in graph.initializer]),
    ):
        seen: set[str] = set()
        for name in names:
            if name in seen:
                raise ModelError(f"{label}: two {kind}s are named {_name(name)}")
            seen.add(name)
    defined.update({i.name: "input" for i in graph.input})
    defined.update({t.name: "initializer" for t in graph.initializer})
    for n in graph.node:
        for o in n.output:
            if o and o in defined:
                raise ModelError(f"{label}: tensor {_name(o)} is written twice (by node {_name(n.name or n.op_type)} and an earlier definition)")
            if o:
                defined[o] = "node"
    for n in graph.node:
        for t in n.input:
            if t and t not in defined:
                raise ModelError(f"{label}: node {_name(n.name or n.op_type)} reads {_name(t)}, which no node, input or initializer provides")
    for o in graph.output:
        if o.name not in defined:
            raise ModelError(f"{label}: graph output {_name(o.name)} is not produced by any node")
    _check_kernels(graph, label)
    inits = {t.name for t in graph.initializer}
    for vi in graph.input:
        if vi.name in inits or not vi.type.HasField("tensor_type"):
            continue
        for i, d in enumerate(vi.type.tensor_type.shape.dim):
            if d.HasField("dim_value") and (d.dim_value < -1 or d.dim_value > MAX_DIM):
                raise ModelError(f"{label}: input {_name(vi.name)} dim {i} is {d.dim_value}, outside -1..{MAX_DIM}")
    for t in graph.initializer:
        _check_finite(t, label)


def _check_kernels(graph: onnx.GraphProto, label: str) -> None:
    """A Conv's kernel_shape must match its constant weight: ORT checks it only when the node runs."""
    weights = {t.name: tuple(t.dims) for t in graph.initializer}
    for n in graph.node:
        if n.op_type not in ("Conv", "ConvTranspose") or len(n.input) < 2 or n.input[1] not in weights:
            continue
        kernel = next((list(a.ints) for a in n.attribute if a.name == "kernel_shape"), None)
        spatial = list(weights[n.input[1]][2:])
        if kernel is not None and kernel != spatial:
            raise ModelError(
                f"{label}: node {_name(n.name or n.op_type)}: kernel_shape {kernel} does not match its weight's {spatial}"
            )


def _check_finite(t: onnx.TensorProto, label: str) -> None:
    if t.data_location == onnx.TensorProto.EXTERNAL or t.data_type not in _FLOAT_TYPES:
        return
    try:
        arr = numpy_helper.to_array(t)
    except Exception as exc:  # data that does not match the dims: onnx.checker says which
        raise ModelError(f"{label}: initializer {_name(t.name)} is unreadable ({one_line(exc)})") from None
    with np.errstate(invalid="ignore"):
        bad = int(np.isnan(arr).sum())
    if bad:
        raise ModelError(f"{label}: initializer {_name(t.name)} holds {bad} NaN value{'s' * (bad != 1)}")


_FLOAT_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16}


def check_runnable(
    model: onnx.ModelProto,
    label: str,
    *,
    sha256: str,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    macs: int | None = None,
) -> None:
    """ONNX Runtime creates a session for ``model`` (and runs it once when cheap); ModelError with ORT's reason otherwise."""
    key = (sha256, tuple(sorted((k, tuple(v)) for k, v in (input_shapes or {}).items())))
    if key in _checked:
        return
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 4  # the reason goes into our one line, not ORT's log on stderr
    options.intra_op_num_threads = 1
    light = _strip_weights(model)
    try:
        ort.InferenceSession(light.SerializeToString(), options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ModelError(f"{label}: ONNX Runtime cannot load it ({_ort_reason(exc)})") from None
    feeds = _dry_run_feeds(model, input_shapes or {}, macs)
    if feeds is not None:
        try:
            session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
            with np.errstate(all="ignore"):
                session.run(None, feeds)
        except Exception as exc:
            raise ModelError(f"{label}: ONNX Runtime cannot run it ({_ort_reason(exc)})") from None
    _checked[key] = None


def _ort_reason(exc: BaseException) -> str:
    """ORT's message as one short line: without its status prefixes, source locations and C++ signatures."""
    text = " ".join(str(exc).splitlines())  # a node name with a newline must not cut the reason off
    text = text.split("Status Message: ", 1)[-1]
    text = text.rsplit(" failed:", 1)[-1] if "Load model" in text else text
    text = re.sub(r"^(\s*\[ONNXRuntimeError\])?\s*(: )?\d+ : [A-Z_]+ : ", "", text)
    text = text.replace("This is an invalid model. ", "")
    text = re.sub(r"\S+\.(?:h|cc|cpp):\d+ [^()]*\(.*?\)(?: const)? ", "", text)  # file:line signature(...)
    text = re.sub(r"\S{81,}", lambda m: m[0][:40] + "…" + m[0][-20:], text)  # very long names
    return one_line(text.strip())


def _strip_weights(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy whose large initializers are graph inputs of the same dtype and shape: the same checks, no weight copies."""
    light = onnx.ModelProto()
    if any(_big(t) for t in model.graph.initializer):
        _copy_without_big(model, light)
    else:
        light.CopyFrom(model)
    return light


def _big(t: onnx.TensorProto) -> bool:
    return t.ByteSize() > _STRIP_BYTES


def _copy_without_big(model: onnx.ModelProto, out: onnx.ModelProto) -> None:
    kept = [t for t in model.graph.initializer if not _big(t)]
    big = [t for t in model.graph.initializer if _big(t)]
    graph = onnx.GraphProto()
    for field in ("node", "input", "output", "value_info", "sparse_initializer", "quantization_annotation", "metadata_props"):
        getattr(graph, field).extend(getattr(model.graph, field))
    graph.name = model.graph.name
    graph.initializer.extend(kept)
    declared = {i.name for i in graph.input}
    for t in big:
        if t.name not in declared:
            graph.input.append(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
    for field in ("ir_version", "producer_name", "producer_version", "domain", "model_version", "doc_string"):
        setattr(out, field, getattr(model, field))
    out.opset_import.extend(model.opset_import)
    out.functions.extend(model.functions)
    out.graph.CopyFrom(graph)


def _dry_run_feeds(
    model: onnx.ModelProto, input_shapes: Mapping[str, Sequence[int]], macs: int | None
) -> dict[str, np.ndarray] | None:
    """Zero inputs when one run is cheap and cannot steer control flow; None otherwise."""
    inits = {t.name for t in model.graph.initializer}
    weight_bytes = sum(len(t.raw_data) or 4 * len(t.float_data) for t in model.graph.initializer)
    if macs is None or macs > _DRY_RUN_MACS or weight_bytes > _DRY_RUN_WEIGHT_BYTES:
        return None
    feeds: dict[str, np.ndarray] = {}
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        tt = vi.type.tensor_type
        if tt.elem_type not in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE):
            return None  # integer and boolean inputs may select branches or index tables: zeros prove nothing
        shape = input_shapes.get(vi.name) or [d.dim_value if d.HasField("dim_value") else 0 for d in tt.shape.dim]
        if any(int(d) <= 0 for d in shape):
            return None
        dtype = helper.tensor_dtype_to_np_dtype(tt.elem_type)
        if int(np.prod(shape, dtype=np.float64)) * np.dtype(dtype).itemsize > _DRY_RUN_INPUT_BYTES:
            return None
        feeds[vi.name] = np.zeros([int(d) for d in shape], dtype)
    return feeds


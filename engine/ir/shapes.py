"""Shapes and dtypes of every tensor: ONNX's shape inference completed by ONNX Runtime's symbolic one,
and, once the input shapes are concrete, by one run of the model.

Split from ``engine.ir.graph`` so the graph module stays about nodes and edges. Everything here is
best effort: what cannot be computed is ``None`` (unknown), never an error. Exporters compute
Reshape targets at run time in ways both inferences give up on (Paddle's ``Shape -> Cast -> Slice ->
Cast -> Concat(axis=-1)``: ORT's symbolic inference asserts ``axis == 0``), so
:func:`observed_shapes` records what one fp32 run actually produces.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper, shape_inference

from engine.errors import SettingsError
from engine.ir.ops import Shape

__all__ = ["TensorInfo", "apply_input_shapes", "infer_shapes", "observed_shapes", "session_with_outputs", "tensor_infos", "unknown_tensors"]

logger = logging.getLogger(__name__)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


@dataclass(frozen=True)
class TensorInfo:
    """A value in the graph: dtype name (numpy spelling) and shape (None when unknown)."""

    name: str
    dtype: str | None
    shape: Shape | None

    @property
    def nbytes(self) -> int | None:
        """Bytes of the tensor when dtype and every dim are known."""
        if self.dtype is None or self.shape is None or any(not isinstance(d, int) for d in self.shape):
            return None
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize


def apply_input_shapes(model: onnx.ModelProto, shapes: Mapping[str, tuple[int, ...]], label: str) -> None:
    """Fix the dims of the named graph inputs; SettingsError for unknown names, wrong rank or fixed dims."""
    inputs = {i.name: i for i in model.graph.input}
    # Shapes inferred (or exported) for the old input dims would win over the new ones: infer afresh.
    del model.graph.value_info[:]
    for out in model.graph.output:  # an exported -1 would clash with the size now inferred
        for d in out.type.tensor_type.shape.dim:
            if d.HasField("dim_value") and d.dim_value <= 0:
                d.Clear()
    for name, shape in shapes.items():
        if name not in inputs:
            known = ", ".join(i for i in inputs if i not in {t.name for t in model.graph.initializer})
            raise SettingsError(f"{label}: no input named {name!r} (inputs: {known})")
        tensor_type = inputs[name].type.tensor_type
        old = tensor_type.shape.dim
        if tensor_type.HasField("shape") and len(old) != len(shape):
            raise SettingsError(f"{label}: input {name!r} has rank {len(old)}, got shape {'x'.join(map(str, shape))}")
        for i, d in enumerate(old):
            # Paddle exports write -1 (some 0) for a dynamic dim: only a positive value is fixed.
            if d.HasField("dim_value") and d.dim_value > 0 and d.dim_value != shape[i]:
                raise SettingsError(f"{label}: input {name!r} dim {i} is fixed at {d.dim_value}, got {shape[i]}")
        tensor_type.shape.Clear()
        for d in shape:
            tensor_type.shape.dim.add().dim_value = d


def infer_shapes(model: onnx.ModelProto, label: str) -> tuple[onnx.ModelProto, dict[str, TensorInfo]]:
    """Shapes from ONNX's inference, completed by ONNX Runtime's symbolic inference.

    ONNX's data propagation stops at Shape -> Cast -> Slice -> Reshape chains that exporters emit;
    ORT's symbolic inference follows them. Each tensor keeps whichever answer knows more dims.
    Both are best effort: what neither can compute stays unknown.
    """
    try:
        inferred = shape_inference.infer_shapes(model, data_prop=True)
    except Exception as exc:
        logger.warning("%s: ONNX shape inference failed (%s)", label, _first_line(exc))
        inferred = model
    tensors = tensor_infos(inferred)
    try:
        from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

        symbolic = _symbolic(SymbolicShapeInference, model)
    except Exception as exc:
        logger.info("%s: symbolic shape inference failed (%s)", label, _first_line(exc))
        symbolic = None
    if symbolic is not None:
        for name, info in tensor_infos(symbolic).items():
            old = tensors.get(name)
            if old is None or _known_dims(info.shape) > _known_dims(old.shape):
                tensors[name] = TensorInfo(name, info.dtype or (old.dtype if old else None), info.shape)
        _write_value_infos(inferred, tensors)
    return inferred, tensors


def unknown_tensors(model: onnx.ModelProto, tensors: Mapping[str, TensorInfo]) -> list[str]:
    """Tensors the top-level nodes read or write whose dtype or any dim is not known, in graph order."""
    inits = {t.name for t in model.graph.initializer}
    names = dict.fromkeys(t for n in model.graph.node for t in (*n.input, *n.output) if t and t not in inits)
    return [t for t in names if not _concrete(tensors.get(t))]


def _concrete(info: TensorInfo | None) -> bool:
    return info is not None and info.dtype is not None and info.shape is not None and all(isinstance(d, int) for d in info.shape)


def session_with_outputs(model: onnx.ModelProto, outputs: Iterable[str], *, optimize: bool = True):  # -> onnxruntime.InferenceSession
    """A CPU session of ``model`` that also outputs ``outputs`` (``optimize=False``: no graph optimizations)."""
    import onnxruntime as ort

    extended = onnx.ModelProto()
    extended.CopyFrom(model)
    have = {o.name for o in extended.graph.output}
    extended.graph.output.extend(onnx.ValueInfoProto(name=t) for t in dict.fromkeys(outputs) if t not in have)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(extended.SerializeToString(), options, providers=["CPUExecutionProvider"])


def observed_shapes(model: onnx.ModelProto, feeds: Mapping[str, np.ndarray], names: Sequence[str],
                    label: str) -> dict[str, TensorInfo]:
    """Dtype and shape of ``names`` as one fp32 run of ``model`` on ``feeds`` produces them.

    Best effort like the inferences: when ONNX Runtime cannot load or run the model (feeds it refuses,
    a tensor it cannot output), the answer is empty and the shapes stay unknown."""
    if not names:
        return {}
    try:
        session = session_with_outputs(model, names, optimize=False)
        wanted = [o.name for o in session.get_outputs() if o.name in set(names)]
        with np.errstate(all="ignore"):
            values = session.run(wanted, dict(feeds))
    except Exception as exc:
        logger.info("%s: the run to record %d unknown shape(s) failed (%s)", label, len(names), _first_line(exc))
        return {}
    return {n: TensorInfo(n, np.asarray(v).dtype.name, tuple(int(d) for d in np.shape(v))) for n, v in zip(wanted, values)}


def _symbolic(cls: type, model: onnx.ModelProto) -> onnx.ModelProto | None:
    """``SymbolicShapeInference.infer_shapes`` without its side effect: when inference is incomplete it
    saves ``sym_shape_infer_temp.onnx`` into the working folder; here incomplete just means None."""
    if not any(i.domain in ("", "ai.onnx") and i.version >= 7 for i in model.opset_import):
        return None  # ORT's inference supports opset 7 and above
    inference = cls(2**31 - 1, True, False, 0)  # int_max, auto_merge, guess_output_rank, verbose
    inference._preprocess(model)
    complete = False
    while inference.run_:
        complete = inference._infer_impl()
    inference._update_output_from_vi()
    return inference.out_mp_ if complete else None


def _known_dims(shape: Shape | None) -> int:
    return -1 if shape is None else sum(isinstance(d, int) for d in shape)


def _write_value_infos(model: onnx.ModelProto, tensors: Mapping[str, TensorInfo]) -> None:
    """Record the merged shapes in the model so later passes (quantization, profiling) see them."""
    graph_io = {v.name for v in model.graph.input} | {v.name for v in model.graph.output}
    graph_io |= {t.name for t in model.graph.initializer}
    del model.graph.value_info[:]
    for out in model.graph.output:  # an exported -1 would clash with the size now inferred
        for d in out.type.tensor_type.shape.dim:
            if d.HasField("dim_value") and d.dim_value <= 0:
                d.Clear()
    for name, info in tensors.items():
        if name in graph_io or info.dtype is None or info.shape is None:
            continue
        elem = helper.np_dtype_to_tensor_dtype(np.dtype(info.dtype))
        model.graph.value_info.append(helper.make_tensor_value_info(name, elem, list(info.shape)))


def _shape_of(value_type: onnx.TypeProto) -> tuple[str | None, Shape | None]:
    if not value_type.HasField("tensor_type"):
        return None, None
    tt = value_type.tensor_type
    dtype = None
    if tt.elem_type:
        try:
            dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tt.elem_type)).name
        except (KeyError, TypeError):
            dtype = None
    if not tt.HasField("shape"):
        return dtype, None
    dims: list[int | str | None] = []
    for d in tt.shape.dim:
        if d.HasField("dim_value"):
            dims.append(int(d.dim_value) if d.dim_value > 0 else None)  # -1 (Paddle) is dynamic, not a size
        elif d.HasField("dim_param") and d.dim_param.isidentifier():
            dims.append(d.dim_param)  # a named symbol such as "batch"; expressions count as unknown
        else:
            dims.append(None)
    return dtype, tuple(dims)


def tensor_infos(model: onnx.ModelProto) -> dict[str, TensorInfo]:
    """Dtype and shape of every initializer, value_info, graph input/output and Constant output."""
    infos: dict[str, TensorInfo] = {}
    for t in model.graph.initializer:
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(t.data_type)).name
        infos[t.name] = TensorInfo(t.name, dtype, tuple(int(d) for d in t.dims))
    for vi in list(model.graph.input) + list(model.graph.value_info) + list(model.graph.output):
        dtype, shape = _shape_of(vi.type)
        if vi.name not in infos or infos[vi.name].shape is None:
            infos[vi.name] = TensorInfo(vi.name, dtype, shape)
    for n in model.graph.node:
        if n.op_type == "Constant" and n.output:
            for attr in n.attribute:
                if attr.name == "value":
                    arr = numpy_helper.to_array(attr.t)
                    infos[n.output[0]] = TensorInfo(n.output[0], arr.dtype.name, tuple(arr.shape))
    return infos

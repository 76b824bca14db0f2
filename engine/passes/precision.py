"""Precision: int8 (static QDQ), int8_dynamic and fp16 for chosen layers, through the standard tools.

- int8: ``onnxruntime.quantization.quantize_static`` in QDQ format, uint8 activations, int8
  per-channel weights (the U8S8 pattern ORT's CPU kernels run fast), ``nodes_to_quantize`` = only
  the chosen layers, calibrated on the given samples. A chosen layer gets Q/DQ on its input
  activation and weight (and on its output, which its consumers then read through a DQ).
- ops int8 (the plan's ``"ops": "int8"``): every node that is not a layer joins ``nodes_to_quantize``
  too, so ORT quantizes the ops between layers as whole-model ``quantize_static`` does.
- int8_dynamic: ``quantize_dynamic`` for MatMul (a Gemm is first split into MatMul + Add, keeping
  the layer's name on the MatMul, since ORT has no dynamic Gemm).
- fp16: the chosen layers get fp16 weights with Casts at their borders (see ``engine.passes.fp16`` for why not
  onnxconverter-common's ``node_block_list``); the model's inputs and outputs stay fp32.

Models below opset 13 are converted first (per-channel DequantizeLinear needs 13). Node names of the
untouched layers stay as they were. ``quantize_whole_model`` is the ``ort-int8`` baseline: every
quantizable op with the same settings. ``unconverted`` names the layers a converter left in fp32.

Calibration: pass plain samples, or a ``CalibrationCache`` to build many int8 variants of one model
(the sensitivity sweep): it keeps the activation ranges of the first run so later variants skip
calibration and all share the same ranges. The ranges come from LayerLab's own activation pass
(``engine.passes.calibration``, linear in the graph size) and reach ``quantize_static`` as its
calibration cache file, so ORT's calibrator never rewrites the graph.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import helper

from engine.errors import SettingsError
from engine.passes.calibration import METHODS, RangeSet, collect_ranges, to_tensors_data
from engine.passes.gemm_matmul import gemm_to_matmul, restore_gemms
from engine.passes.base import PassResult, clone
from engine.passes.fp16 import fp16_layers
from engine.passes.int8_segments import cuttable, segmented_int8
from engine.progress import Progress, report, run

__all__ = [
    "ROUTINES",
    "SEGMENT_ABOVE",
    "Calibration",
    "CalibrationCache",
    "PrecisionPass",
    "prepare",
    "symmetric_ranges",
    "quantize_whole_model",
    "random_calibration",
    "tensor_methods",
    "unconverted",
]

logger = logging.getLogger(__name__)

#: Calibration samples: one dict of input name -> array per sample.
Calibration = Sequence[dict[str, np.ndarray]]
_MIN_OPSET = 13
#: The per-layer routines, each a keyword of PrecisionPass.
ROUTINES = ("int8", "int8_dynamic", "fp16")


class CalibrationCache:
    """Calibration samples plus the int8 activation ranges computed from them, per model.

    The first int8 run on a model calibrates every tensor of its quantizable ops (whatever the
    chosen layers) with LayerLab's own activation pass (``engine.passes.calibration``) and keeps the
    ranges; later runs on the same model reuse them. Models are told apart by a digest of their
    bytes; a method asked for later (percentile, entropy) is computed on top of those kept.
    """

    def __init__(self, samples: Calibration, methods: Sequence[str] = ("minmax",)) -> None:
        self.samples = list(samples)
        self.methods = tuple(methods)
        self._ranges: dict[str, RangeSet] = {}  # model digest -> ranges

    def __len__(self) -> int:
        return len(self.samples)

    def ranges(self, model: onnx.ModelProto, methods: Sequence[str] | None = None, *,
               digest: str | None = None) -> RangeSet:
        """The ranges of ``model`` (as the quantizer is given it) for ``methods``, computed once."""
        digest = digest or hashlib.sha256(model.SerializeToString()).hexdigest()
        wanted = tuple(dict.fromkeys(methods or self.methods))
        have = self._ranges.setdefault(digest, RangeSet())
        missing = [m for m in wanted if m not in have.ranges]
        if missing:
            # ORT's calibrator sees the model after its own shape inference: calibrate the same tensors.
            inferred = onnx.shape_inference.infer_shapes(model)
            have.ranges.update(collect_ranges(inferred, self.samples, missing).ranges)
        return have

    def ranges_for(self, model: onnx.ModelProto) -> RangeSet | None:
        """The ranges kept for ``model``, or None before its first int8 run."""
        return self._ranges.get(hashlib.sha256(model.SerializeToString()).hexdigest())


def random_calibration(model: onnx.ModelProto, count: int = 4, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Random-normal samples shaped like the model's inputs (symbolic dims become 1)."""
    rng = np.random.default_rng(seed)
    inits = {t.name for t in model.graph.initializer}
    samples: list[dict[str, np.ndarray]] = [{} for _ in range(count)]
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        tt = vi.type.tensor_type
        dtype = helper.tensor_dtype_to_np_dtype(tt.elem_type)
        shape = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else 1 for d in tt.shape.dim]
        for sample in samples:
            sample[vi.name] = rng.standard_normal(shape).astype(dtype)
    return samples


def _opset(model: onnx.ModelProto) -> int:
    return next((int(i.version) for i in model.opset_import if i.domain in ("", "ai.onnx")), 0)


def prepare(model: onnx.ModelProto) -> onnx.ModelProto:
    """Opset >= 13 and inferred shapes: the quantizer's preconditions."""
    from engine.ir.graph import upgrade_opset

    if _opset(model) < _MIN_OPSET:
        model = upgrade_opset(model, _MIN_OPSET)
    if not model.graph.value_info:
        try:
            model = onnx.shape_inference.infer_shapes(model)
        except Exception as exc:
            raise SettingsError(f"shapes cannot be inferred for quantization ({exc}); give concrete --input shapes") from None
    return model


#: Above this many nodes int8 goes window by window (``engine.passes.int8_segments``); at or below it the
#: whole model goes to ``quantize_static`` in one piece, as it always did.
SEGMENT_ABOVE = 1000


def _log_progress() -> Callable[[Progress], None]:
    """Log a long job's progress every two seconds (``layerlab -v`` shows it)."""
    last = [time.monotonic()]

    def show(p: Progress) -> None:
        report(p)  # to apply's progress line or the window's job (engine.progress.forwarding / in_thread)
        if time.monotonic() - last[0] >= 2.0 or p.done == p.total:
            last[0] = time.monotonic()
            logger.info("%s (%d/%d)", p.message, p.done, p.total)

    return show


# Logged on the root logger on every call: "Please consider pre-processing ..." and, with ops in int8,
# "Axis 1 is out-of-range for weight ..." (a rank-1 BatchNormalization weight; ORT falls back to per-tensor).
_ADVICE = ("Please ", "Axis ")


class _QuietQuantizer(logging.Filter):
    """Drops the quantizer's advice (``_ADVICE``) from the root logger while it runs."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name == "root" and str(record.msg).startswith(_ADVICE))


def _quiet(func):  # type: ignore[no-untyped-def]
    def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
        quiet = _QuietQuantizer()
        logging.getLogger().addFilter(quiet)
        try:
            return func(*args, **kwargs)
        finally:
            logging.getLogger().removeFilter(quiet)

    return wrapper


def tensor_methods(model: onnx.ModelProto, methods: Mapping[str, str]) -> dict[str, str]:
    """Tensor -> calibration method from layer -> method: the tensors a layer reads and writes; where a
    tensor is written by one chosen layer and read by another, the reader's method (its int8 input) wins."""
    by_name = {n.name: n for n in model.graph.node}
    choice: dict[str, str] = {}
    for side in ("output", "input"):
        for layer, method in methods.items():
            node = by_name.get(layer)
            if node is None:
                raise SettingsError(f"calibration: no node named {layer!r}")
            choice.update({t: method for t in getattr(node, side) if t})
    return choice


def symmetric_ranges(ranges: Mapping[str, tuple[np.ndarray, np.ndarray]], tensors: Iterable[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``ranges`` with each of ``tensors`` made (-m, m), m = max(|low|, |high|): ORT's quantizer then gives
    those uint8 activations zero point 128, as its ``ActivationSymmetric`` does, but per tensor (127 where
    m / scale rounds to just under 127.5 in float32: the same grid within float error)."""
    out = dict(ranges)
    for t in tensors:
        if t in out:
            low, high = out[t]
            m = np.maximum(np.abs(low), np.abs(high))
            out[t] = (-m, m)
    return out


@_quiet
def _static_int8(model: onnx.ModelProto, nodes: list[str] | None, samples: Calibration | CalibrationCache,
                 ranges: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
                 methods: Mapping[str, str] | None = None, symmetric: Iterable[str] = ()) -> onnx.ModelProto:
    """quantize_static with LayerLab's settings on precomputed ranges; ``ranges``: tensor -> (low, high) to
    use as they are, else the ranges of ``samples`` (computed once per model when a cache): MinMax, or
    for the layers ``methods`` names (layer -> calibration method) that method on the tensors they touch.
    ``symmetric``: layers whose tensors get symmetric ranges (``symmetric_ranges``)."""
    import onnxruntime
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    try:
        from onnxruntime.quantization.calibrate import save_tensors_data
    except ImportError:  # older builds (onnxruntime-openvino 1.24.1) cannot take precomputed ranges
        raise SettingsError(f"int8 needs the quantizer of a newer ONNX Runtime (this {onnxruntime.__version__} "
                            "lacks save_tensors_data); build int8 models where LayerLab's own ORT runs") from None

    # ORT's quantizer saves its input with external data and changes the proto it is given: hand it a file.
    with tempfile.TemporaryDirectory(prefix="layerlab-quant-") as tmp:
        src, dst, range_file = Path(tmp) / "in.onnx", Path(tmp) / "out.onnx", Path(tmp) / "ranges.json"
        data = model.SerializeToString()
        src.write_bytes(data)
        if ranges is None:
            cache = samples if isinstance(samples, CalibrationCache) else CalibrationCache(samples)
            wanted = ("minmax", *sorted(set((methods or {}).values())))
            ranges = cache.ranges(model, wanted, digest=hashlib.sha256(data).hexdigest()).pick(tensor_methods(model, methods or {}))
        symmetric = list(symmetric)
        if symmetric:
            ranges = symmetric_ranges(ranges, tensor_methods(model, {layer: "" for layer in symmetric}))
        if len(model.graph.node) > SEGMENT_ABOVE:
            inferred = onnx.shape_inference.infer_shapes(model)
            if cuttable(inferred):  # ORT's quantizer is quadratic in the node count: quantize in windows
                return run(segmented_int8(inferred, nodes, ranges), _log_progress())
        save_tensors_data(to_tensors_data(ranges), range_file)
        try:
            quantize_static(
                str(src), str(dst), None,
                quant_format=QuantFormat.QDQ,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                per_channel=True,
                nodes_to_quantize=nodes,
                calibrate_method=CalibrationMethod.MinMax,
                calibration_cache_path=str(range_file),
            )
        except Exception as exc:
            raise SettingsError(f"int8 quantization failed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from exc
        return onnx.load(str(dst))


@_quiet
def _dynamic_int8(model: onnx.ModelProto, nodes: list[str]) -> onnx.ModelProto:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory(prefix="layerlab-quant-") as tmp:
        src, dst = Path(tmp) / "in.onnx", Path(tmp) / "out.onnx"
        onnx.save(model, src)
        quantize_dynamic(str(src), str(dst), op_types_to_quantize=["MatMul"], nodes_to_quantize=nodes,
                         weight_type=QuantType.QInt8)
        result = restore_gemms(model, onnx.load(str(dst)))
    wanted = set(nodes)
    for n in result.graph.node:  # ORT names the integer MatMul "<layer>_quant": give the layer its name back
        if n.name.endswith("_quant") and n.name[: -len("_quant")] in wanted:
            n.name = n.name[: -len("_quant")]
    return result


def unconverted(model: onnx.ModelProto, names: Iterable[str], routine: str) -> list[str]:
    """The layers among ``names`` that still run in fp32 in ``model``, a PrecisionPass output for ``routine``.

    int8 and int8_dynamic: the layer is no integer MatMul and does not read both its data and its
    weight through a DequantizeLinear (a shared input may be dequantized for a neighbour). fp16: the
    layer reads no fp16 tensor.
    """
    if routine not in ROUTINES:
        raise SettingsError(f"routine {routine!r}: must be one of {', '.join(ROUTINES)}")
    wanted = set(names)
    producers = {o: n for n in model.graph.node for o in n.output}
    half = {t.name for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT16}
    half |= {n.output[0] for n in model.graph.node if n.op_type == "Cast" and _cast_to(n) == onnx.TensorProto.FLOAT16}
    missed = []
    for n in model.graph.node:
        if n.name not in wanted:
            continue
        if routine == "fp16":
            ok = any(t in half for t in n.input)
        else:
            ok = n.op_type in ("MatMulInteger", "DynamicQuantizeMatMul") or all(
                producers.get(t) is not None and producers[t].op_type == "DequantizeLinear" for t in n.input[:2] if t
            )
        if not ok:
            missed.append(n.name)
    return missed


def _cast_to(node: onnx.NodeProto) -> int:
    return next((int(a.i) for a in node.attribute if a.name == "to"), 0)


class PrecisionPass:
    """Set layers to int8 (static), int8_dynamic or fp16; every other layer keeps fp32.

    ``calibration``: samples for int8, or a ``CalibrationCache`` shared by passes on the same model.
    """

    def __init__(
        self,
        int8: Iterable[str] = (),
        int8_dynamic: Iterable[str] = (),
        fp16: Iterable[str] = (),
        calibration: Calibration | CalibrationCache | None = None,
        int8_ops_except: Iterable[str] | None = None,
        int8_calibration: Mapping[str, str] | None = None,
        int8_symmetric: Iterable[str] = (),
    ) -> None:
        self.int8 = sorted(set(int8))
        self.int8_dynamic = sorted(set(int8_dynamic))
        self.fp16 = sorted(set(fp16))
        overlap = (set(self.int8) & set(self.int8_dynamic)) | ((set(self.int8) | set(self.int8_dynamic)) & set(self.fp16))
        if overlap:
            raise SettingsError(f"layer {sorted(overlap)[0]!r} is given two precisions")
        self.calibration = calibration
        # layer -> calibration method (engine.passes.calibration.METHODS) for int8 layers; others MinMax
        self.int8_calibration = {k: v for k, v in (int8_calibration or {}).items() if v != "minmax"}
        self.int8_symmetric = sorted(set(int8_symmetric))  # int8 layers with symmetric activation ranges
        bad = sorted(set(self.int8_calibration.values()) - set(METHODS))
        if bad:
            raise SettingsError(f"calibration method {bad[0]!r}: must be one of {', '.join(METHODS)}")
        # int8_ops_except: the plan's "ops": "int8", given as the names of the layer nodes: every other node
        # (an op) goes to quantize_static too. None: ops stay fp32.
        self.layer_nodes = None if int8_ops_except is None else set(int8_ops_except)

    def _ops(self, model: onnx.ModelProto) -> list[str]:
        if self.layer_nodes is None:
            return []
        return [n.name for n in model.graph.node if n.name and n.name not in self.layer_nodes]

    def __call__(self, model: onnx.ModelProto) -> PassResult:
        if not (self.int8 or self.int8_dynamic or self.fp16 or self.layer_nodes is not None):
            return PassResult(model, False)
        notes: list[str] = []
        names = {n.name for n in model.graph.node}
        missing = sorted((set(self.int8) | set(self.int8_dynamic) | set(self.fp16)) - names)
        if missing:
            raise SettingsError(f"precision: no node named {missing[0]!r}")
        model = clone(model)
        ops = self._ops(model)
        if self.int8 or self.int8_dynamic or ops:
            if _opset(model) < _MIN_OPSET:
                notes.append(f"converted opset {_opset(model)} -> {_MIN_OPSET} for per-channel int8")
            model = prepare(model)
            ops = self._ops(model)  # after the opset conversion: its node list is the one quantized
        if self.int8 or ops:
            samples = self.calibration
            if not samples:
                samples = random_calibration(model)
                notes.append("int8 calibrated on random inputs: accuracy will suffer (give real samples with --calib)")
            methods = {k: v for k, v in self.int8_calibration.items() if k in set(self.int8)}
            symmetric = [k for k in self.int8_symmetric if k in set(self.int8)]
            model = _static_int8(model, self.int8 + ops, samples, methods=methods, symmetric=symmetric)
            missed = unconverted(model, self.int8, "int8")
            if missed:
                notes.append(f"ONNX Runtime left {len(missed)} int8 layer(s) in fp32: {', '.join(missed[:5])}")
        if self.int8_dynamic:
            gemms = {n.name for n in model.graph.node if n.op_type == "Gemm" and n.name in self.int8_dynamic}
            gemm_to_matmul(model, gemms)
            model = _dynamic_int8(model, self.int8_dynamic)
        if self.fp16:
            model = fp16_layers(model, set(self.fp16))
        return PassResult(model, True, notes)


def quantize_whole_model(model: onnx.ModelProto, calibration: Calibration | CalibrationCache | None = None) -> onnx.ModelProto:
    """Every quantizable op to int8 (QDQ, U8S8, per-channel): the ``ort-int8`` baseline."""
    model = prepare(clone(model))
    return _static_int8(model, None, calibration or random_calibration(model))


"""Activation ranges for int8 from LayerLab's own activation pass, handed to ONNX Runtime's QDQ quantizer.

ORT's calibrators rewrite the graph before they run it: ``MinMaxCalibrater.augment_graph`` inserts a
ReduceMin/ReduceMax/Reshape trio per tensor with ``insert_nodes``, a linear search and a list insert
each, which is quadratic in the node count (a valid 20,000-node chain never finishes). This module
leaves the graph as it is: it asks for the tensors to calibrate as extra *outputs* of one session
(chunked so that the activations of one chunk fit ``max_bytes``), runs the calibration samples, and
reduces each tensor in numpy:

- ``minmax``: ORT's MinMax, bit for bit (per-sample min/max of the whole tensor, then ``nanmin``/
  ``nanmax`` over samples, as float arrays of shape (1,)); the session runs with ORT's calibration
  settings (no graph optimization), so the values are those ORT's augmented model sees.
- ``percentile99.9`` / ``percentile99.99`` / ``percentile99.999``: ORT's ``HistogramCollector`` on the
  real values (2048 bins, asymmetric: a post-ReLU tensor keeps its 0 lower bound), the given percentile.
- ``entropy``: ORT's ``HistogramCollector`` (KL divergence, 128 bins as ORT's default).

The result is a ``RangeSet``: per method, tensor name -> (lowest, highest), computed once per
model and calibration set (``CalibrationCache`` keys them by the model's digest). ``to_tensors_data``
turns any per-tensor choice of methods into ORT's ``TensorsData``, which ``quantize_static`` reads
through its ``calibration_cache_path`` (the supported way to give it precomputed ranges; the method
label is MinMax because the quantizer uses only ``range_value`` whatever produced it).
"""

from __future__ import annotations

import contextlib
import io
import itertools
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto

from engine.errors import SettingsError
from engine.model.plan import CALIBRATIONS
from engine.progress import Job, Progress, report, run

__all__ = ["METHODS", "RangeSet", "calibration_tensors", "collect_ranges", "ranges_job", "to_tensors_data"]

logger = logging.getLogger(__name__)

METHODS = CALIBRATIONS  # the plan's names for them
_FLOATS = {TensorProto.FLOAT, TensorProto.FLOAT16}
_UNKNOWN_DIM = 1  # a symbolic dim, for the chunk size estimate only (batch-like dims are 1; a guess above 1 multiplies per dim)
_DEFAULT_MAX_BYTES = 512 << 20


@dataclass
class RangeSet:
    """Per calibration method, tensor name -> (lowest, highest) as float arrays of shape (1,)."""

    ranges: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = field(default_factory=dict)

    @property
    def methods(self) -> tuple[str, ...]:
        return tuple(self.ranges)

    def tensors(self) -> set[str]:
        return set(next(iter(self.ranges.values()), {}))

    def pick(self, choice: Mapping[str, str] | None = None, default: str = "minmax",
             only: Iterable[str] | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """One range per tensor: the method ``choice`` names for it, else ``default``; ``only``: these tensors."""
        choice = choice or {}
        names = self.tensors() if only is None else set(only) & self.tensors()
        out = {}
        for name in sorted(names):
            method = choice.get(name, default)
            if method not in self.ranges:
                raise SettingsError(f"calibration method {method!r} was not computed (have {', '.join(self.ranges)})")
            out[name] = self.ranges[method][name]
        return out


def calibration_tensors(model: onnx.ModelProto) -> list[str]:
    """The tensors ORT's calibrators calibrate (all op types): float inputs/outputs of nodes, no initializers."""
    graph = model.graph
    infos = {vi.name: vi for vi in graph.value_info}
    infos.update({o.name: o for o in graph.output})
    infos.update({i.name: i for i in graph.input})
    inits = {t.name for t in graph.initializer}
    out: dict[str, None] = {}
    for node in graph.node:
        for name in itertools.chain(node.input, node.output):
            vi = infos.get(name)
            if vi is not None and vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type in _FLOATS and name not in inits:
                out[name] = None
    return list(out)


def _nbytes(vi: onnx.ValueInfoProto) -> int:
    tt = vi.type.tensor_type
    size = 2 if tt.elem_type == TensorProto.FLOAT16 else 4
    for d in tt.shape.dim:
        size *= d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else _UNKNOWN_DIM
    return size


def _chunks(model: onnx.ModelProto, names: list[str], max_bytes: int) -> list[list[str]]:
    """``names`` in graph order, cut so each chunk's estimated activations stay under ``max_bytes``."""
    infos = {vi.name: vi for vi in list(model.graph.value_info) + list(model.graph.output) + list(model.graph.input)}
    chunks: list[list[str]] = [[]]
    used = 0
    for name in names:
        size = _nbytes(infos[name])
        if chunks[-1] and used + size > max_bytes:
            chunks.append([])
            used = 0
        chunks[-1].append(name)
        used += size
    return [c for c in chunks if c]


def _session(model: onnx.ModelProto, outputs: list[str]):  # -> onnxruntime.InferenceSession
    import onnxruntime as ort

    skip = {o.name for o in model.graph.output} | {i.name for i in model.graph.input}
    infos = {vi.name: vi for vi in model.graph.value_info}
    extended = onnx.ModelProto()
    extended.CopyFrom(model)
    extended.graph.output.extend(infos[t] for t in outputs if t not in skip and t in infos)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # as ORT's calibrators
    options.log_severity_level = 3
    return ort.InferenceSession(extended.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _histogram(method: str, values: dict[str, list[np.ndarray]]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    from onnxruntime.quantization.calibrate import HistogramCollector

    if method == "entropy":
        collector = HistogramCollector("entropy", False, 128, 128, None, None)
    else:
        collector = HistogramCollector("percentile", False, 2048, None, float(method[len("percentile"):]), None)
    # One flat array per tensor: what the collector makes of equal shapes, and it also takes samples
    # of different sizes (a text line's width), which np.asarray of the list would refuse.
    flat = {t: np.concatenate([v.reshape(-1) for v in arrays]) for t, arrays in values.items()}
    with contextlib.redirect_stdout(io.StringIO()):  # the collector prints its progress
        collector.collect(flat)
        result = collector.compute_collection_result()
    return {name: (np.asarray(r[0]).reshape(1), np.asarray(r[1]).reshape(1)) for name, r in result.items()}


def ranges_job(model: onnx.ModelProto, samples: Sequence[Mapping[str, np.ndarray]], methods: Sequence[str] = ("minmax",),
               max_bytes: int = _DEFAULT_MAX_BYTES) -> Job[RangeSet]:
    """Run ``samples`` through ``model`` (opset >= 13, shapes inferred) and reduce every calibration
    tensor with each method; Progress per chunk and sample."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise SettingsError(f"calibration method {unknown[0]!r}: must be one of {', '.join(METHODS)}")
    if not samples:
        raise SettingsError("calibration needs at least one sample")
    names = calibration_tensors(model)
    histograms = [m for m in methods if m != "minmax"]
    # Histogram methods keep every sample's values until the chunk is reduced (as ORT's collector does).
    budget = max(max_bytes // (len(samples) if histograms else 1), 1)
    chunks = _chunks(model, names, budget)
    result = RangeSet({m: {} for m in methods})
    total = len(chunks) * len(samples)
    for c, chunk in enumerate(chunks):
        session = _session(model, chunk)
        wanted = set(chunk)
        order = [o.name for o in session.get_outputs()]
        lows: dict[str, list[np.ndarray]] = {t: [] for t in chunk}
        highs: dict[str, list[np.ndarray]] = {t: [] for t in chunk}
        kept: dict[str, list[np.ndarray]] = {t: [] for t in chunk}
        feeds_names = {i.name for i in session.get_inputs()}
        for k, sample in enumerate(samples):
            yield Progress(c * len(samples) + k, total, f"calibration: chunk {c + 1}/{len(chunks)}, sample {k + 1}/{len(samples)}")
            feed = {n: v for n, v in sample.items() if n in feeds_names}
            values = dict(zip(order, session.run(None, feed)))
            values.update({n: v for n, v in feed.items() if n in wanted})  # graph inputs are not session outputs
            for t in chunk:
                v = values[t]
                if "minmax" in methods:
                    # ReduceMin/ReduceMax of the whole tensor: NaN propagates, as in ORT's augmented model.
                    lows[t].append(np.min(v, keepdims=True).reshape(-1) if v.size else np.array([np.inf], v.dtype))
                    highs[t].append(np.max(v, keepdims=True).reshape(-1) if v.size else np.array([-np.inf], v.dtype))
                if histograms:
                    kept[t].append(np.array(v, copy=True))
        if "minmax" in methods:
            for t in chunk:
                result.ranges["minmax"][t] = (np.nanmin(lows[t], axis=0), np.nanmax(highs[t], axis=0))
        for m in histograms:
            result.ranges[m].update(_histogram(m, kept))
        del session, kept
    yield Progress(total, total, "calibration done")
    logger.info("calibrated %d tensors in %d chunk(s) on %d sample(s): %s", len(names), len(chunks), len(samples), ", ".join(methods))
    return result


def collect_ranges(model: onnx.ModelProto, samples: Sequence[Mapping[str, np.ndarray]], methods: Sequence[str] = ("minmax",),
                   max_bytes: int = _DEFAULT_MAX_BYTES) -> RangeSet:
    """``ranges_job`` run to the end."""
    return run(ranges_job(model, samples, methods, max_bytes), report)  # to whoever listens (engine.progress.forwarding)


def to_tensors_data(ranges: Mapping[str, tuple[np.ndarray, np.ndarray]]):  # -> onnxruntime TensorsData
    """ORT's ``TensorsData`` for ``quantize_static`` (labelled MinMax: the quantizer reads only the range)."""
    from onnxruntime.quantization.calibrate import CalibrationMethod, TensorData, TensorsData

    return TensorsData(CalibrationMethod.MinMax, {t: TensorData(lowest=lo, highest=hi) for t, (lo, hi) in ranges.items()})

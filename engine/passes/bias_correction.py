"""Empirical bias correction (Nagel et al. 2019; AIMET's empirical bias correction) of int8 layers.

Quantizing a layer's weights and input shifts the mean of its output: E[W_q x_q] - E[W x] is not 0.
On the calibration samples, ``correct_biases`` runs the fp32 model and the int8 (QDQ) model with each
int8 layer's output as an extra output, takes the mean error per output channel, and folds it into
the layer's quantized bias (the int32 initializer behind the bias's DequantizeLinear), in units of
that bias's scale. Layers are corrected in topological order, one depth at a time, each measured with
the corrections of the layers before it in place, so a correction is not counted twice downstream.

Applies to Conv and Gemm int8 layers whose bias ORT quantized (``<bias>_quantized`` read through a
DequantizeLinear); MatMul layers have no bias and are left as they are.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np
import onnx
from onnx import numpy_helper

from engine.ir.shapes import session_with_outputs
from engine.passes.base import PassResult, clone, set_initializer
from engine.passes.precision import prepare

__all__ = ["BiasCorrectionPass", "correct_biases", "output_errors"]

logger = logging.getLogger(__name__)


def output_errors(fp32: onnx.ModelProto, int8: onnx.ModelProto, tensors: Sequence[tuple[str, str]],
                  samples: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Mean (int8 - fp32) per channel (axis 1, or the last axis of a rank-2 tensor) of each pair
    (fp32 tensor, int8 tensor), keyed by the int8 tensor."""
    ref, quant = session_with_outputs(fp32, [r for r, _ in tensors]), session_with_outputs(int8, [q for _, q in tensors])
    sums: dict[str, np.ndarray] = {}
    for sample in samples:
        feed_ref = {i.name: sample[i.name] for i in ref.get_inputs()}
        feed_q = {i.name: sample[i.name] for i in quant.get_inputs()}
        a = dict(zip([o.name for o in ref.get_outputs()], ref.run(None, feed_ref)))
        b = dict(zip([o.name for o in quant.get_outputs()], quant.run(None, feed_q)))
        for r, t in tensors:
            diff = b[t].astype(np.float64) - a[r].astype(np.float64)
            axis = 1 if diff.ndim != 2 else diff.ndim - 1
            mean = np.moveaxis(diff, axis, 0).reshape(diff.shape[axis], -1).mean(axis=1)
            sums[t] = sums.get(t, 0) + mean
    return {t: v / len(samples) for t, v in sums.items()}


def _quantized_bias(int8: onnx.ModelProto, layer: str) -> tuple[str, str, int] | None:
    """(int32 initializer, scale initializer, channel count) of the layer's quantized bias, or None."""
    graph = int8.graph
    node = next((n for n in graph.node if n.name == layer), None)
    if node is None or node.op_type not in ("Conv", "Gemm") or len(node.input) < 3 or not node.input[2]:
        return None
    dq = next((n for n in graph.node if n.op_type == "DequantizeLinear" and n.output[0] == node.input[2]), None)
    inits = {t.name: t for t in graph.initializer}
    if dq is None or dq.input[0] not in inits or inits[dq.input[0]].data_type != onnx.TensorProto.INT32 or dq.input[1] not in inits:
        return None
    if node.op_type == "Gemm" and any(a.name == "transA" and a.i for a in node.attribute):
        return None
    return dq.input[0], dq.input[1], int(np.prod(inits[dq.input[0]].dims))


def _depths(graph: onnx.GraphProto, layers: list[str]) -> list[list[str]]:
    """``layers`` grouped by how many of them lie upstream (layers of one group do not feed each other)."""
    producer = {o: n for n in graph.node for o in n.output}
    wanted = set(layers)
    depth: dict[str, int] = {}
    for n in graph.node:  # the graph is topologically sorted
        ups = [depth.get(producer[t].name, 0) + (producer[t].name in wanted) for t in n.input if t in producer]
        depth[n.name] = max(ups, default=0)
    groups: dict[int, list[str]] = {}
    for name in layers:
        groups.setdefault(depth[name], []).append(name)
    return [groups[k] for k in sorted(groups)]


def correct_biases(fp32: onnx.ModelProto, int8: onnx.ModelProto, layers: Iterable[str],
                   samples: Sequence[Mapping[str, np.ndarray]]) -> tuple[onnx.ModelProto, list[str]]:
    """``int8`` with the quantized biases of ``layers`` corrected on ``samples``; the layers corrected."""
    model = clone(int8)
    targets = {}
    for layer in layers:
        found = _quantized_bias(model, layer)
        if found is not None:
            targets[layer] = found
    # The layer's own output, before any activation: ORT may have folded a Relu into the int8 layer's
    # output name, so the fp32 side is the same-named node's output.
    outputs = {n.name: n.output[0] for n in model.graph.node if n.name in targets}
    ref_outputs = {n.name: n.output[0] for n in fp32.graph.node if n.name in targets}
    targets = {k: v for k, v in targets.items() if k in ref_outputs}
    done = []
    for group in _depths(model.graph, list(targets)):
        errors = output_errors(fp32, model, [(ref_outputs[l], outputs[l]) for l in group], samples)
        inits = {t.name: t for t in model.graph.initializer}
        for layer in group:
            bias, scale, channels = targets[layer]
            err = errors[outputs[layer]]
            if err.shape[0] != channels:
                continue
            q = numpy_helper.to_array(inits[bias]).astype(np.int64)
            step = numpy_helper.to_array(inits[scale]).astype(np.float64)
            corrected = np.clip(q - np.round(err / step), np.iinfo(np.int32).min, np.iinfo(np.int32).max).astype(np.int32)
            set_initializer(model.graph, bias, corrected)
            done.append(layer)
    logger.info("bias correction of %d int8 layer(s) on %d sample(s)", len(done), len(samples))
    return model, done


class BiasCorrectionPass:
    """``precision`` (a PrecisionPass), then bias correction of ``layers`` against its fp32 input."""

    def __init__(self, precision: Callable[[onnx.ModelProto], PassResult], layers: Iterable[str],
                 samples: Sequence[Mapping[str, np.ndarray]] | None) -> None:
        self.precision = precision
        self.layers = list(layers)
        self.samples = list(samples or [])

    def __call__(self, model: onnx.ModelProto) -> PassResult:
        result = self.precision(model)
        if not self.samples:
            return PassResult(result.model, result.modified, [*result.notes, "bias correction skipped: it needs calibration samples (--calib)"])
        corrected, done = correct_biases(prepare(clone(model)), result.model, self.layers, self.samples)
        missed = sorted(set(self.layers) - set(done))
        notes = [*result.notes, f"bias correction of {len(done)} int8 layer(s)"]
        if missed:
            notes.append(f"no quantized bias to correct in {len(missed)} layer(s): {', '.join(missed[:5])}")
        return PassResult(corrected, True, notes)

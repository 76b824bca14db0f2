"""Cross-layer equalization (Nagel et al. 2019, "Data-Free Quantization"; AIMET's CLE) of Conv pairs.

For a chain ``Conv A -> [BatchNormalization] -> [activation] -> Conv B`` in which each tensor has one
reader, output channel i of A (with its bias, or its BatchNormalization's scale and shift) is divided
by s_i and input channel i of B is multiplied by s_i. With ReLU, PReLU, LeakyReLU or no activation,
f(x / s) = f(x) / s for s > 0, so the fp32 model computes the same values (within float error).
s_i = sqrt(r1_i / r2_i), where r1_i is the range of A's effective weights of channel i (weights times
BatchNormalization's gamma / sqrt(var + eps) when there is one) and r2_i the range of B's weights that
read channel i, so both become sqrt(r1_i * r2_i): the spread of per-channel weight ranges narrows and
the activation between them, quantized per tensor, has more even channel ranges.

B may be a full conv (group 1) or a depthwise conv (group = channels, one weight row per channel);
A may be depthwise too (depthwise-separable blocks equalize pairwise along the chain).

Activations that are not positively homogeneous (``engine.passes.cle_pairs`` finds them):

- *Gated* ones, f(x) = x * g(x): hard-swish (``HardSwish``, ``x * HardSigmoid(x)``, ``x * Clip(x + 3, 0,
  6) / 6``) and swish / SiLU (``x * Sigmoid(x)``). AIMET does not equalize across them. Here they stay
  exact: with x = s * x', f(x) / s = x' * g(s * x'), so a per-channel ``Mul`` by s is put on the gate's
  input only and B's columns are multiplied by s. It costs one elementwise Mul in fp32 (not priced by
  the sweep; tune's rounds measure it).
- ReLU6 and other ``Clip`` with lower bound 0, only with ``approximate=True``: done as AIMET does
  (``replace_relu6_with_relu`` before scaling), the Clip becomes a ReLU, which changes the fp32 output
  wherever the activation exceeded its upper bound (a scaled bound would need a per-channel Clip, which
  ONNX does not have). The pass's notes say so for each Clip. The sweep measures such a variant's drop
  end to end, so the approximation's cost is measured, not assumed.

After equalizing, high biases are absorbed into B (``engine.passes.high_bias``, Nagel et al. 2019 §4.1,
AIMET's high_bias_fold): exact where the pre-activation stays above the absorbed amount.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper

from engine.passes.base import PassResult, clone, initializers, set_initializer
from engine.passes.cle_pairs import Pair, attr, find_pairs
from engine.passes.high_bias import absorb_high_biases

__all__ = ["CLEPass", "Pair", "find_pairs"]

logger = logging.getLogger(__name__)

_SCALE_FLOOR = 1e-8  # channels whose weights are all zero keep s = 1


class CLEPass:
    """Equalize every pair ``find_pairs`` finds (or only those whose *second* conv is in ``layers``: the
    layer whose input activation and weight columns equalization evens out, so its int8 is what CLE
    changes; with a BatchNormalization between, the first conv quantizes exactly as before), then
    absorb high biases; ``samples`` (calibration inputs) give the pre-activation statistics where no
    BatchNormalization does (without them, only pairs with a BatchNormalization absorb)."""

    def __init__(self, layers: set[str] | None = None, approximate: bool = False,
                 samples: Sequence[dict[str, np.ndarray]] = (), high_bias: bool = True) -> None:
        self.layers = layers
        self.approximate = approximate
        self.samples = list(samples)
        self.high_bias = high_bias

    def __call__(self, model: onnx.ModelProto) -> PassResult:
        pairs = [p for p in find_pairs(model, self.approximate) if self.layers is None or p.second in self.layers]
        if not pairs:
            return PassResult(model, False)
        model = clone(model)
        graph = model.graph
        by_name = {n.name: n for n in graph.node}
        notes = [f"cross-layer equalization of {len(pairs)} conv pair(s)"]
        for pair in pairs:
            _equalize(graph, by_name, pair)
            if pair.kind == "relu6":
                bound = _relu6_to_relu(graph, by_name[pair.activation])
                notes.append(f"{pair.activation}: ReLU6 replaced by ReLU (upper bound {bound:g} dropped) for equalization, as "
                             "AIMET does (approximation: the fp32 output changes wherever the activation exceeded the bound)")
            elif pair.kind == "gated":
                notes.append(f"{pair.first}: the gate of {pair.activation} ({pair.gate_op}) reads its input through a "
                             "per-channel Mul (exact; one elementwise Mul added)")
        if self.high_bias:
            notes += absorb_high_biases(model, pairs, self.samples)
        return PassResult(model, True, notes)


def _relu6_to_relu(graph: onnx.GraphProto, clip: onnx.NodeProto) -> float:
    """Drop the Clip's upper bound (input or, before opset 11, attribute); the bound it had."""
    inits = initializers(graph)
    if len(clip.input) > 2 and clip.input[2]:
        bound = float(numpy_helper.to_array(inits[clip.input[2]]))
        del clip.input[2:]
        return bound
    bound = float(attr(clip, "max", np.inf))  # type: ignore[arg-type]
    kept = [a for a in clip.attribute if a.name != "max"]
    del clip.attribute[:]
    clip.attribute.extend(kept)
    return bound


def _equalize(graph: onnx.GraphProto, by_name: dict[str, onnx.NodeProto], pair: Pair) -> None:
    inits = initializers(graph)
    a, b = by_name[pair.first], by_name[pair.second]
    w1 = numpy_helper.to_array(inits[a.input[1]]).astype(np.float64)
    w2 = numpy_helper.to_array(inits[b.input[1]]).astype(np.float64)
    depthwise = int(attr(b, "group", 1)) > 1  # type: ignore[arg-type]
    r1 = np.abs(w1).reshape(w1.shape[0], -1).max(axis=1)
    norm = by_name[pair.norm] if pair.norm else None
    if norm is not None:
        gamma, beta, _, var = (numpy_helper.to_array(inits[t]).astype(np.float64) for t in norm.input[1:5])
        eps = float(attr(norm, "epsilon", 1e-5))  # type: ignore[arg-type]
        r1 = r1 * np.abs(gamma) / np.sqrt(var + eps)
    # B's weights that read channel i: row i (depthwise) or column i (full conv)
    r2 = np.abs(w2 if depthwise else np.moveaxis(w2, 1, 0)).reshape(r1.shape[0], -1).max(axis=1)
    ok = (r1 > _SCALE_FLOOR) & (r2 > _SCALE_FLOOR)
    s = np.ones_like(r1)
    s[ok] = np.sqrt(r1[ok] / r2[ok])
    shape1 = (-1,) + (1,) * (w1.ndim - 1)
    if norm is not None:  # scale the BatchNormalization's output: exact whatever its epsilon
        for index in (1, 2):
            t = norm.input[index]
            set_initializer(graph, t, (numpy_helper.to_array(inits[t]).astype(np.float64) / s).astype(np.float32))
    else:
        set_initializer(graph, a.input[1], (w1 / s.reshape(shape1)).astype(np.float32))
        if len(a.input) > 2 and a.input[2]:
            set_initializer(graph, a.input[2], (numpy_helper.to_array(inits[a.input[2]]).astype(np.float64) / s).astype(np.float32))
    scale2 = s.reshape((-1,) + (1,) * (w2.ndim - 1)) if depthwise else s.reshape((1, -1) + (1,) * (w2.ndim - 2))
    set_initializer(graph, b.input[1], (w2 * scale2).astype(np.float32))
    if pair.kind == "gated":
        _scale_gate(graph, by_name, pair, s.reshape((-1,) + (1,) * (w1.ndim - 2)))


def _scale_gate(graph: onnx.GraphProto, by_name: dict[str, onnx.NodeProto], pair: Pair, s: np.ndarray) -> None:
    """x' * g(x') becomes x' * g(s * x'): a Mul by s before the gate (a HardSwish node is split first)."""
    node = by_name[pair.activation]
    x = by_name[pair.norm or pair.first].output[0]
    scaled, s_name = f"{pair.first}/cle_gate_in", f"{pair.first}/cle_gate_scale"
    set_initializer(graph, s_name, s.astype(np.float32))
    mul = helper.make_node("Mul", [x, s_name], [scaled], name=f"{pair.first}/cle_gate_mul")
    index = list(graph.node).index(node)
    if node.op_type == "HardSwish":  # HardSwish(x) = x * HardSigmoid(x; 1/6, 1/2)
        gate = helper.make_node("HardSigmoid", [scaled], [f"{pair.first}/cle_gate"], name=f"{pair.first}/cle_hardsigmoid",
                                alpha=1.0 / 6.0, beta=0.5)
        product = helper.make_node("Mul", [x, gate.output[0]], list(node.output), name=node.name)
        del graph.node[index]
        for offset, new in enumerate((mul, gate, product)):
            graph.node.insert(index + offset, new)
        return
    start = by_name[pair.gate]
    start.input[list(start.input).index(x)] = scaled
    graph.node.insert(list(graph.node).index(start), mul)

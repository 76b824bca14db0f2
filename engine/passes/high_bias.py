"""High-bias absorption (Nagel et al. 2019, §4.1; AIMET's high_bias_fold), run by CLE after equalizing.

For a pair ``Conv A -> [BatchNormalization] -> activation -> Conv B`` (``engine.passes.cle_pairs``), a
channel whose pre-activation y is always at least c > 0 can lose c before the activation and B can add
it back through its bias: ReLU(y - c) + c = ReLU(y) wherever y >= c, and B(z + c) = B(z) + (B's weights
summed over the kernel) @ c when B pads nothing (a padded border would see 0, not c, so padded B's are
skipped). The activation's channel then spans [0, max - c] instead of [0, max]: its range, quantized
per tensor, narrows. c per channel:

- with a BatchNormalization (AIMET's rule): c = max(0, beta - 3 |gamma|), i.e. 3 standard deviations
  below the channel's mean as the normalization's statistics predict; exact where y >= c;
- without one (folded into A's bias), from the calibration samples' pre-activation statistics:
  c = max(0, min(mean - 3 std, the smallest value seen)), so it is exact on every calibration sample and
  elsewhere wherever y >= c; without samples, nothing is absorbed;
- with no activation, all of the shift (AIMET's rule for a linear pair): exact everywhere.

ReLU, LeakyReLU and PReLU are linear above 0, so the same rule holds for them. Gated activations
(hard-swish, swish) are not: their pairs absorb nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
import onnx
from onnx import numpy_helper

from engine.ir.shapes import session_with_outputs
from engine.passes.base import initializers, set_initializer
from engine.passes.cle_pairs import Pair, attr

__all__ = ["absorb_high_biases", "channel_stats"]

logger = logging.getLogger(__name__)

_SIGMAS = 3.0


def channel_stats(model: onnx.ModelProto, tensors: Sequence[str],
                  samples: Sequence[Mapping[str, np.ndarray]]) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per channel (axis 1) of each tensor over ``samples`` and positions: (mean, std, min)."""
    if not tensors or not samples:
        return {}
    session = session_with_outputs(model, tensors)
    names = [o.name for o in session.get_outputs()]
    acc: dict[str, list[np.ndarray]] = {t: [] for t in tensors}
    for sample in samples:
        values = dict(zip(names, session.run(None, {i.name: sample[i.name] for i in session.get_inputs()})))
        for t in tensors:
            v = values[t].astype(np.float64)
            acc[t].append(np.moveaxis(v, 1, 0).reshape(v.shape[1], -1))
    out = {}
    for t, parts in acc.items():
        v = np.concatenate(parts, axis=1)
        out[t] = (v.mean(axis=1), v.std(axis=1), v.min(axis=1))
    return out


def _unpadded(node: onnx.NodeProto) -> bool:
    auto = attr(node, "auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else str(auto)
    return auto in ("NOTSET", "VALID") and not any(attr(node, "pads", []))  # type: ignore[arg-type]


def absorb_high_biases(model: onnx.ModelProto, pairs: Sequence[Pair], samples: Sequence[Mapping[str, np.ndarray]] = ()) -> list[str]:
    """Absorb what each pair allows into its B, in place; one note per pair that changed."""
    graph = model.graph
    by_name = {n.name: n for n in graph.node}
    inits = initializers(graph)
    todo = [p for p in pairs if p.kind != "gated" and _unpadded(by_name[p.second])]
    # pairs without a BatchNormalization: statistics of A's output (its bias included) on the samples
    need = [p for p in todo if p.norm is None and p.activation is not None]
    need = [p for p in need if len(by_name[p.first].input) > 2 and by_name[p.first].input[2]]
    stats = channel_stats(model, [by_name[p.first].output[0] for p in need], samples) if need else {}
    notes = []
    for pair in todo:
        a, b = by_name[pair.first], by_name[pair.second]
        if pair.norm is not None:
            norm = by_name[pair.norm]
            shift_name = norm.input[2]
            gamma = numpy_helper.to_array(inits[norm.input[1]]).astype(np.float64)
            shift = numpy_helper.to_array(inits[shift_name]).astype(np.float64)
            c = shift.copy() if pair.activation is None else np.maximum(0.0, shift - _SIGMAS * np.abs(gamma))
            source = "a linear pair" if pair.activation is None else "BatchNormalization statistics"
        else:
            if len(a.input) < 3 or not a.input[2]:
                continue
            shift_name = a.input[2]
            shift = numpy_helper.to_array(inits[shift_name]).astype(np.float64)
            if pair.activation is None:
                c, source = shift.copy(), "a linear pair"
            elif a.output[0] in stats:
                mean, std, low = stats[a.output[0]]
                c = np.maximum(0.0, np.minimum(mean - _SIGMAS * std, low))
                source = f"statistics of {len(samples)} calibration sample(s)"
            else:
                continue
        moved = int(np.count_nonzero(c))
        if not moved:
            continue
        set_initializer(graph, shift_name, (shift - c).astype(np.float32))
        w2 = numpy_helper.to_array(inits[b.input[1]]).astype(np.float64)
        summed = w2.reshape(w2.shape[0], w2.shape[1], -1).sum(axis=2)  # (out, in per group)
        add = summed[:, 0] * c if int(attr(b, "group", 1)) > 1 else summed @ c  # type: ignore[arg-type]
        if len(b.input) > 2 and b.input[2]:
            bias = numpy_helper.to_array(inits[b.input[2]]).astype(np.float64)
            set_initializer(graph, b.input[2], (bias + add).astype(np.float32))
        else:
            name = f"{b.name}/absorbed_bias"
            set_initializer(graph, name, add.astype(np.float32))
            if len(b.input) == 2:
                b.input.append(name)
            else:
                b.input[2] = name
        inits = initializers(graph)
        exact = "exact" if pair.activation is None else "exact where the pre-activation stays above the amount moved"
        notes.append(f"high-bias absorption: {moved} channel(s) of {pair.first} moved into {pair.second}'s bias "
                     f"(from {source}; {exact})")
    return notes

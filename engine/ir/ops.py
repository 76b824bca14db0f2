"""Per-op facts (category, tunability, transform eligibility) and MAC counting rules.

The facts are data in ``resources/ops.json``; this module only looks them up and implements the few
counting rules the data names. Netron and ONNX Runtime keep operator facts as data for the same reason:
adding an op should not mean editing code.
"""

from __future__ import annotations

import functools
import json
import logging
import math
from dataclasses import dataclass
from importlib import resources
from typing import Callable, Mapping, Sequence

__all__ = ["OpFacts", "op_facts", "count_macs", "Shape"]

logger = logging.getLogger(__name__)

#: A tensor shape: ints where known, a string for a symbolic dim, None for an unknown dim.
Shape = tuple[int | str | None, ...]


@dataclass(frozen=True)
class OpFacts:
    """What LayerLab knows about one ONNX op type."""

    op_type: str
    category: str
    tunable: bool
    quantizable: bool
    prunable: bool
    lowrank: bool
    macs: str | None  # counting rule name, None when unknown
    weight_input: int | None = None


@functools.cache
def _table() -> dict[str, OpFacts]:
    raw = json.loads((resources.files("resources") / "ops.json").read_text(encoding="utf-8"))
    return {name: OpFacts(op_type=name, **facts) for name, facts in raw["ops"].items()}


def op_facts(op_type: str) -> OpFacts:
    """Facts for ``op_type``; ops LayerLab does not know are opaque (not tunable, MACs unknown)."""
    facts = _table().get(op_type)
    if facts is None:
        return OpFacts(op_type, "other", False, False, False, False, None)
    return facts


def _numel(shape: Shape | None) -> int | None:
    if shape is None or any(not isinstance(d, int) or d < 0 for d in shape):
        return None  # a negative dim is a dynamic one some exporters write as -1: unknown, not negative
    return math.prod(shape)


def _conv(ins: Sequence[Shape | None], outs: Sequence[Shape | None], attrs: Mapping) -> int | None:
    out, w = _numel(outs[0]) if outs else None, ins[1] if len(ins) > 1 else None
    if out is None or w is None or _numel(w) is None:
        return None
    # W is [Cout, Cin/group, k...]: every output element costs Cin/group * prod(k) MACs.
    return out * math.prod(w[1:])  # type: ignore[arg-type]


def _convtranspose(ins: Sequence[Shape | None], outs: Sequence[Shape | None], attrs: Mapping) -> int | None:
    x = _numel(ins[0]) if ins else None
    w = ins[1] if len(ins) > 1 else None
    if x is None or w is None or _numel(w) is None:
        return None
    # W is [Cin, Cout/group, k...]: every input element is scattered to Cout/group * prod(k) outputs.
    return x * math.prod(w[1:])  # type: ignore[arg-type]


def _gemm(ins: Sequence[Shape | None], outs: Sequence[Shape | None], attrs: Mapping) -> int | None:
    if len(ins) < 2 or ins[0] is None or len(ins[0]) != 2:
        return None
    out = _numel(outs[0]) if outs else None
    k = ins[0][0] if attrs.get("transA", 0) else ins[0][1]
    if out is None or not isinstance(k, int) or k < 0:
        return None
    return out * k


def _matmul(ins: Sequence[Shape | None], outs: Sequence[Shape | None], attrs: Mapping) -> int | None:
    if not ins or ins[0] is None or not ins[0]:
        return None
    out = _numel(outs[0]) if outs else None
    k = ins[0][-1]
    if out is None or not isinstance(k, int) or k < 0:
        return None
    return out * k


def _pool(ins: Sequence[Shape | None], outs: Sequence[Shape | None], attrs: Mapping) -> int | None:
    out = _numel(outs[0]) if outs else None
    kernel = attrs.get("kernel_shape")
    if out is None or kernel is None:
        return None
    return out * math.prod(kernel)


def _elementwise(ins: Sequence[Shape | None], outs: Sequence[Shape | None], attrs: Mapping) -> int | None:
    return _numel(outs[0]) if outs else None


def _reduce(ins: Sequence[Shape | None], outs: Sequence[Shape | None], attrs: Mapping) -> int | None:
    return _numel(ins[0]) if ins else None


def _rnn(ins: Sequence[Shape | None], outs: Sequence[Shape | None], attrs: Mapping) -> int | None:
    # X is [seq, batch, input] (or [batch, seq, input]), W [dirs, gates*hidden, input], R [dirs, gates*hidden, hidden]:
    # every step of every direction multiplies W by x_t and R by h_{t-1}.
    if len(ins) < 3 or any(s is None or _numel(s) is None or len(s) != 3 for s in ins[:3]):
        return None
    x, w, r = ins[0], ins[1], ins[2]
    return x[0] * x[1] * w[0] * w[1] * (w[2] + r[2])  # type: ignore[index,operator]


def _zero(ins: Sequence[Shape | None], outs: Sequence[Shape | None], attrs: Mapping) -> int | None:
    return 0


_RULES: dict[str, Callable[[Sequence[Shape | None], Sequence[Shape | None], Mapping], int | None]] = {
    "conv": _conv,
    "convtranspose": _convtranspose,
    "gemm": _gemm,
    "matmul": _matmul,
    "pool": _pool,
    "elementwise": _elementwise,
    "reduce": _reduce,
    "zero": _zero,
    "rnn": _rnn,
}


def count_macs(
    op_type: str,
    input_shapes: Sequence[Shape | None],
    output_shapes: Sequence[Shape | None],
    attributes: Mapping[str, object],
) -> int | None:
    """Multiply-accumulates of one node, or None when the op or a needed shape is unknown."""
    rule = op_facts(op_type).macs
    if rule is None:
        return None
    return _RULES[rule](input_shapes, output_shapes, attributes)

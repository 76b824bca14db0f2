"""Valid inputs without an evaluator: seeded random feeds that respect what the graph does with them.

Random numbers are fine for float inputs, but integer inputs usually mean something, and a wrong
value stops the model or sends it down another path:

- ids that index a ``Gather`` table (embeddings) get values within that table, so a token-type
  table of 2 rows never sees a 6 (ORT: ``idx=6 must be within [-2,1]``);
- a name saying *mask* gets all ones (nothing masked, as real inputs mostly are); *token type* or
  *segment* ids get 0;
- an input compared by ``Equal`` with a constant gets that constant (silero-vad's ``sr == 16000``
  chooses the branch the model was exported for);
- booleans are True for masks and random otherwise; rank-0 inputs are scalars like any other.

When ONNX Runtime still refuses them, ``engine.measure.feeds.feed_failure`` names the inputs upstream of
the failing node and suggests an evaluator or an ``.npz``. The graph runs itself on these feeds where
shape inference gives up (``engine.ir.graph``), which is why they live here, below ``measure``.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Sequence

import numpy as np
import onnx
from onnx import numpy_helper

from engine.errors import LayerLabError
from engine.ir.shapes import TensorInfo

__all__ = ["generated_feeds", "integer_plan", "random_feeds"]

logger = logging.getLogger(__name__)

# Ops that pass an integer input's values through unchanged on the way to a Gather or an Equal.
_VALUE_PRESERVING = {"Cast", "Unsqueeze", "Squeeze", "Reshape", "Identity", "Flatten", "Expand", "Transpose",
                     "Slice", "Concat", "Tile"}
_MASK = re.compile(r"mask", re.IGNORECASE)
_TOKEN_TYPE = re.compile(r"token_?type|segment", re.IGNORECASE)
_SMALL = 8  # integers with no other clue: 0..7 (the earlier default; small enough for most index uses)


def random_feeds(graph: object, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded inputs at the graph's concrete input shapes; LayerLabError naming an input whose dims are unknown."""
    return generated_feeds(graph.model, graph.inputs, graph.label, seed)  # type: ignore[attr-defined]


def generated_feeds(model: onnx.ModelProto, inputs: Sequence[TensorInfo], label: str, seed: int = 0) -> dict[str, np.ndarray]:
    """``random_feeds`` from the parts of a graph: its model, its (non-weight) inputs and how it is named."""
    rng = np.random.default_rng(seed)
    plans = integer_plan(model)
    feeds: dict[str, np.ndarray] = {}
    for t in inputs:
        if t.shape is None or any(not isinstance(d, int) or d < 0 for d in t.shape):
            raise LayerLabError(
                f"{label}: input {t.name!r} has unknown dims {t.shape}; give them with --input {t.name}=... "
                "or --dim NAME=N, or an evaluator with --eval"
            )
        shape = tuple(int(d) for d in t.shape)
        dtype = np.dtype(t.dtype or "float32")
        kind, value = plans.get(t.name, ("random", _SMALL))
        if dtype.kind == "f":
            feeds[t.name] = rng.random(shape).astype(dtype)
        elif dtype.kind == "b":
            feeds[t.name] = np.ones(shape, bool) if kind == "ones" else rng.random(shape) > 0.5
        elif kind in ("ones", "zeros", "value"):
            fill = {"ones": 1, "zeros": 0}.get(kind, value)
            feeds[t.name] = np.full(shape, fill, dtype=dtype)
        else:
            high = max(int(value), 1)
            feeds[t.name] = rng.integers(0, high, size=shape).astype(dtype)
        logger.debug("%s: feed %s %s (%s)", label, t.name, shape, kind)
    return feeds


def integer_plan(model: onnx.ModelProto) -> dict[str, tuple[str, int]]:
    """Per integer or boolean input: ("ones"|"zeros"|"value"|"random", bound or value)."""
    consts = {t.name: t for t in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "Constant" and n.output:
            for a in n.attribute:
                if a.name == "value" and a.type == onnx.AttributeProto.TENSOR:
                    consts[n.output[0]] = a.t
    consumers: dict[str, list[tuple[onnx.NodeProto, int]]] = defaultdict(list)
    for n in model.graph.node:
        for i, t in enumerate(n.input):
            consumers[t].append((n, i))
    plans: dict[str, tuple[str, int]] = {}
    for vi in model.graph.input:
        if vi.name in consts:
            continue
        elem = vi.type.tensor_type.elem_type
        if elem in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE, onnx.TensorProto.BFLOAT16):
            continue
        tables, equals = _uses(vi.name, consumers, consts)
        if equals:
            plans[vi.name] = ("value", equals[0])
        elif _MASK.search(vi.name):
            plans[vi.name] = ("ones", 1)
        elif _TOKEN_TYPE.search(vi.name):
            plans[vi.name] = ("zeros", 0)
        elif tables:
            plans[vi.name] = ("random", min(tables))
        else:
            plans[vi.name] = ("random", _SMALL)
    return plans


def _uses(name: str, consumers: dict, consts: dict) -> tuple[list[int], list[int]]:
    """Sizes of the Gather tables ``name`` indexes, and constants it is compared with, through value-preserving ops."""
    tables: list[int] = []
    equals: list[int] = []
    seen: set[str] = set()
    todo = [name]
    while todo:
        tensor = todo.pop()
        if tensor in seen:
            continue
        seen.add(tensor)
        for node, index in consumers.get(tensor, []):
            if node.op_type == "Gather" and index == 1 and node.input[0] in consts:
                axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
                dims = list(consts[node.input[0]].dims)
                if dims:
                    tables.append(int(dims[axis % len(dims)]))
            elif node.op_type == "Equal":
                other = node.input[1 - index] if len(node.input) == 2 else ""
                if other in consts:
                    values = numpy_helper.to_array(consts[other]).ravel()
                    if values.size:
                        equals.append(int(values[0]))
            elif node.op_type in _VALUE_PRESERVING and (index == 0 or node.op_type == "Concat"):
                todo.extend(node.output)
    return tables, equals

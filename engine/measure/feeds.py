"""Feeds as timing sees them: a digest that names the inputs times were measured on, and the one-line
error when ONNX Runtime refuses generated inputs (``engine.ir.feeds`` makes them)."""

from __future__ import annotations

import hashlib
import logging
import re

import numpy as np

from engine.errors import LayerLabError

__all__ = ["feed_failure", "feeds_digest"]

logger = logging.getLogger(__name__)


def feeds_digest(feeds: dict[str, np.ndarray]) -> str:
    """A short hash of names, dtypes, shapes and values: times measured on the same inputs share it."""
    h = hashlib.sha256()
    for name in sorted(feeds):
        a = np.ascontiguousarray(feeds[name])
        h.update(f"{name}:{a.dtype.str}:{a.shape};".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def feed_failure(graph: object, error: str) -> LayerLabError:
    """The error for feeds ONNX Runtime refused: the inputs upstream of the failing node, and what to do."""
    model = graph.model  # type: ignore[attr-defined]
    match = re.search(r"Name:'([^']+)'", error)
    producer = {o: n for n in model.graph.node for o in n.output}
    inputs = [t.name for t in graph.inputs]  # type: ignore[attr-defined]
    suspects = inputs
    if match:
        node = next((n for n in model.graph.node if n.name == match.group(1)), None)
        upstream: set[str] = set()
        todo = list(node.input) if node is not None else []
        while todo:
            t = todo.pop()
            if t in upstream:
                continue
            upstream.add(t)
            if t in producer:
                todo.extend(producer[t].input)
        suspects = [i for i in inputs if i in upstream] or inputs
    named = ", ".join(repr(s) for s in suspects)
    return LayerLabError(f"{error}; generated inputs {named} are not valid for this model: give real ones with "
                         "--eval (an evaluator .py, or an .npz with input:<name> arrays)")

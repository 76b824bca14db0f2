"""What every pass shares: the ``PassResult`` type and small ``ModelProto`` helpers.

Each pass lives in its own module, takes typed settings in its constructor and is called on a
``ModelProto``; it clones the model first (the caller's proto never changes) and returns a
``PassResult``. ``engine.passes.manager`` composes them from a plan.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import numpy_helper


__all__ = ["PassResult", "clone", "consumers", "drop_unused_initializers", "initializers", "refresh_shapes", "set_initializer"]

logger = logging.getLogger(__name__)


@dataclass
class PassResult:
    """What a pass returns: the new model, whether it changed anything, and notes for the user."""

    model: onnx.ModelProto
    modified: bool
    notes: list[str] = field(default_factory=list)


def clone(model: onnx.ModelProto) -> onnx.ModelProto:
    """A deep copy of ``model``: passes never change their input."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    return copy


def initializers(graph: onnx.GraphProto) -> dict[str, onnx.TensorProto]:
    """Initializers by name."""
    return {t.name: t for t in graph.initializer}


def consumers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    """For each tensor name, the nodes that read it (in graph order)."""
    users: dict[str, list[onnx.NodeProto]] = {}
    for n in graph.node:
        for t in dict.fromkeys(n.input):
            if t:
                users.setdefault(t, []).append(n)
    return users


def set_initializer(graph: onnx.GraphProto, name: str, array: np.ndarray) -> None:
    """Replace (or add) the initializer ``name`` with ``array``."""
    tensor = numpy_helper.from_array(np.ascontiguousarray(array), name)
    for i, t in enumerate(graph.initializer):
        if t.name == name:
            graph.initializer[i].CopyFrom(tensor)
            return
    graph.initializer.append(tensor)


def refresh_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """Drop the recorded intermediate shapes (a structural pass made them stale) and infer them again."""
    del model.graph.value_info[:]
    try:
        return onnx.shape_inference.infer_shapes(model)
    except Exception as exc:  # best effort: the model is still valid without value_info
        logger.info("shape inference after transform failed (%s)", exc)
        return model


def drop_unused_initializers(graph: onnx.GraphProto) -> None:
    """Delete the initializers no node reads, in place (deleting, not rebuilding, copies no weights)."""
    used = {t for node in graph.node for t in node.input}
    for i in reversed([i for i, t in enumerate(graph.initializer) if t.name not in used]):
        del graph.initializer[i]

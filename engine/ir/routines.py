"""What routine a layer may take, and why not: one rule for every part of LayerLab.

``apply`` (``engine.passes.manager.check_plan``) refuses exactly what :func:`routine_problem` names;
the sensitivity sweep, ``tune``, the profiler and the window's inspector offer nothing else, so a
route ``tune`` picks is always one ``apply`` can build, and the window never offers a precision the
export would refuse. It lives in ``ir`` because it is a fact of the graph (op type, weights, shapes),
below both the passes and the GUI.
"""

from __future__ import annotations

import logging
from typing import Any

from engine.errors import LayerLabError
from engine.ir.ops import op_facts

__all__ = ["LAYER_ROUTINES", "routine_problem"]

logger = logging.getLogger(__name__)

#: The routines a layer can take besides fp32.
LAYER_ROUTINES = ("int8", "int8_dynamic", "fp16")


def routine_problem(graph: Any, node: Any, routine: str) -> str:
    """Why layer ``node`` (an ``engine.ir.graph.Node``) of ``graph`` cannot take ``routine``; empty when it can.

    int8 needs the layer's input shape, which the graph has once the input shapes are concrete
    (``engine.ir.graph``: inference, then one run where inference gives up)."""
    if routine == "int8":
        if not op_facts(node.op_type).quantizable:
            return "int8 is not supported for this op"
        if getattr(graph.tensors.get(node.inputs[0]), "shape", None) is None:
            return "shapes unknown at its input; give concrete input shapes (--input NAME=SHAPE)"
        return ""
    if routine == "int8_dynamic":
        if node.op_type not in ("MatMul", "Gemm"):
            return "int8_dynamic is for MatMul/Gemm only (dynamic Conv is slower than fp32)"
        if node.op_type == "Gemm" and (node.attributes.get("transA", 0) or node.inputs[1] not in node.weights):
            return "int8_dynamic needs a Gemm with constant B and transA=0"  # PrecisionPass refuses the others
        return ""
    if routine in ("fp16", "fp32"):
        return ""
    raise LayerLabError(f"routine {routine!r}: must be one of {', '.join(LAYER_ROUTINES)}")

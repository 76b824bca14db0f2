"""Which plan settings can apply to the selected layers, and why not: the inspector disables what cannot.

No Qt. Reasons come from the op facts (``engine.ir.ops``) and the engine's own checks
(``engine.passes.prune.can_prune``, ``engine.passes.lowrank``), cached per model and layer
because the checks trace the graph or run an SVD.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Sequence

from engine.ir.ops import op_facts
from engine.model.plan import PRECISIONS, PRUNE_MODES

__all__ = ["LayerOptions", "layer_options", "RankInfo", "rank_info"]

logger = logging.getLogger(__name__)

#: the order of the precision combo: auto first (DPRS decides), then the pinned ones.
PRECISION_ORDER = ("auto", "fp32", "fp16", "int8", "int8_dynamic")
assert set(PRECISION_ORDER) == set(PRECISIONS)

_cache: dict[tuple[str, str, str], Any] = {}


@dataclass
class LayerOptions:
    """For a set of layers: the disabled precisions / prune modes with reasons, and whether rank applies."""

    layers: list[str]
    precision_blocked: dict[str, str] = field(default_factory=dict)
    prune_blocked: str = ""  # why pruning cannot apply at all ("" when it can)
    mode_blocked: dict[str, str] = field(default_factory=dict)
    rank_blocked: str = ""


@dataclass(frozen=True)
class RankInfo:
    """The rank slider's range and the SVD energy curve (energy[k-1] = energy kept at rank k)."""

    max_rank: int  # largest allowed rank (break-even - 1)
    break_even: int
    energy: tuple[float, ...]


def _cached(graph: Any, kind: str, layer: str, compute: Any) -> Any:
    key = (getattr(graph, "sha256", "") or str(id(graph)), kind, layer)
    if key not in _cache:
        _cache[key] = compute()
    return _cache[key]


def layer_options(graph: Any, names: Sequence[str]) -> LayerOptions:
    """What the inspector may offer for the layers ``names`` (ops among them are ignored)."""
    nodes = [graph.node(n) for n in names]
    layers = [n for n in nodes if n.tunable]
    out = LayerOptions([n.name for n in layers])
    if not layers:
        return out

    def first(pairs: list[tuple[str, str]]) -> str:
        return f"{pairs[0][0]}: {pairs[0][1]}" + (f" (and {len(pairs) - 1} more)" if len(pairs) > 1 else "")

    not_quantizable = [(n.name, f"{n.op_type} has no int8 routine") for n in layers if not op_facts(n.op_type).quantizable]
    if not_quantizable:
        out.precision_blocked["int8"] = first(not_quantizable)
    not_dynamic = [(n.name, "int8_dynamic is for MatMul/Gemm only (dynamic Conv is slower than fp32)")
                   for n in layers if n.op_type not in ("MatMul", "Gemm")]
    if not_dynamic:
        out.precision_blocked["int8_dynamic"] = first(not_dynamic)
    not_prunable = [(n.name, f"{n.op_type} cannot be pruned") for n in layers if not op_facts(n.op_type).prunable]
    if not_prunable:
        out.prune_blocked = first(not_prunable)
    structured = [(n.name, r) for n in layers if (r := _structured_reason(graph, n.name))]
    if structured:
        out.mode_blocked["structured"] = first(structured)
    if len(layers) > 1:
        out.rank_blocked = "a rank is set one layer at a time (each layer's limit differs)"
    else:
        info = rank_info(graph, layers[0].name)
        if isinstance(info, str):
            out.rank_blocked = info
    assert set(out.mode_blocked) <= set(PRUNE_MODES)
    return out


def _structured_reason(graph: Any, layer: str) -> str | None:
    def compute() -> str | None:
        try:
            from engine.passes.prune import can_prune
        except ImportError:
            return "structured pruning check is not available"
        try:
            return can_prune(graph, layer)
        except Exception as exc:  # a checker bug must not break the inspector
            logger.exception("can_prune(%s) failed", layer)
            return f"check failed: {exc}"

    return _cached(graph, "prune", layer, compute)


def rank_info(graph: Any, layer: str) -> RankInfo | str:
    """The rank range and energy curve of ``layer``, or why it cannot be factored."""

    def compute() -> RankInfo | str:
        if not op_facts(graph.node(layer).op_type).lowrank:
            return f"{graph.node(layer).op_type} cannot be factored (Gemm, MatMul and Conv can)"
        try:
            from engine.passes.lowrank import break_even_rank, energy_curve, lowrank_problem
        except ImportError:
            return "low-rank factoring is not available"
        problem = lowrank_problem(graph, layer, 1)
        if problem:
            return problem
        even = int(break_even_rank(graph, layer))
        if even <= 1:
            return "the layer is too small: no rank is cheaper than the layer itself"
        return RankInfo(max_rank=even - 1, break_even=even, energy=tuple(float(e) for e in energy_curve(graph, layer)))

    return _cached(graph, "rank", layer, compute)

"""Which plan settings can apply to the selected layers, and why not: the inspector disables what cannot.

No Qt and no numerics. Reasons come from the op facts (``engine.ir.ops``) and from the per-layer facts
the worker computes once per model (``engine.jobs.layer_facts``: prune checks, rank range, SVD energy),
which ``store_facts`` caches here by model hash. Until they arrive a layer's prune mode and rank say
"computing…" instead of stalling the GUI thread.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Sequence

from engine.ir.ops import op_facts
from engine.ir.routines import routine_problem
from engine.jobs.layer_facts import LayerFacts, RankFacts
from engine.model.plan import PRECISIONS, PRUNE_MODES

__all__ = ["LayerOptions", "layer_options", "RankInfo", "rank_info", "store_facts", "facts_for", "prune_group",
           "PENDING"]

logger = logging.getLogger(__name__)

#: the order of the precision combo: auto first (DPRS decides), then the pinned ones.
PRECISION_ORDER = ("auto", "fp32", "fp16", "int8", "int8_dynamic")
assert set(PRECISION_ORDER) == set(PRECISIONS)

#: what a check says while the worker is still computing it.
PENDING = "computing… (in the background)"
RankInfo = RankFacts  # the inspector's name for it

_facts: dict[str, LayerFacts] = {}  # model sha256 -> facts; a few models per session at most


def store_facts(facts: LayerFacts) -> None:
    """Keep the worker's facts for the model with this hash (replacing a partial set)."""
    _facts[facts.sha256] = facts


def facts_for(graph: Any) -> LayerFacts | None:
    """The cached facts of ``graph`` (None when the worker has not delivered them)."""
    return _facts.get(getattr(graph, "sha256", "") or "")


def prune_group(graph: Any, layer: str) -> tuple[str, ...]:
    """The layers that shrink together with ``layer`` (empty when unknown or the engine offers no groups)."""
    facts = facts_for(graph)
    return facts.groups.get(layer, ()) if facts is not None else ()

@dataclass
class LayerOptions:
    """For a set of layers: the disabled precisions / prune modes with reasons, and whether rank applies."""

    layers: list[str]
    precision_blocked: dict[str, str] = field(default_factory=dict)
    prune_blocked: str = ""  # why pruning cannot apply at all ("" when it can)
    mode_blocked: dict[str, str] = field(default_factory=dict)
    rank_blocked: str = ""


def layer_options(graph: Any, names: Sequence[str]) -> LayerOptions:
    """What the inspector may offer for the layers ``names`` (ops among them are ignored)."""
    nodes = [graph.node(n) for n in names]
    layers = [n for n in nodes if n.tunable]
    out = LayerOptions([n.name for n in layers])
    if not layers:
        return out

    def first(pairs: list[tuple[str, str]]) -> str:
        return f"{pairs[0][0]}: {pairs[0][1]}" + (f" (and {len(pairs) - 1} more)" if len(pairs) > 1 else "")

    for routine in ("int8", "int8_dynamic"):  # the rule apply checks (engine.ir.routines): no offer it would refuse
        blocked = [(n.name, why) for n in layers if (why := routine_problem(graph, n, routine))]
        if blocked:
            out.precision_blocked[routine] = first(blocked)
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
    facts = facts_for(graph)
    if facts is None or layer not in facts.prune:
        return PENDING
    return facts.prune[layer]


def rank_info(graph: Any, layer: str) -> RankInfo | str:
    """The rank range and energy curve of ``layer``, or why it cannot be factored (or that it is computing)."""
    if not op_facts(graph.node(layer).op_type).lowrank:
        return f"{graph.node(layer).op_type} cannot be factored (Gemm, MatMul and Conv can)"
    facts = facts_for(graph)
    if facts is None or layer not in facts.rank:
        return PENDING
    return facts.rank[layer]

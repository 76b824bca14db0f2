"""What each layer of a model allows, computed once per model in the worker: prune check, rank range, SVD energy.

The inspector needs, for the layer the user clicks, whether structured pruning can apply
(``engine.passes.prune.can_prune`` traces the graph), the low-rank slider's range and the SVD energy
curve (``engine.passes.lowrank``). On a real model these take 0.4-0.65 s per layer, too slow for the
GUI thread, so ``layer_facts_job`` computes them for every layer right after the model opens and the
window caches the result per model. When the engine offers ``prune_group(graph, layer)`` the facts also
carry each layer's prune group (the layers that shrink with it), for the view to highlight.
With calibration data (``layer_facts_job(..., evaluator=...)``: the evaluator's calibration, never
random inputs) the energy curve is the data-aware one, the energy of the layer's output on that data
(``energy_curve(..., gram)``, as the whitened low-rank pass keeps it); ``RankFacts.data_aware`` says which.
No Qt here; the result is plain picklable data.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from engine.errors import LayerLabError
from engine.ir.ops import op_facts
from engine.jobs.loaded import load_graph, load_job_evaluator
from engine.progress import Cancelled, Job, Progress
from engine.passes import lowrank, prune
from engine.passes.reconstruct import input_gram

__all__ = ["RankFacts", "LayerFacts", "layer_facts", "layer_facts_job", "group_members"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RankFacts:
    """The rank slider's range and the SVD energy curve (energy[k-1] = energy kept at rank k)."""

    max_rank: int  # largest allowed rank (break-even - 1)
    break_even: int
    energy: tuple[float, ...]
    data_aware: bool = False  # the energy of the layer's output on calibration data, not of the weight


@dataclass
class LayerFacts:
    """Per layer: why structured pruning is refused (None: it can), the rank facts or why not, the prune group."""

    sha256: str
    prune: dict[str, str | None] = field(default_factory=dict)
    rank: dict[str, RankFacts | str] = field(default_factory=dict)
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)
    complete: bool = True  # False when the job was cancelled part way
    evaluator: str | None = None  # the evaluator whose calibration gave the data-aware curves (None: weights only)


def group_members(group: Any) -> tuple[str, ...]:
    """Layer names of an ``engine.passes.prune`` group (an object with ``layers``, or an iterable of names)."""
    members = getattr(group, "layers", group)
    if members is None or isinstance(members, str):
        return ()
    return tuple(str(getattr(m, "name", m)) for m in members)


def _rank_facts(graph: Any, layer: str, calibration: Sequence[dict[str, Any]] | None = None) -> RankFacts | str:
    node = graph.node(layer)
    if not op_facts(node.op_type).lowrank:
        return f"{node.op_type} cannot be factored (Gemm, MatMul and Conv can)"
    problem = lowrank.lowrank_problem(graph, layer, 1)
    if problem:
        return problem
    even = int(lowrank.break_even_rank(graph, layer))
    if even <= 1:
        return "the layer is too small: no rank is cheaper than the layer itself"
    if calibration:
        try:
            gram = input_gram(graph.model, layer, calibration)
            return RankFacts(even - 1, even, tuple(float(e) for e in lowrank.energy_curve(graph, layer, gram)), True)
        except (LayerLabError, ValueError, KeyError, np.linalg.LinAlgError) as exc:  # the weight's curve still helps
            logger.info("data-aware energy of %s failed (%s); showing the weight's", layer, exc)
    return RankFacts(even - 1, even, tuple(float(e) for e in lowrank.energy_curve(graph, layer)))


def _guarded(what: str, layer: str, compute: Any) -> Any:
    try:
        return compute()
    except (LayerLabError, ValueError, KeyError) as exc:  # one odd layer must not lose the others' facts
        logger.warning("%s of %s failed: %s", what, layer, exc)
        return f"check failed: {exc}"


def layer_facts(graph: Any, calibration: Sequence[dict[str, Any]] | None = None) -> Job[LayerFacts]:
    """Compute the facts of every layer of ``graph``; yields after each layer, returns what it has when cancelled.
    ``calibration``: input feeds for the data-aware energy curves (None: the weights' curves)."""
    facts = LayerFacts(graph.sha256)
    find_group = getattr(prune, "prune_group", None)  # offered by the pruning work when it has landed
    layers = graph.layers
    try:
        for i, node in enumerate(layers):
            yield Progress(i, len(layers), f"layer options: {node.name}")
            name = node.name
            facts.prune[name] = (_guarded("prune check", name, lambda: prune.can_prune(graph, name))
                                 if op_facts(node.op_type).prunable else f"{node.op_type} cannot be pruned")
            facts.rank[name] = _guarded("rank facts", name, lambda: _rank_facts(graph, name, calibration))
            if find_group is not None and facts.prune[name] is None:
                members = _guarded("prune group", name, lambda: group_members(find_group(graph, name)))
                if not isinstance(members, str):
                    facts.groups[name] = members
    except Cancelled:
        facts.complete = False
        return facts
    yield Progress(len(layers), len(layers), "layer options ready")
    return facts


def layer_facts_job(path: str | Path, input_shapes: Mapping[str, tuple[int, ...]] | None = None,
                    evaluator: str | Path | None = None) -> Job[LayerFacts]:
    """Load the model (as the window did) and compute ``layer_facts``; with ``evaluator`` (a path) its
    calibration samples give the data-aware energy curves (none when it has only random inputs).
    The facts record the evaluator they were computed with (``LayerFacts.evaluator``)."""
    yield Progress(0, 0, "loading the model")
    graph = load_graph(path, input_shapes)
    calibration = None
    if evaluator is not None:
        from engine.evaluate.calibration import calibration_for

        yield Progress(0, 0, "loading the evaluator's calibration")
        found = calibration_for(graph, load_job_evaluator(evaluator, path, input_shapes))  # never the scored samples
        calibration = None if found.random else found.samples
    facts = yield from layer_facts(graph, calibration)
    facts.evaluator = None if evaluator is None else str(evaluator)
    return facts

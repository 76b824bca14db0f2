"""Build the DPRS problem (``engine.optimize.dprs.Problem``) from what was measured: profile, sensitivity, graph.

Nodes are every graph node (ops offer one routine, "fp32", at their profiled time); edges are the
graph's data edges plus, where ``engine.measure.predict`` prices an island border, an edge between
the two layers whose routines decide it. Costs follow ``engine.measure.predict.predict_ms`` so that a
route's predicted latency agrees with it:

- unary: the node's time under the routine (fp32 and ops: the fp32 run's time); ORT's fixed run cost
  is added to the first node, the same for every routine, so it never changes the choice; a layer's
  routine also carries its share of how the ops around it change in that routine's run
  (``engine.measure.predict.context_shares``);
- int8: a Quantize on each activation input and a Dequantize on each output, priced by the profile's
  micro-measurements; where an int8 layer feeds another int8 layer directly the pair costs ~0 (ORT
  fuses it), so those two are paid only when the neighbour is not int8;
- fp16: a Cast on each activation input and output, on the same terms (as predict_ms prices them);
- island borders: where an island of int8 Convs (or fp32 Convs) meets anything else, ORT may add a
  Transpose (or an NCHWc reorder), weighted as ``predict_ms`` weights them. A border is a pairwise
  term between the Conv and the layer reached through ops; when several layers are reached the cost
  is shared among them (exact when one or all of them differ).

Drops come from the sensitivity (negative drops, i.e. noise, count as 0; a routine without a
measured drop is not offered); weight bytes are 4 B/param for fp32, 2 for fp16, 1 for int8.

Provider routines (``fp32@OpenVINO``, ``int8@OpenVINO``; ``engine.measure.provider_tables``) are offered
when ``routines`` names them: a layer's is its segment's time on that provider, an op follows its
segment's layer there at no time of its own (a pair cost ties them), and a data edge between providers
pays a crossing (``engine.measure.provider_costs``, as predict_ms prices it). A provider routine's drop
is its precision's (``int8@OpenVINO`` has int8's): the same QDQ model, another provider's kernels.

Structural routines (``prune:<ratio>``, ``rank:<fraction>``; ``engine.optimize.structural``) are
offered like the others when the profile times them and the sweep measured their drop: fp32 weights
at (1 - ratio) or ``fraction`` of the params, and a pair cost forbids a pruned root with a factored consumer.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from engine.optimize import dprs
from engine.errors import LayerLabError
from engine.ir.graph import ModelGraph
from engine.measure.graph_index import graph_index
from engine.measure.predict import CONVERTS, _borders, context_shares  # the same island rule as predict_ms
from engine.measure.provider_costs import crossing_ms
from engine.measure.providers import CPU, routine_on, split_routine
from engine.ir.partition import owners
from engine.evaluate.structural import is_structural
from engine.optimize.structural import forbidden_pairs

if TYPE_CHECKING:
    from engine.measure.profiler import Profile
    from engine.evaluate.sensitivity import Sensitivity

__all__ = ["BYTES_PER_PARAM", "build_problem"]

logger = logging.getLogger(__name__)

BYTES_PER_PARAM = {"fp32": 4, "fp16": 2, "int8": 1, "int8_dynamic": 1}
_TIED = 1e9  # an op on another provider than its segment's layer: never chosen
_CONVERTS = CONVERTS  # the same adapts at the same sites as predict_ms (engine.measure.predict.convert_sites)


def build_problem(
    graph: ModelGraph,
    profile: Profile,
    sensitivity: Sensitivity | None,
    *,
    pinned: Mapping[str, str] | None = None,
    routines: Sequence[str] = ("fp32", "int8", "int8_dynamic", "fp16"),
) -> dprs.Problem:
    """The DPRS problem for ``graph``: see the module docstring. ``pinned`` maps layer -> routine."""
    pinned = dict(pinned or {})
    by_name = {lp.name: lp for lp in profile.layers}
    missing = [n.name for n in graph.nodes if n.name not in by_name]
    if missing:
        raise LayerLabError(f"{graph.label}: the profile has no time for node {missing[0]!r} (profile of another model?)")
    layer_names = {n.name for n in graph.layers}
    times: dict[str, dict[str, float]] = {}
    drops: dict[str, dict[str, float]] = {}
    nbytes: dict[str, dict[str, int]] = {}
    for node in graph.nodes:
        lp = by_name[node.name]
        offered = {"fp32": lp.ms}
        if node.name in layer_names:
            known = sensitivity.layers.get(node.name) if sensitivity is not None else None
            for r in routines:
                if r == "fp32" or r not in lp.routines:
                    continue
                base = split_routine(r)[0]  # fp32@OpenVINO loses what fp32 does: nothing
                if sensitivity is not None and base != "fp32" and (known is None or base not in known.drops):
                    continue  # unknown accuracy cost: never offer it blind
                offered[r] = lp.routines[r]
                drops.setdefault(node.name, {})[r] = max(float(known.drops[base]), 0.0) if known and base != "fp32" else 0.0
        times[node.name] = offered
        params = int(node.params or 0)
        nbytes[node.name] = {r: _weight_bytes(params, r) for r in offered}
    pairs: dict[tuple[str, str], dict[tuple[str, str], float]] = {}
    _add_providers(graph, profile, times, nbytes, pairs)
    for name, extra in context_shares(profile, graph).items():  # ops around a layer change with its routine
        for r, ms in extra.items():
            if name in times and r != "fp32" and r in times[name]:
                times[name][r] += ms
    if graph.nodes:
        run_ms = sum(a.ms for a in profile.adapts if a.routine == "fp32" and a.kind == "run")
        first = graph.nodes[0].name
        times[first] = {r: t + run_ms for r, t in times[first].items()}
    _add_converts(graph, profile, times, pairs)
    _add_borders(graph, profile, times, pairs)
    if any(is_structural(r) for offered in times.values() for r in offered):
        for key, table in forbidden_pairs(graph, times).items():
            pairs.setdefault(key, {}).update(table)
    edges = list(dict.fromkeys([(e.src, e.dst) for e in graph.edges if e.src != e.dst] + list(pairs)))
    unknown_pins = sorted(set(pinned) - layer_names)
    if unknown_pins:
        raise LayerLabError(f"{graph.label}: pinned layer {unknown_pins[0]!r} is not a layer of the model")
    return dprs.Problem(
        nodes=[n.name for n in graph.nodes],
        edges=edges,
        times=times,
        adapt=pairs,
        drops=drops,
        weight_bytes=nbytes,
        pinned={n: frozenset({r}) for n, r in pinned.items()},
    )


def _add_providers(graph: ModelGraph, profile: Profile, times: dict[str, dict[str, float]],
                   nbytes: dict[str, dict[str, int]], pairs: dict) -> None:
    """Provider routines (``fp32@OpenVINO``): an op offers ``fp32@<provider>`` at no time of its own (its
    layer's segment time holds it), tied to its layer's provider by a prohibitive pair cost; every data
    edge pays a crossing where its ends' providers differ. As ``engine.measure.provider_costs`` prices them."""
    providers = sorted({split_routine(r)[1] for offered in times.values() for r in offered} - {CPU})
    if not providers:
        return
    owner = owners(graph)
    for node in graph.nodes:
        if node.tunable or node.name not in owner:
            continue
        for p in providers:
            times[node.name][routine_on("fp32", p)] = 0.0
        nbytes[node.name] = dict.fromkeys(times[node.name], nbytes[node.name].get("fp32", 0))
        _add(pairs, owner[node.name], node.name, times,
             lambda rs, rd: _TIED if split_routine(rs)[1] != split_routine(rd)[1] else 0.0)
    for e in graph.edges:
        info = graph.tensors.get(e.tensor)
        size = info.nbytes if info else None
        _add(pairs, e.src, e.dst, times,
             lambda rs, rd, size=size: crossing_ms(profile, split_routine(rs)[1], split_routine(rd)[1], size))


def _weight_bytes(params: int, routine: str) -> int:
    """fp32/fp16/int8 bytes per param; a pruned root keeps (1 - ratio) of its params, rank f of break-even
    keeps f of them (k (m + n) params with k = f m n / (m + n)), both in fp32."""
    if routine.startswith("prune:"):
        return int(params * (1 - float(routine.split(":")[1]))) * 4
    if routine.startswith("rank:"):
        return int(params * float(routine.split(":")[1])) * 4
    return params * BYTES_PER_PARAM.get(split_routine(routine)[0], 4)


def _add(pairs: dict, src: str, dst: str, times: Mapping[str, Mapping[str, float]], cost: Any) -> None:
    """Add ``cost(r_src, r_dst)`` to the pair table of edge (src, dst)."""
    table = pairs.setdefault((src, dst), {})
    for rs in times[src]:
        for rd in times[dst]:
            c = float(cost(rs, rd))
            if c:
                table[(rs, rd)] = table.get((rs, rd), 0.0) + c


def _activations(graph: ModelGraph, node: Any) -> list[str]:
    return [t for t in node.inputs if t and t not in node.weights and t in graph.tensors]


def _add_converts(graph: ModelGraph, profile: Profile, times: dict[str, dict[str, float]], pairs: dict) -> None:
    """Quantize/Dequantize (int8) and Casts (fp16) at a layer's borders, skipped between same-routine layers
    connected directly: pairwise, the sites of ``engine.measure.predict.convert_sites``."""
    producers = {o: n for n in graph.nodes for o in n.outputs}
    consumers: dict[str, list[Any]] = {}
    for n in graph.nodes:
        for t in dict.fromkeys(n.inputs):
            consumers.setdefault(t, []).append(n)
    layers = {n.name for n in graph.layers}
    for node in graph.layers:
        for routine, (kind_in, kind_out) in _CONVERTS.items():
            if routine not in times[node.name]:
                continue
            for t in _activations(graph, node):
                ms = profile.adapt_ms(t, kind_in) or 0.0
                src = producers.get(t)
                if src is None or src.name == node.name:
                    times[node.name][routine] += ms  # a graph input: always converted
                else:
                    both = src.name in layers
                    _add(pairs, src.name, node.name, times,
                         lambda rs, rd, r=routine, ms=ms, both=both: ms if rd == r and not (both and rs == r) else 0.0)
            for t in node.outputs:
                ms = profile.adapt_ms(t, kind_out) or 0.0
                users = consumers.get(t, [])
                if len(users) == 1 and users[0].name in layers and users[0].name != node.name:
                    _add(pairs, node.name, users[0].name, times,
                         lambda rs, rd, r=routine, ms=ms: ms if rs == r and rd != r else 0.0)
                else:
                    times[node.name][routine] += ms  # one conversion whoever reads it


def _add_borders(graph: ModelGraph, profile: Profile, times: dict[str, dict[str, float]], pairs: dict) -> None:
    """Transposes around int8 Conv islands and NCHWc reorders around fp32 ones, weighted like predict_ms."""
    index = graph_index(graph)
    for routine, kind, seen in (("int8", "transpose", "transpose"), ("fp32", "layout", "reorder")):
        observed = sum(1 for a in profile.adapts if a.routine == routine and a.kind == seen)
        expected = len(_borders(graph, {n.name: routine for n in graph.layers}, routine))
        weight = min(observed / expected, 1.0) if expected else 0.0
        if weight == 0.0:
            continue
        for node in graph.layers:
            if node.op_type != "Conv" or routine not in times[node.name]:
                continue
            ends = [(t, True) for t in _activations(graph, node)] + [(t, False) for t in node.outputs]
            for t, upstream in ends:
                ms = weight * (profile.adapt_ms(t, kind) or 0.0)
                if not ms:
                    continue
                others, open_end = index.reach(t, upstream)
                others = [o for o in others if o.name != node.name]
                if open_end or not others or any(o.op_type != "Conv" for o in others):
                    times[node.name][routine] += ms  # a border whatever the other side runs
                    continue
                for o in others:  # a border only where the other side differs; shared among them
                    key = (o.name, node.name) if upstream else (node.name, o.name)
                    _add(pairs, key[0], key[1], times,
                         lambda rs, rd, r=routine, ms=ms / len(others), me=int(upstream):
                         ms if (rs, rd)[me] == r and (rs, rd)[1 - me] != r else 0.0)

"""Predict a plan's end-to-end latency from a profile: per-node routine times plus the adapts it implies.

Kept apart from the profiler so DPRS-side code and tests can use it without touching ONNX Runtime.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from engine.ir.graph import ModelGraph
from engine.measure.graph_index import graph_index, reached_layers
from engine.measure.provider_costs import crossings_of, placement, uses_providers
from engine.measure.providers import CPU
from engine.measure.tables import AdaptCost, LayerProfile, Profile

__all__ = ["CONVERTS", "context_scale", "context_shares", "convert_sites", "predict_ms", "reached_layers"]

logger = logging.getLogger(__name__)

#: The adapt a layer in a routine needs on each activation input and each output: (on inputs, on outputs).
CONVERTS = {"int8": ("quantize", "dequantize"), "fp16": ("cast", "cast")}


def convert_sites(graph: ModelGraph, chosen: Mapping[str, str], routine: str) -> tuple[list[str], list[str]]:
    """The tensors that get a converting adapt when the layers ``chosen`` names run ``routine``: each
    such layer's activation inputs and outputs, except between two layers of that routine connected
    directly (no op between, the output read by that one layer), where ORT keeps the tensor converted
    (QLinearConv -> QLinearConv: no Dequantize/Quantize pair). ``engine.optimize.routes`` prices the
    same sites pairwise, so DPRS and ``predict_ms`` agree on every route."""
    layers = {n.name for n in graph.layers}
    index = graph_index(graph)
    producers, consumers = index.producers, index.consumers
    same = lambda node: node.name in layers and chosen.get(node.name) == routine
    inputs: list[str] = []
    outputs: list[str] = []
    for node in graph.layers:
        if chosen.get(node.name) != routine:
            continue
        for t in _activations(graph, node):
            src = producers.get(t)
            if src is None or src.name == node.name or not same(src):
                inputs.append(t)
        for t in node.outputs:
            users = consumers.get(t, [])
            if not (len(users) == 1 and users[0].name != node.name and same(users[0])):
                outputs.append(t)
    return inputs, outputs


def predict_ms(profile: Profile, graph: ModelGraph, routines: Mapping[str, str], ops: str = "fp32") -> float:
    """Predicted end-to-end ms when each layer named in ``routines`` runs that routine (others fp32).

    ``ops="int8"`` (a plan's ops in int8 too) is priced by ``_predict_ops_int8`` when the profile timed
    the all-int8-with-ops model; otherwise the ops keep their fp32 times.

    Sum of node times under their routine (ops and fp32 layers: the fp32 run's times), ORT's run
    cost, and the adapts the choice implies, priced by the micro-models: for int8 layers a Quantize
    on each activation input and a Dequantize on each output (the QDQ structure). At the borders of
    islands of int8 Convs ORT may add NHWC Transposes, and at the borders of fp32 Conv islands NCHWc
    Reorders (priced as an fp32 Transpose); whether it does depends on the model, so each border
    cost is weighted by how many such adapts the all-int8 / all-fp32 runs showed per border there.
    Where two int8 layers are connected directly, their tensor stays int8 (``convert_sites``); fp16
    layers pay a Cast on the same terms. An op costs what it did in the run whose layers around it
    ran like the route's: each layer pays its share of the change (``context_shares``). A layer on
    another execution provider (``fp32@OpenVINO``) costs its segment's time there, its ops nothing of
    their own, and every edge between providers a crossing (``engine.measure.provider_costs``).
    """
    chosen = {n: r for n, r in routines.items() if r != "fp32"}
    if ops == "int8" and any(lp.int8_ops is not None for lp in profile.layers):
        return _predict_ops_int8(profile, graph, chosen)
    total = sum(a.ms for a in profile.adapts if a.routine == "fp32" and a.kind == "run")
    shares = context_shares(profile, graph)
    where = placement(graph, chosen) if uses_providers(chosen) else {}
    for lp in profile.layers:
        r = chosen.get(lp.name)
        if where.get(lp.name, CPU) != CPU and r is None:
            continue  # an op on another provider: its layer's segment time holds it
        total += lp.routines[r] + shares.get(lp.name, {}).get(r, 0.0) if r is not None and r in lp.routines else lp.ms
    if where:
        total += crossings_of(profile, graph, where)
    for routine, (kind_in, kind_out) in CONVERTS.items():
        ins, outs = convert_sites(graph, chosen, routine)
        total += sum(profile.adapt_ms(t, kind_in) or 0.0 for t in ins)
        total += sum(profile.adapt_ms(t, kind_out) or 0.0 for t in outs)
    for routine, kind, seen in (("int8", "transpose", "transpose"), ("fp32", "layout", "reorder")):
        observed = sum(1 for a in profile.adapts if a.routine == routine and a.kind == seen)
        expected = len(_borders(graph, {n.name: routine for n in graph.layers}, routine))
        weight = min(observed / expected, 1.0) if expected else 0.0
        borders = _borders(graph, {**{n.name: "fp32" for n in graph.layers}, **chosen}, routine)
        total += weight * sum(profile.adapt_ms(t, kind) or 0.0 for t in borders)
    return total


def context_shares(profile: Profile, graph: ModelGraph) -> dict[str, dict[str, float]]:
    """layer -> routine -> ms the ops next to it gain (or lose) when it runs that routine.

    An op's time depends on the layers around it: ORT fuses a bias Add into an fp32 MatMul but runs it
    on its own after an int8 one, and folds it into MatMulIntegerToFloat after an int8_dynamic one. The
    profile has each op's time in every routine's whole-model run (``LayerProfile.context``). Of the n
    layers reached from the op through ops, each running routine r adds 1/n of the op's change from
    the fp32 run to r's: the op then costs a mix of its measured times, weighted by how many of its
    layers run each routine, exact when all run one routine (and r's run converted them all), never
    outside what was measured (per-routine shares over only the layers a run converted would count a
    change twice when two routines' runs both show it, e.g. a slow fp32 run). A unary term per
    layer: the same in DPRS (``engine.optimize.routes``) as here."""
    by_name = {lp.name: lp for lp in profile.layers}
    nodes = {n.name: n for n in graph.nodes}
    index = graph_index(graph)
    shares: dict[str, dict[str, float]] = {}
    for lp in profile.layers:
        node = nodes.get(lp.name)
        if lp.tunable or not lp.context or node is None:
            continue
        around: dict[str, Any] = {}
        for tensors, upstream in ((node.inputs, True), (node.outputs, False)):
            for t in tensors:
                if t:
                    found, _ = index.reach(t, upstream, past_open_ends=True)
                    around.update((n.name, n) for n in found)
        for routine, ms in lp.context.items():
            for name in around:
                if name in by_name and routine in by_name[name].routines:
                    table = shares.setdefault(name, {})
                    table[routine] = table.get(routine, 0.0) + (ms - lp.ms) / len(around)
    # A layer and its share together never cost less than nothing (DPRS takes no negative times): only
    # a run far slower than the others (load) gets there, e.g. ddddocr's LSTM at 5.7 ms vs 2.1 ms.
    for name, table in shares.items():
        for routine in table:
            table[routine] = max(table[routine], -by_name[name].routines[routine])
    return shares


def _predict_ops_int8(profile: Profile, graph: ModelGraph, chosen: Mapping[str, str]) -> float:
    """Ops in int8: ops and int8 layers at their times in the all-int8-with-ops run, plus the Q/DQ and
    transposes that run showed (between int8 neighbours ORT fuses them away); a layer in another routine
    reads its activations through a Dequantize and hands its outputs on through a Quantize."""
    total = sum(a.ms for a in profile.adapts if a.routine == "fp32" and a.kind == "run")
    total += sum(a.ms for a in profile.adapts if a.routine == "int8_ops")
    for lp in profile.layers:
        r = chosen.get(lp.name)
        if not lp.tunable or r == "int8":
            total += lp.int8_ops if lp.int8_ops is not None else lp.ms
        else:
            total += lp.routines.get(r, lp.ms) if r is not None else lp.ms
    for node in graph.layers:
        if chosen.get(node.name) != "int8":
            total += sum(profile.adapt_ms(t, "dequantize") or 0.0 for t in _activations(graph, node))
            total += sum(profile.adapt_ms(t, "quantize") or 0.0 for t in node.outputs)
    return total


def _activations(graph: ModelGraph, node: Any) -> list[str]:
    return [t for t in node.inputs if t and t not in node.weights and t in graph.tensors]


def _borders(graph: ModelGraph, plan: Mapping[str, str], routine: str) -> list[str]:
    """Tensors where an island of Conv layers in ``routine`` meets anything else (walks from ``graph_index``)."""
    index = graph_index(graph)
    same = lambda other: other.op_type == "Conv" and plan.get(other.name) == routine
    out = []
    for node in graph.layers:
        if node.op_type != "Conv" or plan.get(node.name) != routine:
            continue
        out += [t for t in _activations(graph, node) if not _island(index.reach(t, True), same)]
        out += [t for t in node.outputs if not _island(index.reach(t, False), same)]
    return out


def _island(reached: tuple[tuple[Any, ...], bool], same: Any) -> bool:
    """Whether a tensor that reaches ``reached`` (layers, open end) reaches only layers for which ``same`` holds."""
    layers, open_end = reached
    return not open_end and bool(layers) and all(same(node) for node in layers)


_SCALE_BOUNDS = (0.25, 4.0)  # beyond these the attribution, not the context, is the likelier cause


def context_scale(graph: ModelGraph, layers: Sequence[LayerProfile], adapts: Sequence[AdaptCost]) -> dict[str, float]:
    """Quantize and Dequantize cost more inside the model than on a one-node micro-model (ppocr-rec:
    1.56 ms of Q/DQ seen in the all-int8 run vs 0.77 ms from micro-models): caches are cold and the
    DQ output feeds an fp32 op. Per kind, the all-int8 run's total over the micro total at the same
    sites (every int8 layer's activation inputs and outputs) scales every micro price."""
    int8 = {lp.name: "int8" for lp in layers if "int8" in lp.routines}
    micro = {(a.tensor, a.kind): a.ms for a in adapts if a.routine is None}
    ins, outs = convert_sites(graph, int8, "int8")  # the sites the all-int8 run has Q/DQ at
    sites: dict[str, set[str]] = {"quantize": set(ins), "dequantize": set(outs)}
    scale: dict[str, float] = {}
    # The layout adapts likewise, from the run whose borders they are: NHWC Transposes at int8 Conv islands
    # (the all-int8 run) and NCHWc Reorders at fp32 ones (the fp32 run). Unscaled, ppocr-cls-mbv3's fp32
    # borders were priced 0.367 ms by micro-models where its fp32 run showed 0.082 ms of Reorders, so
    # an all-fp32 route was predicted at 0.996 ms against that run's 0.711.
    seen_kind = {"quantize": "quantize", "dequantize": "dequantize", "transpose": "transpose", "layout": "reorder"}
    run_of = {"quantize": "int8", "dequantize": "int8", "transpose": "int8", "layout": "fp32"}
    for routine, kind in (("int8", "transpose"), ("fp32", "layout")):
        plan = {lp.name: routine for lp in layers if routine == "fp32" or routine in lp.routines}
        sites[kind] = set(_borders(graph, plan, routine))
    for kind, tensors in sites.items():
        expected = sum(micro.get((t, kind), 0.0) for t in tensors)
        seen = sum(a.ms for a in adapts if a.routine == run_of[kind] and a.kind == seen_kind[kind])
        if expected > 0 and seen > 0:
            scale[kind] = min(max(seen / expected, _SCALE_BOUNDS[0]), _SCALE_BOUNDS[1])
    return scale

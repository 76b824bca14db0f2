"""What a route costs where it places layers on different execution providers (no ONNX Runtime here).

A layer's provider routine (``fp32@OpenVINO``) is timed on its whole segment (the layer and the ops
after it, ``engine.ir.partition.segments``), so its time holds its ops' too: a node costs nothing
of its own when its segment's layer runs on another provider. Where a data edge joins nodes on
different providers, the tensor crosses a session border: the profile's ``crossings`` fit
(``fixed_ms + ms_per_mb * MB`` for each ordered pair of providers, ``engine.measure.provider_tables``)
prices it by the tensor's bytes at the profiled shapes. ``predict_ms`` and DPRS
(``engine.optimize.routes``) both price a route with these functions, edge by edge.

A tensor read by several nodes on the other side is priced once per reading edge, and each crossing
pays its session's entry: a route's parts read all their inputs in one entry, so a fan-out across a
border is overpriced (the measured route shows by how much).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from engine.errors import SettingsError
from engine.ir.graph import ModelGraph
from engine.ir.partition import owners
from engine.measure.providers import CPU, routine_on, split_routine
from engine.measure.tables import Profile

__all__ = ["crossing_ms", "crossings_of", "node_routines", "placement", "uses_providers"]

logger = logging.getLogger(__name__)

_MB = 1024.0 * 1024.0


def uses_providers(routines: Mapping[str, str]) -> bool:
    """Whether any routine names a provider other than CPU."""
    return any(split_routine(r)[1] != CPU for r in routines.values())


def placement(graph: ModelGraph, routines: Mapping[str, str]) -> dict[str, str]:
    """node -> provider: each layer's routine's provider (CPU when not named), each op its segment's."""
    layers = {n.name for n in graph.layers}
    unknown = sorted(set(routines) - layers)
    if unknown:
        raise SettingsError(f"{graph.label}: {unknown[0]!r} is not a layer of the model")
    owner = owners(graph)
    provider = {name: split_routine(routines.get(name, "fp32"))[1] for name in layers}
    return {n.name: provider[owner[n.name]] if n.name in owner else CPU for n in graph.nodes}


def crossing_ms(profile: Profile, src: str, dst: str, nbytes: int | None) -> float:
    """The cost of handing ``nbytes`` from a session on ``src`` to one on ``dst`` (0 on one provider;
    the fit's fixed part alone when the size is unknown; 0 when the profile never measured the pair)."""
    if src == dst:
        return 0.0
    fit = profile.crossings.get(f"{src}>{dst}")
    if fit is None:
        return 0.0
    fixed, per_mb = fit
    return max(float(fixed) + float(per_mb) * (nbytes or 0) / _MB, 0.0)


def crossings_of(profile: Profile, graph: ModelGraph, where: Mapping[str, str]) -> float:
    """Sum of ``crossing_ms`` over the graph's data edges whose ends ``where`` places on different providers."""
    total = 0.0
    for e in graph.edges:
        if where[e.src] != where[e.dst]:
            info = graph.tensors.get(e.tensor)
            total += crossing_ms(profile, where[e.src], where[e.dst], info.nbytes if info else None)
    return total


def node_routines(graph: ModelGraph, routines: Mapping[str, str]) -> dict[str, str]:
    """A DPRS route for every node from a per-layer one: layers as given (fp32 when not named), each op
    ``fp32`` on its segment's provider (``fp32@OpenVINO`` beside an OpenVINO layer)."""
    where = placement(graph, routines)
    layers = {n.name for n in graph.layers}
    return {n.name: routines.get(n.name, "fp32") if n.name in layers else routine_on("fp32", where[n.name])
            for n in graph.nodes}

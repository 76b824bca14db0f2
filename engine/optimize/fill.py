"""Tune's two ways to move within the budget after measuring a route: revert the worst layers when the
measured drop is over it, and fill it when the measured drop is under it.

Per-layer drops do not add up exactly: a route DPRS chose within ``max_drop`` often measures well
below it. ``next_layers`` then picks the fp32 layers to change next, by predicted time saved
(``engine.measure.predict.predict_ms`` of the whole route, so adapts and island borders count) per
unit of predicted drop, as many as the remaining budget (max_drop less the measured drop) holds by
their predicted drops; the measurement then decides. ``worst_layers`` is the way back.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence

from engine.evaluate.sensitivity import Sensitivity
from engine.ir.graph import ModelGraph
from engine.measure.predict import predict_ms
from engine.measure.providers import split_routine
from engine.measure.tables import Profile

__all__ = ["next_layers", "worst_layers"]

logger = logging.getLogger(__name__)

_MIN_DROP = 1e-6  # a layer that loses nothing is worth its saving per this much drop


def next_layers(graph: ModelGraph, profile: Profile, sens: Sensitivity, current: Mapping[str, str],
                pinned: Mapping[str, str], remaining: float, routines: Sequence[str]) -> dict[str, str]:
    """Layers to add to ``current`` (layer -> routine) within ``remaining`` drop; {} when nothing helps."""
    now = predict_ms(profile, graph, current)
    by_name = {lp.name: lp for lp in profile.layers}
    scored: list[tuple[float, str, str, float]] = []
    for node in graph.layers:
        name = node.name
        if current.get(name, "fp32") != "fp32" or name in pinned or name not in by_name:
            continue
        best = None
        for r in routines:
            ls, base = sens.layers.get(name), split_routine(r)[0]  # int8@OpenVINO loses what int8 does
            if r == "fp32" or r not in by_name[name].routines or (base != "fp32" and (ls is None or base not in ls.drops)):
                continue
            saved = now - predict_ms(profile, graph, {**current, name: r})
            drop = max(float(ls.drops[base]), 0.0) if base != "fp32" and ls is not None else 0.0
            if saved > 0 and (best is None or saved / max(drop, _MIN_DROP) > best[0]):
                best = (saved / max(drop, _MIN_DROP), name, r, drop)
        if best is not None:
            scored.append(best)
    scored.sort(key=lambda s: (-s[0], s[1]))
    out: dict[str, str] = {}
    used = 0.0
    for _, name, r, drop in scored:
        if used + drop > remaining + 1e-12:
            break
        out[name] = r
        used += drop
    return out


def worst_layers(sens: Sensitivity, routines: Mapping[str, str], excess: float, pinned: Mapping[str, str]) -> list[str]:
    """Non-fp32, unpinned layers of the route to revert: most sensitive first, until their drops cover
    ``excess``; at least one, at most a quarter of them (per-layer drops often underestimate the whole)."""
    cands = []
    for name, r in routines.items():
        base = split_routine(r)[0]  # a provider's routine loses what its precision does (fp32@OpenVINO: nothing)
        if base == "fp32" or name in pinned:
            continue
        ls = sens.layers.get(name)
        drop = ls.drops.get(base, 0.0) if ls else 0.0
        sqnr = ls.sqnr_db.get(base, math.inf) if ls else math.inf
        cands.append((-drop, sqnr, name, drop))
    cands.sort()
    out, covered = [], 0.0
    for _, _, name, drop in cands:
        out.append(name)
        covered += max(drop, 0.0)
        if covered >= excess or len(out) >= max(1, len(cands) // 4):
            break
    return out

"""DPRS under limits: the accuracy-drop and memory budgets of ``engine.optimize.dprs.solve``.

One limit adds a "budget used" axis to the frontier DP (``_axis`` discretises it, ``_search`` picks
the cheapest truly feasible cell); both limits price memory in and bisect the price (``_lagrange``).
``_fits``, ``_least`` and ``_hard_limits`` check routes and explain infeasibility. The guarantees
are in ``engine.optimize.dprs``'s docstring.
"""

from __future__ import annotations

import logging
import math
from dataclasses import replace

import numpy as np

from engine.optimize.dprs_core import (
    _TOL,
    Constraints,
    Problem,
    Route,
    _Axis,
    _Compiled,
    _dp,
    _route,
    _trace,
)

__all__: list[str] = []  # internal to engine.optimize.dprs

logger = logging.getLogger(__name__)

_LAGRANGE_STEPS = 12
_MAX_TRIES = 16  # budget cells traced past the safe line before settling


def _axis(amounts: dict[str, np.ndarray], limit: float, resolution: int, nearest: bool) -> _Axis:
    """Discretise one additive limit: ``nearest`` for the search, else floor (a relaxation)."""
    vals = {n: np.maximum(a, 0.0) for n, a in amounts.items()}  # negative drop (noise) counts as 0
    if limit <= 0:
        return _Axis({n: np.where(v > 0, 1, 0) for n, v in vals.items()}, 1, 0)
    flat = [x for v in vals.values() for x in v if x > 0]
    if flat and all(float(x).is_integer() for x in flat) and float(limit).is_integer():
        g = math.gcd(*(int(x) for x in flat))
        if int(limit) // g < resolution:  # integer amounts: their gcd is an exact quantum
            return _Axis({n: (v // g).astype(int) for n, v in vals.items()}, int(limit) // g + 1, int(limit) // g)
    q = limit / (resolution - 1)
    if not nearest:
        return _Axis({n: np.floor(v / q + _TOL).astype(int) for n, v in vals.items()}, resolution, resolution - 1)
    bins = {n: np.rint(v / q).astype(int) for n, v in vals.items()}
    hidden = sum(float(np.max(np.maximum(v - q * bins[n], 0.0))) for n, v in vals.items())
    safe = math.floor((limit - hidden) / q + _TOL)
    return _Axis(bins, resolution + resolution // 4, safe)  # room above the limit: rounding may hide


def _search(problem: Problem, c: _Compiled, order: list[str], axes: list[_Axis],
            cons: Constraints) -> Route | None:
    """Cheapest truly feasible route among the DP's cells: safe cells bound it, riskier cheaper
    cells (above the safe line) are traced and checked with exact sums, cheapest first."""
    tab, events = _dp(c, order, axes)
    safe = np.ones(tab.shape, dtype=bool)
    for i, a in enumerate(axes):
        shape = [1] * len(axes)
        shape[i] = a.cells
        safe &= (np.arange(a.cells) <= a.safe).reshape(shape)
    bound = float(np.min(np.where(safe, tab, np.inf)))
    flat = tab.ravel()
    risky = [int(i) for i in np.argsort(flat, kind="stable") if flat[i] < bound][:_MAX_TRIES]
    for i in risky:
        route = _route(problem, c, _trace(events, axes, np.unravel_index(i, tab.shape)))
        if not _fits(route.drop, route.weight_bytes, cons):
            return route
    if not np.isfinite(bound):
        return None
    cell = np.unravel_index(int(np.argmin(np.where(safe, tab, np.inf))), tab.shape)
    return _route(problem, c, _trace(events, axes, cell))


def _fits(drop: float, nbytes: float, cons: Constraints) -> list[str]:
    """Names of the limits this (drop, bytes) breaks."""
    out = []
    if cons.max_drop is not None and drop > cons.max_drop + _TOL * max(1.0, abs(cons.max_drop)):
        out.append("max_drop")
    if cons.memory_limit is not None and nbytes > cons.memory_limit + _TOL * max(1.0, abs(cons.memory_limit)):
        out.append("memory_limit")
    return out


def _least(c: _Compiled, key: str) -> dict[str, int]:
    """Per node, the routine using least drop (or bytes), faster first among equals."""
    table = c.drops if key == "max_drop" else c.nbytes
    return {n: min(range(len(c.doms[n])), key=lambda r: (table[n][r], c.times[n][r])) for n in c.nodes}


def _hard_limits(c: _Compiled, cons: Constraints) -> tuple[list[str], str]:
    """Limits that no route can meet on its own, with a one-line explanation."""
    hard, why = [], []
    least_drop = sum(float(np.min(v)) for v in c.drops.values())
    least_bytes = sum(float(np.min(v)) for v in c.nbytes.values())
    if "max_drop" in _fits(least_drop, 0, Constraints(max_drop=cons.max_drop)):
        hard.append("max_drop")
        why.append(f"the lowest possible drop {least_drop:.6g} exceeds max_drop {cons.max_drop:.6g}")
    if "memory_limit" in _fits(0.0, least_bytes, Constraints(memory_limit=cons.memory_limit)):
        hard.append("memory_limit")
        why.append(f"the smallest possible weights {least_bytes:.0f} B exceed memory_limit {cons.memory_limit}")
    return hard, "; ".join(why)


def _lagrange(problem: Problem, c: _Compiled, order: list[str], cons: Constraints) -> Route | None:
    """Both limits: DP on the drop axis, memory priced at lambda ms/byte, lambda bisected.
    Every candidate is checked with exact sums; the result is feasible, not proved optimal."""
    axis = [_axis(c.drops, float(cons.max_drop), cons.resolution, True)]
    drop_only = Constraints(max_drop=cons.max_drop)

    def attempt(lam: float) -> Route | None:
        priced = replace(c, times={n: t + lam * c.nbytes[n] for n, t in c.times.items()})
        return _search(problem, priced, order, axis, drop_only)  # routes carry true, unpriced costs

    best: Route | None = None
    lo, lam = 0.0, 0.0
    spread = max(float(np.ptp(b)) for b in c.nbytes.values()) or 1.0
    hi = max(float(np.max(t)) for t in c.times.values()) / spread  # enough to make any layer pick its smallest
    for step in range(_LAGRANGE_STEPS):
        r = attempt(lam)
        if r is None:
            return None  # the drop limit alone cannot be met at this resolution
        if r.weight_bytes <= cons.memory_limit:
            if best is None or r.latency_ms < best.latency_ms:
                best = r
            if step == 0:
                return best  # memory never mattered
            hi = lam
        else:
            lo = lam
            if best is None and step > 0 and lam >= hi:
                hi *= 4
        lam = (lo + hi) / 2 if step > 0 else hi
    return best

"""DPRS: choose one routine per layer so the whole graph runs fastest (pure: tables in, route out).

The cost of a route is ``sum_i t_i(r_i) + sum_(i,j) a_ij(r_i, r_j)``: unary profiled times plus a
pairwise adapt cost on every data edge whose ends run different routines. The SoftNeuro paper solves
chains by DP and series-parallel graphs by conditioning on the routine at each fork; we solve the
same minimisation with a more general exact method.

Algorithm: a frontier DP (variable elimination along a path decomposition). Nodes are placed one at
a time; the table holds, for every assignment of the *frontier* (placed nodes that still have an
unplaced neighbour), the cheapest cost of everything placed so far. Placing a node adds its unary
time and the adapts to its placed neighbours; a node whose neighbours are all placed is minimised
out and an argmin table kept for the back-trace. This is exact on any DAG (chains, residual blocks,
nested branches, concats, several inputs/outputs: no virtual source/sink is needed, as nothing
relies on series-parallel shape). Its cost is ``prod(domain sizes of the frontier)`` per step, i.e.
exponential only in the width of the placement order; ops with one routine cost nothing. The order
is the better of the given topological order and a greedy one that keeps the frontier small (it
closes a join as soon as one branch reaches it). A graph too wide for that raises LayerLabError.

Constraints beyond the paper: accuracy drop (sum of per-node drops <= max_drop) and memory (sum of
weight bytes <= memory_limit). Both are additive, so for one limit the table gains a "budget used"
axis of ``Constraints.resolution`` cells up to the limit (plus a quarter above it); placing a node
shifts the table along it. Amounts are rounded to the nearest cell (quantum ``q = limit /
(resolution - 1)``); cells low enough that no rounding can hide an overrun are "safe", and cheaper
cells above them are traced and checked with exact sums. Guarantees, ``m`` being the number of nodes
with a routine that uses any of the budget:
- a route reported feasible truly is (exact sums, tolerance 1e-9);
- its latency is <= the true optimum under the tightened limit ``limit - m*q``;
- it is exactly optimal when every amount is a multiple of ``q`` (integer byte counts use their gcd
  as quantum whenever ``limit / gcd < resolution``, making the memory limit exact);
- when the unconstrained optimum already fits, it is returned and is exact.
Both limits at once: DP over the drop axis with memory priced in (time + lambda * bytes), lambda
bisected (Lagrangian). Feasible when reported so, but not proved optimal (duality gap); the tests
measure the gap against brute force.
If nothing fits, the route is ``feasible=False`` and ``binding`` says why: a single limit below the
least any route can use ("max_drop" / "memory_limit"), both limits together ("max_drop+memory_limit",
proved by a DP with amounts rounded down, a relaxation), or an unusable pin ("pinned"); otherwise the
limit that the fastest route breaks, with a ``detail`` saying the search may have missed a route.
"""

from __future__ import annotations

import logging
import math
from dataclasses import replace

import numpy as np

from engine.optimize.constraints import (
    _axis,
    _fits,
    _hard_limits,
    _lagrange,
    _least,
    _search,
)
from engine.optimize.dprs_core import (  # the types are defined there; importable from here as before
    _MAX_CELLS,
    _TOL,
    AdaptCosts,  # noqa: F401
    Constraints,
    Problem,
    Route,
    _compile,
    _dp,
    _plan,
    _route,
    _trace,
    route_cost,
)
from engine.errors import LayerLabError

__all__ = ["Constraints", "Problem", "Route", "brute_force", "route_cost", "solve"]

logger = logging.getLogger(__name__)

_BRUTE_FORCE_LIMIT = 1 << 20


def solve(problem: Problem, constraints: Constraints = Constraints()) -> Route:
    """Fastest route (exact when unconstrained); see the module docstring for constrained guarantees."""
    if not problem.nodes:
        return Route({}, 0.0, 0.0, 0, 0.0)
    c = _compile(problem)
    order, peak = _plan(c)
    best = _route(problem, c, _trace(_dp(c, order, [])[1], [], ()))
    broken = _fits(best.drop, best.weight_bytes, constraints)
    if not broken:
        return best
    binding = "+".join(broken)
    hard, why = _hard_limits(c, constraints)
    if hard:
        return _route(problem, c, _least(c, hard[0]), False, "+".join(hard), why)
    limits = [(c.drops, constraints.max_drop), (c.nbytes, constraints.memory_limit)]
    limits = [(a, lim) for a, lim in limits if lim is not None]
    per_axis = max(2, int(constraints.resolution ** (1.0 / len(limits))))
    if peak * (1.25 * per_axis) ** len(limits) > _MAX_CELLS:
        per_axis = max(2, int((_MAX_CELLS // peak) ** (1.0 / len(limits)) / 1.25))
        logger.warning("dprs: budget resolution lowered to %d cells per limit to fit in memory", per_axis)
    if len(limits) == 1:
        found = _search(problem, c, order, [_axis(limits[0][0], float(limits[0][1]), per_axis, True)], constraints)
    else:
        found = _lagrange(problem, c, order, constraints)
    routes = [found] if found is not None else []
    routes += [_route(problem, c, _least(c, k)) for k in ("max_drop", "memory_limit")]
    routes = [r for r in routes if not _fits(r.drop, r.weight_bytes, constraints)]
    if routes:
        r = min(routes, key=lambda r: r.latency_ms)
        return r if r.binding == "pinned" else replace(r, binding=binding)
    relaxed, _ = _dp(c, order, [_axis(a, float(lim), per_axis, False) for a, lim in limits])
    fallback = _least(c, "max_drop")
    if not np.isfinite(relaxed.min()):  # even amounts rounded down do not fit: proved infeasible
        return _route(problem, c, fallback, False, "max_drop+memory_limit",
                      "no route meets max_drop and memory_limit together")
    return _route(problem, c, fallback, False, binding,
                  f"no route found at resolution {constraints.resolution}; a finer resolution may find one")


def brute_force(problem: Problem, constraints: Constraints = Constraints()) -> Route:
    """Exhaustive search over every route (for tests; at most about a million routes)."""
    if not problem.nodes:
        return Route({}, 0.0, 0.0, 0, 0.0)
    c = _compile(problem)
    sizes = [len(c.doms[n]) for n in c.nodes]
    if math.prod(sizes) > _BRUTE_FORCE_LIMIT:
        raise LayerLabError(f"dprs: {math.prod(sizes)} routes are too many for brute force")
    idx = {n: g.ravel() for n, g in zip(c.nodes, np.indices(sizes, dtype=np.int8))}
    lat = sum(c.times[n][idx[n]] for n in c.nodes)
    for s, d in c.factors:
        lat = lat + c.pair[(s, d)][idx[s], idx[d]]
    drop = sum(c.drops[n][idx[n]] for n in c.nodes)
    nbytes = sum(c.nbytes[n][idx[n]] for n in c.nodes)
    ok = np.ones(lat.shape, dtype=bool)
    tol = lambda lim: _TOL * max(1.0, abs(lim))
    if constraints.max_drop is not None:
        ok &= drop <= constraints.max_drop + tol(constraints.max_drop)
    if constraints.memory_limit is not None:
        ok &= nbytes <= constraints.memory_limit + tol(constraints.memory_limit)
    pick = lambda k: {n: int(idx[n][k]) for n in c.nodes}
    free = pick(int(np.argmin(lat)))
    if not ok.any():
        hard, why = _hard_limits(c, constraints)
        if hard:
            return _route(problem, c, _least(c, hard[0]), False, "+".join(hard), why)
        return _route(problem, c, _least(c, "max_drop"), False, "max_drop+memory_limit",
                      "no route meets max_drop and memory_limit together")
    best = _route(problem, c, pick(int(np.argmin(np.where(ok, lat, np.inf)))))
    broken = _fits(*route_cost(problem, {n: c.doms[n][free[n]] for n in c.nodes})[1:], constraints)
    if broken and best.binding != "pinned":
        return replace(best, binding="+".join(broken))
    return best

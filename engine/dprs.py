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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from engine.errors import LayerLabError

__all__ = ["Constraints", "Problem", "Route", "brute_force", "route_cost", "solve"]

logger = logging.getLogger(__name__)

AdaptCosts = (
    Callable[[str, str, str, str], float] | Mapping[tuple[str, str], Mapping[tuple[str, str], float]]
)

_MAX_CELLS = 1 << 24  # largest DP table we allow (float64: 128 MB)
_BRUTE_FORCE_LIMIT = 1 << 20
_LAGRANGE_STEPS = 12
_MAX_TRIES = 16  # budget cells traced past the safe line before settling
_TOL = 1e-9


@dataclass(frozen=True)
class Problem:
    """Profiled tables for one (collapsed) graph; every map is keyed by node name, then routine."""

    nodes: Sequence[str]
    edges: Sequence[tuple[str, str]]
    times: Mapping[str, Mapping[str, float]]
    adapt: AdaptCosts = field(default_factory=dict)
    drops: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    weight_bytes: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    pinned: Mapping[str, frozenset[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Constraints:
    """Limits on the route; ``resolution`` is the number of budget cells of the DP (see module doc)."""

    max_drop: float | None = None
    memory_limit: int | None = None
    resolution: int = 1024


@dataclass(frozen=True)
class Route:
    """DPRS's answer: one routine per node with predicted totals."""

    routines: dict[str, str]
    latency_ms: float
    drop: float
    weight_bytes: int
    adapts_ms: float
    feasible: bool = True
    binding: str | None = None
    detail: str = ""


@dataclass
class _Compiled:
    nodes: list[str]
    doms: dict[str, tuple[str, ...]]  # allowed routines per node
    times: dict[str, np.ndarray]
    drops: dict[str, np.ndarray]
    nbytes: dict[str, np.ndarray]
    pair: dict[tuple[str, str], np.ndarray]  # (u, v) -> adapt matrix [r_u, r_v], both directions
    nbrs: dict[str, list[str]]
    factors: list[tuple[str, str]]  # one key per adjacent pair
    bad_pins: list[str]


def _adapt_fn(problem: Problem) -> Callable[[str, str, str, str], float]:
    if callable(problem.adapt):
        return problem.adapt
    table = problem.adapt
    return lambda s, d, rs, rd: float(table.get((s, d), {}).get((rs, rd), 0.0))


def _edges(problem: Problem) -> list[tuple[str, str]]:
    """Validated, de-duplicated edges (Add(x, x) is one data dependency, paid once)."""
    known = set(problem.nodes)
    out: dict[tuple[str, str], None] = {}
    for src, dst in problem.edges:
        if src not in known or dst not in known:
            raise LayerLabError(f"dprs: edge ({src!r}, {dst!r}) names a node that is not in the problem")
        if src == dst:
            raise LayerLabError(f"dprs: edge ({src!r}, {dst!r}) is a self-loop")
        out[(src, dst)] = None
    return list(out)


def _compile(problem: Problem) -> _Compiled:
    nodes = list(problem.nodes)
    if len(set(nodes)) != len(nodes):
        raise LayerLabError("dprs: the problem lists a node more than once")
    doms, bad = {}, []
    for n in nodes:
        have = list(problem.times.get(n, {}))
        if not have:
            raise LayerLabError(f"dprs: node {n!r} has no profiled routine")
        pin = problem.pinned.get(n)
        allowed = tuple(r for r in have if pin is None or r in pin)
        if not allowed:
            bad.append(n)  # pinned to routines never profiled: solve as if unpinned, report it
            allowed = tuple(have)
        doms[n] = allowed

    def vec(table: Mapping[str, Mapping[str, float]], n: str) -> np.ndarray:
        row = table.get(n, {})
        return np.array([float(row.get(r, 0.0)) for r in doms[n]])

    times = {n: vec(problem.times, n) for n in nodes}
    for n, t in times.items():
        if not np.all(np.isfinite(t)) or np.any(t < 0):
            raise LayerLabError(f"dprs: node {n!r} has a negative or non-finite time")
    nbytes = {n: vec(problem.weight_bytes, n) for n in nodes}
    if any(np.any(b < 0) for b in nbytes.values()):
        raise LayerLabError("dprs: weight_bytes must not be negative")
    fn = _adapt_fn(problem)
    pair: dict[tuple[str, str], np.ndarray] = {}
    nbrs: dict[str, list[str]] = {n: [] for n in nodes}
    factors: list[tuple[str, str]] = []
    for s, d in _edges(problem):
        m = np.array([[float(fn(s, d, rs, rd)) for rd in doms[d]] for rs in doms[s]])
        if (s, d) in pair:  # edges both ways: one factor
            m = m + pair[(s, d)]
        else:
            factors.append((s, d))
            nbrs[s].append(d)
            nbrs[d].append(s)
        pair[(s, d)], pair[(d, s)] = m, m.T
    drops = {n: vec(problem.drops, n) for n in nodes}
    return _Compiled(nodes, doms, times, drops, nbytes, pair, nbrs, factors, bad)


def _peak(c: _Compiled, order: list[str]) -> int:
    """Largest table (product of frontier domain sizes) the DP builds along ``order``."""
    left = {n: len(c.nbrs[n]) for n in c.nodes}
    front: set[str] = set()
    peak = 1
    for v in order:
        front.add(v)
        peak = max(peak, math.prod(len(c.doms[u]) for u in front))
        for u in c.nbrs[v]:
            left[u] -= 1
        front = {u for u in front if left[u] > 0}
    return peak


def _greedy_order(c: _Compiled) -> list[str]:
    """Place next the node adjacent to the frontier that leaves it smallest (ties: topological)."""
    pos = {n: i for i, n in enumerate(c.nodes)}
    logd = {n: math.log(len(c.doms[n])) for n in c.nodes}
    left = {n: len(c.nbrs[n]) for n in c.nodes}
    front: set[str] = set()
    cands: set[str] = set()
    placed: set[str] = set()
    order: list[str] = []
    nxt = 0
    while len(order) < len(c.nodes):
        if cands:
            def score(v: str, front: set[str] = front) -> tuple[float, int]:
                freed = sum(logd[u] for u in c.nbrs[v] if u in front and left[u] == 1)
                return (0.0 if left[v] == 0 else logd[v]) - freed, pos[v]
            v = min(cands, key=score)
        else:
            while c.nodes[nxt] in placed:
                nxt += 1
            v = c.nodes[nxt]
        order.append(v)
        placed.add(v)
        cands.discard(v)
        front.add(v)
        for u in c.nbrs[v]:
            left[u] -= 1
            if u not in placed:
                cands.add(u)
        front = {u for u in front if left[u] > 0}
    return order


def _plan(c: _Compiled) -> tuple[list[str], int]:
    orders = [list(c.nodes), _greedy_order(c)]
    order, peak = min(((o, _peak(c, o)) for o in orders), key=lambda op: op[1])
    if peak > _MAX_CELLS:
        raise LayerLabError(
            f"dprs: graph too wide for exact routine selection ({peak} routine combinations on the "
            f"frontier, limit {_MAX_CELLS}); pin some layers to shrink it")
    return order, peak


@dataclass
class _Axis:
    bins: dict[str, np.ndarray]  # cells used by each allowed routine of each node
    cells: int  # table size along this axis
    safe: int  # every cell index <= safe is truly within the limit, whatever the rounding hid


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


def _dp(c: _Compiled, order: list[str], axes: list[_Axis]) -> tuple[np.ndarray, list[tuple]]:
    """Frontier DP: min latency per budget cell (a scalar without axes) and the back-trace events."""
    cells = tuple(a.cells for a in axes)
    nb = len(cells)
    tab = np.full(cells, np.inf)
    tab[(0,) * nb] = 0.0
    front: list[str] = []
    left = {n: len(c.nbrs[n]) for n in c.nodes}
    events: list[tuple] = []
    for v in order:
        k, d = len(front), len(c.doms[v])
        t = c.times[v]
        if nb == 0:
            new = tab[..., None] + t
        else:
            new = np.full(tab.shape[:k] + (d,) + cells, np.inf)
            lead = (slice(None),) * k
            for r in range(d):
                sh = [int(a.bins[v][r]) for a in axes]
                if any(s >= n for s, n in zip(sh, cells)):
                    continue  # this routine alone busts the budget
                dst = lead + (r,) + tuple(slice(s, None) for s in sh)
                src = lead + tuple(slice(0, n - s) for s, n in zip(sh, cells))
                new[dst] = tab[src] + t[r]
        for u in c.nbrs[v]:
            if u in front:
                i = front.index(u)
                shape = [1] * new.ndim
                shape[i], shape[k] = len(c.doms[u]), d
                new += c.pair[(u, v)].reshape(shape)
        front.append(v)
        events.append(("add", v))
        for u in c.nbrs[v]:
            left[u] -= 1
        for u in [v, *c.nbrs[v]]:
            if left[u] == 0 and u in front:
                i = front.index(u)
                arg = new.argmin(axis=i).astype(np.int16)
                new = new.min(axis=i)
                front.pop(i)
                events.append(("retire", u, tuple(front), arg))
        tab = new
    return tab, events


def _trace(events: list[tuple], axes: list[_Axis], cell: tuple[int, ...]) -> dict[str, int]:
    """Routine index per node of the best route ending in budget ``cell``."""
    b = list(cell)
    assign: dict[str, int] = {}
    for ev in reversed(events):
        if ev[0] == "retire":
            _, u, fr, arg = ev
            assign[u] = int(arg[tuple(assign[f] for f in fr) + tuple(b)])
        else:
            v = ev[1]
            b = [bi - int(a.bins[v][assign[v]]) for bi, a in zip(b, axes)]
    return assign


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


def _costs(problem: Problem, routines: Mapping[str, str]) -> tuple[float, float, int, float]:
    missing = [n for n in problem.nodes if n not in routines]
    if missing:
        raise LayerLabError(f"dprs: the route gives no routine for node {missing[0]!r}")
    fn = _adapt_fn(problem)
    lat = drop = 0.0
    nbytes = 0
    for n in problem.nodes:
        r = routines[n]
        if r not in problem.times.get(n, {}):
            raise LayerLabError(f"dprs: routine {r!r} of node {n!r} has no profiled time")
        lat += float(problem.times[n][r])
        drop += float(problem.drops.get(n, {}).get(r, 0.0))
        nbytes += problem.weight_bytes.get(n, {}).get(r, 0)
    adapts = sum(float(fn(s, d, routines[s], routines[d])) for s, d in _edges(problem))
    return lat + adapts, drop, nbytes, adapts


def route_cost(problem: Problem, routines: Mapping[str, str]) -> tuple[float, float, int]:
    """Predicted (latency ms, accuracy drop, weight bytes) of a given route."""
    lat, drop, nbytes, _ = _costs(problem, routines)
    return lat, drop, nbytes


def _fits(drop: float, nbytes: float, cons: Constraints) -> list[str]:
    """Names of the limits this (drop, bytes) breaks."""
    out = []
    if cons.max_drop is not None and drop > cons.max_drop + _TOL * max(1.0, abs(cons.max_drop)):
        out.append("max_drop")
    if cons.memory_limit is not None and nbytes > cons.memory_limit + _TOL * max(1.0, abs(cons.memory_limit)):
        out.append("memory_limit")
    return out


def _route(problem: Problem, c: _Compiled, assign: Mapping[str, int], feasible: bool = True,
           binding: str | None = None, detail: str = "") -> Route:
    routines = {n: c.doms[n][assign[n]] for n in c.nodes}
    lat, drop, nbytes, adapts = _costs(problem, routines)
    if c.bad_pins:
        feasible, binding = False, "pinned"
        detail = f"node {c.bad_pins[0]!r} is pinned to routines that were never profiled; pin ignored"
    return Route(routines, lat, drop, nbytes, adapts, feasible, binding, detail)


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

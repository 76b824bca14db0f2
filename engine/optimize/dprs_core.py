"""DPRS core: the problem and route types, tables compiled into arrays, the placement order and
the frontier DP with its back-trace.

``engine.optimize.dprs`` (the solver) and ``engine.optimize.constraints`` (budget limits) build on this; the
algorithm is described in ``engine.optimize.dprs``'s docstring. Import the public names from ``engine.optimize.dprs``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from engine.errors import LayerLabError

__all__ = ["AdaptCosts", "Constraints", "Problem", "Route", "route_cost"]

logger = logging.getLogger(__name__)

AdaptCosts = (
    Callable[[str, str, str, str], float] | Mapping[tuple[str, str], Mapping[tuple[str, str], float]]
)

_MAX_CELLS = 1 << 24  # largest DP table we allow (float64: 128 MB)
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


def _route(problem: Problem, c: _Compiled, assign: Mapping[str, int], feasible: bool = True,
           binding: str | None = None, detail: str = "") -> Route:
    routines = {n: c.doms[n][assign[n]] for n in c.nodes}
    lat, drop, nbytes, adapts = _costs(problem, routines)
    if c.bad_pins:
        feasible, binding = False, "pinned"
        detail = f"node {c.bad_pins[0]!r} is pinned to routines that were never profiled; pin ignored"
    return Route(routines, lat, drop, nbytes, adapts, feasible, binding, detail)

"""DPRS routine selection: exact against brute force on random small DAGs, plus hand-built cases."""

from __future__ import annotations

import itertools
import random

import pytest

from engine.optimize.dprs import Constraints, Problem, Route, brute_force, route_cost, solve
from engine.errors import LayerLabError

ROUTINES = ["fp32", "int8", "int8_dynamic", "fp16"]
TOL = 1e-9


def _random_graph(rng: random.Random, max_nodes: int) -> tuple[list[str], list[tuple[str, str]]]:
    """Chains, residual blocks, concats, nested branches, several inputs/outputs, or a random DAG."""
    nodes: list[str] = []
    edges: list[tuple[str, str]] = []

    def new(*srcs: str) -> str:
        name = f"n{len(nodes)}"
        nodes.append(name)
        edges.extend((s, name) for s in srcs)
        return name

    def chain(src: str) -> str:
        for _ in range(rng.randint(1, 2)):
            src = new(src)
        return src

    def block(src: str, depth: int) -> str:
        kind = rng.choice(["chain", "residual", "concat"])
        inner = (lambda s: block(s, depth + 1)) if depth < 2 and rng.random() < 0.5 else chain
        if kind == "chain" or len(nodes) >= max_nodes:
            return chain(src)
        if kind == "residual":
            return new(inner(src), src)
        return new(*[inner(src) for _ in range(rng.randint(2, 3))])

    if rng.random() < 0.2:  # arbitrary DAG, not series-parallel
        for i in range(rng.randint(2, max_nodes)):
            new(*[nodes[j] for j in range(i) if rng.random() < 0.4])
        return nodes, edges
    inputs = [new() for _ in range(rng.randint(1, 2))]
    cur = inputs[0]
    while len(nodes) < max_nodes:
        cur = block(cur, 0)
        if len(inputs) > 1 and rng.random() < 0.5:
            cur = new(cur, inputs.pop())  # second input joins here
        if rng.random() < 0.2:
            new(cur)  # a side output
    return nodes, edges


def _random_problem(seed: int, max_nodes: int = 8) -> Problem:
    rng = random.Random(seed)
    nodes, edges = _random_graph(rng, max_nodes)
    routines = ROUTINES[: rng.randint(2, 4)]
    times, drops, nbytes, pinned = {}, {}, {}, {}
    routes = 1  # keep brute force small: late nodes of big graphs get one routine
    for n in nodes:
        own = routines[:1] if rng.random() < 0.2 else rng.sample(routines, rng.randint(2, len(routines)))
        own = own if routes * len(own) <= 50_000 else routines[:1]
        routes *= len(own)
        times[n] = {r: round(rng.uniform(0.1, 3.0), 3) for r in own}
        drops[n] = {r: 0.0 if r == "fp32" else round(rng.uniform(0.0, 0.05), 4) for r in own}
        nbytes[n] = {r: rng.choice([1, 2, 4]) * rng.randint(10, 100) for r in own}
        if len(own) > 1 and rng.random() < 0.15:
            pinned[n] = frozenset(rng.sample(own, rng.randint(1, len(own) - 1)))
    adapt = {e: {(a, b): round(rng.uniform(0.0, 1.0), 3) for a in routines for b in routines if a != b}
             for e in edges}
    if rng.random() < 0.3:
        rng.shuffle(nodes)  # the solver must not rely on the order it is given
    if rng.random() < 0.5:
        return Problem(nodes, edges, times, adapt, drops, nbytes, pinned)
    fn = lambda s, d, a, b: adapt[(s, d)].get((a, b), 0.0)
    return Problem(nodes, edges, times, fn, drops, nbytes, pinned)


def _check_route(p: Problem, r: Route) -> None:
    assert set(r.routines) == set(p.nodes)
    for n, allowed in p.pinned.items():
        assert r.routines[n] in allowed
    lat, drop, nbytes = route_cost(p, r.routines)
    assert lat == pytest.approx(r.latency_ms, abs=TOL)
    assert drop == pytest.approx(r.drop, abs=TOL)
    assert nbytes == r.weight_bytes


@pytest.mark.parametrize("chunk", range(6))
def test_unconstrained_matches_brute_force(chunk: int) -> None:
    for seed in range(chunk * 100, chunk * 100 + 100):
        p = _random_problem(seed)
        got, want = solve(p), brute_force(p)
        assert got.feasible and got.binding is None
        assert abs(got.latency_ms - want.latency_ms) <= TOL, seed
        _check_route(p, got)


def _users(p: Problem, table: dict, nodes: list[str]) -> int:
    """Nodes having an allowed routine that uses some of the budget (the 'm' of the module doc)."""
    return sum(1 for n in nodes
               if any(v > 0 for r, v in table[n].items() if r in p.pinned.get(n, p.times[n])))


@pytest.mark.parametrize("resolution", [1024, 64, 8])
def test_drop_budget_feasible_and_within_documented_bound(resolution: int) -> None:
    for seed in range(150):
        p = _random_problem(1000 + seed)
        free = solve(p)
        budget = free.drop * random.Random(seed).uniform(0.0, 1.2)
        cons = Constraints(max_drop=budget, resolution=resolution)
        got, want = solve(p, cons), brute_force(p, cons)
        assert got.feasible == want.feasible, seed
        if not want.feasible:
            assert got.binding == want.binding == "max_drop"
            continue
        _check_route(p, got)
        assert got.drop <= budget + TOL
        assert got.latency_ms >= want.latency_ms - TOL
        assert got.binding == ("max_drop" if free.drop > budget + TOL else None)
        slack = _users(p, p.drops, list(p.nodes)) * budget / (resolution - 1)
        tight = brute_force(p, Constraints(max_drop=budget - slack))
        if tight.feasible:
            assert got.latency_ms <= tight.latency_ms + TOL, seed


def test_drop_budget_exact_on_its_grid() -> None:
    # every drop a multiple of 0.01 and the quantum 0.01: the discretisation loses nothing
    for seed in range(150):
        base = _random_problem(2000 + seed)
        rng = random.Random(seed)
        drops = {n: {r: 0.0 if r == "fp32" else 0.01 * rng.randint(0, 4) for r in t} for n, t in base.times.items()}
        p = Problem(base.nodes, base.edges, base.times, base.adapt, drops, base.weight_bytes, base.pinned)
        k = rng.randint(0, 8)
        cons = Constraints(max_drop=0.01 * k, resolution=k + 1)
        got, want = solve(p, cons), brute_force(p, cons)
        assert got.feasible == want.feasible
        if want.feasible:
            assert abs(got.latency_ms - want.latency_ms) <= TOL, seed


def test_memory_limit_exact_for_integer_bytes() -> None:
    for seed in range(150):
        p = _random_problem(3000 + seed)
        least = sum(min(p.weight_bytes[n][r] for r in p.pinned.get(n, p.times[n])) for n in p.nodes)
        most = solve(p).weight_bytes
        limit = random.Random(seed).randint(least - 5, max(least, most))
        cons = Constraints(memory_limit=limit, resolution=limit + 2)  # cells enough for 1-byte steps
        got, want = solve(p, cons), brute_force(p, cons)
        assert got.feasible == want.feasible, seed
        if want.feasible:
            assert got.weight_bytes <= cons.memory_limit
            assert abs(got.latency_ms - want.latency_ms) <= TOL, seed
        else:
            assert got.binding == "memory_limit"


def test_both_limits_feasible_and_close_to_brute_force() -> None:
    # Lagrangian on memory: feasible when it says so; the documented promise is not optimality,
    # so measure the gap and keep it from creeping (see the report for the numbers seen)
    found, missed, gaps = 0, 0, []
    for seed in range(200):
        p = _random_problem(4000 + seed)
        free = solve(p)
        rng = random.Random(seed)
        cons = Constraints(max_drop=free.drop * rng.uniform(0.5, 1.0),
                           memory_limit=int(free.weight_bytes * rng.uniform(0.8, 1.0)))
        got, want = solve(p, cons), brute_force(p, cons)
        if not want.feasible:
            assert not got.feasible
            continue
        if not got.feasible:
            missed += 1
            continue
        found += 1
        _check_route(p, got)
        assert got.drop <= cons.max_drop + TOL and got.weight_bytes <= cons.memory_limit
        assert got.latency_ms >= want.latency_ms - TOL
        gaps.append(got.latency_ms / want.latency_ms - 1)
    assert found > 100 and missed <= 0.05 * (found + missed)
    assert sum(gaps) / len(gaps) < 0.02 and max(gaps) < 0.3


def _chain(n_layers: int, fast: float, adapt: float, **extra: object) -> Problem:
    layers = [f"conv{i}" for i in range(n_layers)]
    nodes = ["input", *layers, "output"]
    times = {"input": {"fp32": 0.0}, "output": {"fp32": 0.0}}
    times.update({n: {"fp32": 1.5, "int8": fast} for n in layers})
    cost = lambda s, d, a, b: 0.0 if a == b else adapt
    return Problem(nodes, list(itertools.pairwise(nodes)), times, cost, **extra)


def test_adapt_costs_make_mixed_route_lose() -> None:
    # int8 saves 0.5 ms per layer but entering and leaving int8 costs 2 x 0.8 ms
    r = solve(_chain(3, fast=1.0, adapt=0.8))
    assert set(r.routines.values()) == {"fp32"}
    assert r.latency_ms == pytest.approx(4.5) and r.adapts_ms == 0.0


def test_long_int8_run_pays_its_adapts() -> None:
    r = solve(_chain(5, fast=1.0, adapt=0.8))
    assert [r.routines[f"conv{i}"] for i in range(5)] == ["int8"] * 5
    assert r.latency_ms == pytest.approx(5 * 1.0 + 1.6) and r.adapts_ms == pytest.approx(1.6)


@pytest.mark.parametrize(("adapt", "body", "latency"), [(0.5, "int8", 1.9), (0.7, "fp32", 2.1)])
def test_residual_block_conditions_on_fork(adapt: float, body: str, latency: float) -> None:
    # fork -> a -> join plus the skip fork -> join; join is fp32 only. int8 on fork and a saves
    # 1.2 ms and pays two adapts into join (a -> join, skip); a mixed body pays two adapts as well.
    times = {"fork": {"fp32": 1.0, "int8": 0.4}, "a": {"fp32": 1.0, "int8": 0.4}, "join": {"fp32": 0.1}}
    p = Problem(["fork", "a", "join"], [("fork", "a"), ("a", "join"), ("fork", "join")], times,
                lambda s, d, x, y: 0.0 if x == y else adapt)
    r = solve(p)
    assert r.routines == {"fork": body, "a": body, "join": "fp32"}
    assert r.latency_ms == pytest.approx(latency)


def test_pinned_layer_is_respected() -> None:
    r = solve(_chain(5, fast=1.0, adapt=0.8, pinned={"conv2": frozenset({"fp32"})}))
    assert r.routines["conv2"] == "fp32" and r.feasible


def test_pin_to_unprofiled_routine_is_reported() -> None:
    r = solve(_chain(3, fast=1.0, adapt=0.8, pinned={"conv1": frozenset({"fp16"})}))
    assert not r.feasible and r.binding == "pinned" and "conv1" in r.detail


def test_infeasible_drop_budget_is_reported() -> None:
    drops = {f"conv{i}": {"fp32": 0.01, "int8": 0.02} for i in range(3)}
    r = solve(_chain(3, fast=1.0, adapt=0.0, drops=drops), Constraints(max_drop=0.02))
    assert not r.feasible and r.binding == "max_drop" and "0.03" in r.detail
    assert set(r.routines.values()) == {"fp32"}  # the least-drop route


def test_infeasible_memory_limit_is_reported() -> None:
    nbytes = {f"conv{i}": {"fp32": 400, "int8": 100} for i in range(3)}
    r = solve(_chain(3, fast=2.0, adapt=0.0, weight_bytes=nbytes), Constraints(memory_limit=299))
    assert not r.feasible and r.binding == "memory_limit"


def test_limits_infeasible_only_together() -> None:
    drops = {"conv0": {"fp32": 0.0, "int8": 1.0}}
    nbytes = {"conv0": {"fp32": 4, "int8": 1}}
    p = _chain(1, fast=1.0, adapt=0.0, drops=drops, weight_bytes=nbytes)
    for route in (solve, brute_force):
        r = route(p, Constraints(max_drop=0.5, memory_limit=2))
        assert not r.feasible and r.binding == "max_drop+memory_limit"


def test_binding_limit_is_named() -> None:
    drops = {f"conv{i}": {"int8": 0.01} for i in range(5)}
    p = _chain(5, fast=1.0, adapt=0.0, drops=drops)
    assert solve(p, Constraints(max_drop=1.0)).binding is None
    r = solve(p, Constraints(max_drop=0.025))
    assert r.feasible and r.binding == "max_drop"
    assert list(r.routines.values()).count("int8") == 2


def test_mapping_and_callable_adapts_agree() -> None:
    p = _chain(4, fast=1.0, adapt=0.3)
    table = {e: {(a, b): 0.3 for a in ("fp32", "int8") for b in ("fp32", "int8") if a != b} for e in p.edges}
    q = Problem(p.nodes, p.edges, p.times, table)
    assert solve(q).routines == solve(p).routines
    assert route_cost(q, solve(q).routines) == route_cost(p, solve(p).routines)


def test_duplicate_edge_paid_once() -> None:
    times = {"a": {"fp32": 1.0}, "b": {"int8": 1.0}}
    cost = lambda s, d, x, y: 0.5
    once = route_cost(Problem(["a", "b"], [("a", "b")], times, cost), {"a": "fp32", "b": "int8"})
    twice = route_cost(Problem(["a", "b"], [("a", "b"), ("a", "b")], times, cost), {"a": "fp32", "b": "int8"})
    assert once == twice == (2.5, 0.0, 0)


def test_empty_problem() -> None:
    assert solve(Problem([], [], {})).latency_ms == 0.0


def test_bad_input_raises() -> None:
    times = {"a": {"fp32": 1.0}, "b": {"fp32": 1.0}}
    with pytest.raises(LayerLabError, match="not in the problem"):
        solve(Problem(["a", "b"], [("a", "c")], times))
    with pytest.raises(LayerLabError, match="no profiled routine"):
        solve(Problem(["a", "b", "c"], [], times))
    with pytest.raises(LayerLabError, match="no routine for node 'b'"):
        route_cost(Problem(["a", "b"], [], times), {"a": "fp32"})
    with pytest.raises(LayerLabError, match="negative"):
        solve(Problem(["a"], [], {"a": {"fp32": -1.0}}))


def test_too_wide_graph_raises_instead_of_guessing() -> None:
    left, right = [f"l{i}" for i in range(14)], [f"r{i}" for i in range(14)]
    times = {n: {r: 1.0 for r in ROUTINES} for n in left + right}
    p = Problem(left + right, [(a, b) for a in left for b in right], times)
    with pytest.raises(LayerLabError, match="too wide"):
        solve(p)
    with pytest.raises(LayerLabError, match="too many"):
        brute_force(p)


def test_wide_fan_out_of_long_branches_stays_cheap() -> None:
    # 12 parallel branches of 10 layers: a topological order would carry all 12 branch ends
    nodes, edges = ["fork"], []
    for b in range(12):
        prev = "fork"
        for i in range(10):
            nodes.append(f"b{b}_{i}")
            edges.append((prev, nodes[-1]))
            prev = nodes[-1]
        edges.append((prev, "join"))
    nodes.append("join")
    times = {n: {"fp32": 2.0, "int8": 1.0, "fp16": 1.5, "int8_dynamic": 3.0} for n in nodes}
    r = solve(Problem(nodes, edges, times, lambda s, d, x, y: 0.0 if x == y else 0.1))
    assert set(r.routines.values()) == {"int8"}

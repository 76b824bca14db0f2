"""Structural routines in DPRS and tune: prune:r / rank:f chosen by measured time and drop within the budget."""

from __future__ import annotations

import pytest

from engine.evaluate.calibration import build_variant, calibration_for
from engine.evaluate.evaluator import Evaluator, evaluate
from engine.evaluate.sensitivity import LayerSensitivity, Sensitivity
from engine.evaluate.structural import STRUCTURAL
from engine.ir.graph import ModelGraph
from engine.measure.profiler import ProfileOptions
from engine.measure.tables import LayerProfile, Profile, Stats
from engine.optimize import dprs
from engine.optimize.routes import build_problem
from engine.optimize.structural import FORBIDDEN_MS, structural_profile
from engine.optimize.tune import TuneOptions, route_plan, tune_job
from engine.passes.manager import check_plan
from engine.progress import run

CONV3, FC1 = "/conv3/Conv", "/fc1/Gemm"


def _table(graph: ModelGraph, routines: dict[str, dict[str, float]]) -> Profile:
    """A hand-built profile: every node 1 ms in fp32, no adapts (so the choice is decided by these times)."""
    layers = [LayerProfile(n.name, n.op_type, n.tunable, 1.0, dict(routines.get(n.name, {}))) for n in graph.nodes]
    return Profile(Stats(1, 1, 1), 1.0, layers, [], 1, "test")


def _sens(drops: dict[str, dict[str, float]]) -> Sensitivity:
    return Sensitivity(0.9, "accuracy", {n: LayerSensitivity(n, dict(d)) for n, d in drops.items()}, True)


def test_dprs_picks_a_prune_routine_when_it_is_faster_within_budget(digits: ModelGraph) -> None:
    table = _table(digits, {CONV3: {"int8": 0.9, "prune:0.5": 0.2}})
    offer = ("fp32", "int8", "prune:0.5")
    cheap = build_problem(digits, table, _sens({CONV3: {"int8": 0.001, "prune:0.5": 0.005}}), routines=offer)
    route = dprs.solve(cheap, dprs.Constraints(max_drop=0.01))
    assert route.routines[CONV3] == "prune:0.5"
    assert route.latency_ms == pytest.approx(len(digits.nodes) - 1 + 0.2)
    costly = build_problem(digits, table, _sens({CONV3: {"int8": 0.001, "prune:0.5": 0.05}}), routines=offer)
    assert dprs.solve(costly, dprs.Constraints(max_drop=0.01)).routines[CONV3] == "int8"
    params = next(n.params for n in digits.layers if n.name == CONV3)
    assert cheap.weight_bytes[CONV3] == {"fp32": params * 4, "int8": params, "prune:0.5": int(params * 0.5) * 4}


def test_a_pruned_root_never_meets_a_factored_consumer(digits: ModelGraph) -> None:
    # conv3's group shrinks fc1's input: fc1's rank was set for its full width
    table = _table(digits, {CONV3: {"prune:0.5": 0.2}, FC1: {"rank:0.5": 0.5}})
    problem = build_problem(digits, table, _sens({CONV3: {"prune:0.5": 0.0}, FC1: {"rank:0.5": 0.0}}),
                            routines=("fp32", "prune:0.5", "rank:0.5"))
    assert problem.adapt[(CONV3, FC1)][("prune:0.5", "rank:0.5")] == FORBIDDEN_MS
    route = dprs.solve(problem)
    assert (route.routines[CONV3], route.routines[FC1]) == ("prune:0.5", "fp32")  # saves 0.8 ms, not 0.8 + 0.5
    assert route.latency_ms == pytest.approx(dprs.brute_force(problem).latency_ms)


def test_route_plan_writes_structural_routines_as_prune_and_rank(digits: ModelGraph) -> None:
    plan = route_plan(digits, {CONV3: "prune:0.25", FC1: "int8", "/res/conv_a/Conv": "rank:0.5"}, data=False)
    prune = plan.settings_for(CONV3).prune
    assert prune is not None and (prune.ratio, prune.mode, prune.reconstruct) == (0.25, "structured", False)
    assert plan.settings_for(CONV3).precision == "fp32" and plan.settings_for(FC1).precision == "int8"
    assert plan.settings_for("/res/conv_a/Conv").rank is not None
    assert check_plan(plan, digits) == []


def test_structural_times_are_the_layer_time_plus_the_end_to_end_change(digits: ModelGraph, evaluator: Evaluator) -> None:
    table = _table(digits, {})
    sens = _sens({CONV3: {"prune:0.5": 0.0, "int8": 0.0}, FC1: {"rank:0.25": 0.0}})
    asked: list[list[str]] = []

    def latency(models):
        asked.append(sorted(models))
        return {"fp32": Stats(5.0, 4.0, 6.0), f"{CONV3}|prune:0.5": Stats(4.7, 4.0, 6.0),
                f"{FC1}|rank:0.25": Stats(3.5, 3.0, 4.0)}
        yield  # noqa: unreachable - makes this a generator

    out = run(structural_profile(digits, table, sens, calibration_for(digits, evaluator), latency))
    assert asked == [sorted(["fp32", f"{CONV3}|prune:0.5", f"{FC1}|rank:0.25"])]
    assert out.layer(CONV3).routines == {"prune:0.5": pytest.approx(0.7)}
    assert out.layer(FC1).routines == {"rank:0.25": 0.0}  # saved 1.5 ms, more than its own 1 ms: clamped
    assert table.layer(CONV3).routines == {}  # the input profile is left as it was


def test_tune_structural_on_digits_gives_a_valid_plan_within_budget(digits: ModelGraph, evaluator: Evaluator) -> None:
    fast = ProfileOptions(repeats=6, profile_runs=5, warmup=2, use_cache=False)
    options = TuneOptions(max_drop=0.02, structural=True, repeats=5, profile=fast, max_rounds=3, max_fill=1)
    result = run(tune_job(digits, evaluator, options))
    assert any(r in ls.drops for ls in result.sensitivity.layers.values() for r in STRUCTURAL)
    assert result.baseline_metric - result.metric <= 0.02 + 1e-9
    assert check_plan(result.plan, digits) == []
    # the model tune returns is the plan's, and scores what tune measured
    assert evaluate(result.model, evaluator).metric == result.metric
    rebuilt = build_variant(digits, result.plan, calibration_for(digits, evaluator)).model
    assert evaluate(rebuilt, evaluator).metric == result.metric
    # the route tune reports names the structural routines the plan carries
    for name, routine in result.layer_routines().items():
        settings = result.plan.settings_for(name)
        if routine.startswith("prune:"):
            assert settings.prune is not None and settings.prune.ratio == float(routine[6:])
        elif routine.startswith("rank:"):
            assert settings.rank is not None
        else:
            assert settings.prune is None and settings.rank is None and routine == settings.precision

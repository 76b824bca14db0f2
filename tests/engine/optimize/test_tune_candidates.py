"""Tune's candidates: rounds that revert, the ops-in-int8 twins, the all-int8 route, the fp32 fallback
(measuring steps faked: ``tests.engine.optimize.fake_tune``)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from engine.evaluate.evaluator import Evaluator
from engine.evaluate.sensitivity import LayerSensitivity, Sensitivity
from engine.ir.graph import ModelGraph
from engine.measure.profiler import Stats
from engine.optimize import tune, tune_session
from engine.progress import run
from tests.engine.optimize.fake_tune import fake_pipeline as _fake_pipeline, no_drops
from tests.engine.optimize.tables import fixed_profile


def test_rounds_revert_the_worst_layer_when_the_measured_drop_is_too_high(
    monkeypatch: pytest.MonkeyPatch, digits: ModelGraph, evaluator: Evaluator
) -> None:
    names = [n.name for n in digits.layers]
    worst, second = names[2], names[4]
    drops = {n: 0.004 if n == worst else 0.002 if n == second else 0.0 for n in names}
    sens = Sensitivity(0.99, "acc", {n: LayerSensitivity(n, {"int8": drops[n]}, {"int8": 20.0}) for n in names}, True)
    fast = fixed_profile(digits)  # every layer 10x faster in int8, adapts far cheaper: drops decide
    base = run(tune.evaluate_job(digits.model, evaluator)).metric
    # the measured drop is far worse than the sensitivities say while `worst` runs int8
    built = _fake_pipeline(monkeypatch, fast, sens, lambda r: base - (0.03 if r[worst] == "int8" else 0.0))
    result = run(tune.tune_job(digits, evaluator, tune.TuneOptions(max_drop=0.01, routines=("fp32", "int8"))))
    assert len(result.rounds) >= 2 and result.rounds[0].reverted == [worst] and not result.rounds[1].reverted
    assert built[0][worst] == "int8" and all(b[worst] == "fp32" for b in built[1:])
    assert result.feasible and result.routines[worst] == "fp32" and result.routines[second] != "fp32"
    assert result.metric == base and result.ms_measured.median == 0.5
    assert result.to_json()["rounds"] == len(result.rounds)


def test_the_best_route_is_also_measured_with_its_ops_in_int8(
    monkeypatch: pytest.MonkeyPatch, digits: ModelGraph, evaluator: Evaluator
) -> None:
    sens = no_drops(digits)
    fast = fixed_profile(digits)  # every layer 10x faster in int8, adapts far cheaper: drops decide
    base = run(tune.evaluate_job(digits.model, evaluator)).metric
    options = tune.TuneOptions(max_drop=0.01, routines=("fp32", "int8"))
    _fake_pipeline(monkeypatch, fast, sens, lambda r: base, ops_ms=0.4)  # faster, nothing lost: it wins
    result = run(tune.tune_job(digits, evaluator, options))
    assert result.rounds[-1].ops == "int8" and result.rounds[-1].routines == result.rounds[0].routines
    assert result.plan.ops == "int8" and result.ms_measured.median == 0.4 and result.to_json()["route"]["ops"] == "int8"
    trials = tune_session.round_trials(result, digits)
    assert trials[-1].plan["ops"] == "int8" and "ops int8" in trials[-1].label
    _fake_pipeline(monkeypatch, fast, sens, lambda r: base, ops_ms=0.4, ops_drop=0.05)  # faster but over budget
    result = run(tune.tune_job(digits, evaluator, options))
    assert result.rounds[-1].ops == "int8" and result.plan.ops == "fp32" and result.ms_measured.median == 0.5


def test_the_all_int8_route_is_measured_with_its_ops_in_int8_even_when_another_round_timed_faster(
    monkeypatch: pytest.MonkeyPatch, digits: ModelGraph, evaluator: Evaluator
) -> None:
    """ORT's whole-model int8 is all layers and ops in int8: tune must try that model whenever its drop fits,
    not only the ops-in-int8 twin of the round that happened to time fastest alone."""
    names = [n.name for n in digits.layers]
    sens = no_drops(digits)
    prof = fixed_profile(digits)
    slow = names[0]  # the profile says int8 is slower here, so DPRS keeps it fp32
    prof = replace(prof, layers=[replace(lp, routines={**lp.routines, "int8": 3 * lp.ms}) if lp.name == slow else lp
                                 for lp in prof.layers])
    _fake_pipeline(monkeypatch, prof, sens, lambda r: 0.99)
    built: list[tuple[str, bool]] = []
    fake_build = tune._build_and_measure

    def timed_build(graph, plan, calibration, evaluator, feeds, options, i):
        all_int8 = all(plan.settings_for(n).precision == "int8" for n in names)
        built.append((plan.ops, all_int8))
        model, _, metric, timed = yield from fake_build(graph, plan, calibration, evaluator, feeds, options, i)
        ms = {("int8", True): 0.3, ("int8", False): 0.45, ("fp32", True): 0.6}.get((plan.ops, all_int8), 0.5)
        return model, Stats(ms, ms, ms), metric, timed

    monkeypatch.setattr(tune, "_build_and_measure", timed_build)
    result = run(tune.tune_job(digits, evaluator, tune.TuneOptions(max_drop=0.01, routines=("fp32", "int8"))))
    assert built[0] == ("fp32", False) and ("fp32", True) in built and ("int8", True) in built
    assert result.plan.ops == "int8" and {result.routines[n] for n in names} == {"int8"} and result.ms_measured.median == 0.3


def test_no_all_fp32_candidate_is_built_when_no_layer_may_take_int8(
    monkeypatch: pytest.MonkeyPatch, digits: ModelGraph, evaluator: Evaluator
) -> None:
    """The all-int8 candidate is skipped when int8 is not offered (only int8_dynamic, or only int8@<EP>):
    it would be the fp32 model, measured for nothing (seen with tune --providers on a target)."""
    sens = no_drops(digits, ("int8", "int8_dynamic"))
    prof = fixed_profile(digits)
    prof = replace(prof, layers=[replace(lp, routines={**lp.routines, "int8_dynamic": lp.routines["int8"]})
                                 if lp.tunable else lp for lp in prof.layers])
    built = _fake_pipeline(monkeypatch, prof, sens, lambda r: 0.99)
    run(tune.tune_job(digits, evaluator, tune.TuneOptions(max_drop=0.01, routines=("fp32", "int8_dynamic"))))
    assert built and "int8_dynamic" in built[0].values()
    assert not any(set(b.values()) == {"fp32"} for b in built)


def test_infeasible_and_slower_routes_fall_back_to_fp32(
    monkeypatch: pytest.MonkeyPatch, digits: ModelGraph, evaluator: Evaluator
) -> None:
    sens = no_drops(digits)
    fast = fixed_profile(digits)  # every layer 10x faster in int8, adapts far cheaper: drops decide
    _fake_pipeline(monkeypatch, fast, sens, lambda r: 0.0)  # every int8 route is a disaster
    result = run(tune.tune_job(digits, evaluator, tune.TuneOptions(max_drop=0.01, max_rounds=2, routines=("fp32", "int8"))))
    assert not result.feasible and "no route met max_drop" in result.note
    assert result.model is digits.model and set(result.layer_routines().values()) == {"fp32"}
    monkeypatch.setattr(tune, "measure_latency", lambda *a, **k: Stats(0.3, 0.2, 0.4))  # fp32 faster than 0.5
    _fake_pipeline(monkeypatch, fast, sens, lambda r: 1.0)
    monkeypatch.setattr(tune, "measure_latency", lambda *a, **k: Stats(0.3, 0.2, 0.4))
    result = run(tune.tune_job(digits, evaluator, tune.TuneOptions(routines=("fp32", "int8"))))
    assert "no faster than fp32" in result.note and result.model is digits.model

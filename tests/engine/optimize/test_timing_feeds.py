"""Latencies are timed on the evaluator's sample when there is one: bench, tune, the window's Profile and Measure.

Each test catches the feeds a job hands to its timer and compares them with the evaluator's first
scored sample, value for value: generated inputs would differ.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.evaluate.contract import Evaluator
from engine.evaluate.evaluator import load_evaluator
from engine.ir.graph import ModelGraph
from engine.measure.profiler import Stats
from engine.measure.tables import Profile
from engine.optimize import bench, tune
from engine.optimize.reuse import profile_fits
from engine.optimize.timing_feeds import GENERATED, timing_feeds
from engine.progress import run
from tests.engine.optimize.tables import fixed_profile


@pytest.fixture()
def evaluator(digits_eval: Path) -> Evaluator:
    return load_evaluator(digits_eval)


def _first_sample(evaluator: Evaluator) -> dict[str, np.ndarray]:
    return evaluator.samples()[0][0]


def _same(feeds: dict, expected: dict) -> bool:
    return set(feeds) == set(expected) and all(np.array_equal(feeds[k], expected[k]) for k in expected)


def _fake_stats(models):
    return {name: Stats(1.0, 0.9, 1.1) for name in models}


def test_timing_feeds_take_the_first_sample_at_the_graph_shapes(digits: ModelGraph, evaluator: Evaluator) -> None:
    timing = timing_feeds(digits, evaluator)
    assert timing.from_evaluator and _same(timing.feeds, _first_sample(evaluator))
    assert timing.source.startswith("evaluator sample 0 (") and "input=1x1x8x8" in timing.source
    generated = timing_feeds(digits)
    assert not generated.from_evaluator and generated.source == GENERATED
    assert not np.array_equal(generated.feeds["input"], timing.feeds["input"])
    assert generated.digest != timing.digest and timing.digest == timing_feeds(digits, evaluator).digest


def test_samples_at_other_shapes_fall_back_to_generated_inputs_and_say_so(digits: ModelGraph) -> None:
    odd = [({"input": np.zeros((1, 1, 4, 4), np.float32)}, 0), ({"input": np.ones((1, 1, 8, 8), np.float32)}, 1)]
    found = timing_feeds(digits, Evaluator("e", "e.py", lambda: odd, lambda o, l: 1.0))
    assert found.from_evaluator and "evaluator sample 1 (1 of 2" in found.source  # the first that fits
    assert float(found.feeds["input"].sum()) == 64.0
    other = [({"input": np.zeros((1, 1, 4, 4), np.float32)}, 0)] * 2
    none = timing_feeds(digits, Evaluator("e", "e.py", lambda: other, lambda o, l: 1.0))
    assert not none.from_evaluator and "none of the evaluator's 2 samples is at input=1x1x8x8" in none.source


def test_bench_times_every_row_on_the_evaluator_sample(monkeypatch: pytest.MonkeyPatch, digits: ModelGraph,
                                                       evaluator: Evaluator) -> None:
    seen: list[dict] = []

    def fake_latency(models, feeds, threads, repeats, *a, **k):
        seen.append(dict(feeds))
        return _fake_stats(models)
        yield  # noqa: unreachable - a generator, as the real one

    monkeypatch.setattr(bench, "interleaved_latency", fake_latency)
    result = run(bench.bench_job(digits, evaluator, repeats=3, threads=1, route_model=digits.model,
                                 predicted_ms=1.0, routines={}))
    assert len(seen) == 1 and _same(seen[0], _first_sample(evaluator))
    assert result.feeds.startswith("evaluator sample 0") and result.to_json()["timing_feeds"] == result.feeds
    assert result.load_change is None  # no profile named: nothing to compare the load with


def test_bench_states_how_far_the_load_moved_since_the_profile(monkeypatch: pytest.MonkeyPatch, digits: ModelGraph,
                                                               evaluator: Evaluator) -> None:
    def fake_latency(models, feeds, threads, repeats, *a, **k):
        return {name: Stats(3.0 if name == "ort-fp32" else 1.5, 1.0, 4.0) for name in models}
        yield  # noqa: unreachable

    monkeypatch.setattr(bench, "interleaved_latency", fake_latency)
    result = run(bench.bench_job(digits, evaluator, repeats=3, threads=1, route_model=digits.model,
                                 predicted_ms=0.5, routines={}, profiled_fp32_ms=1.0))
    assert result.load_change == pytest.approx(2.0)  # fp32 3 ms now, 1 ms in the profile: 3x the load
    data = result.to_json()
    assert data["profiled_fp32_ms"] == 1.0 and data["load_change"] == pytest.approx(2.0)
    # predicted 1 / 0.5 = 2x faster, measured 3 / 1.5 = 2x: the ms prediction is 67 % off, the speed-up exact
    assert result.speedup_error == pytest.approx(0.0) and data["speedup_error"] == pytest.approx(0.0)
    slower = run(bench.bench_job(digits, evaluator, repeats=3, threads=1, route_model=digits.model,
                                 predicted_ms=0.8, routines={}, profiled_fp32_ms=1.0))
    assert slower.speedup_error == pytest.approx(1.25 / 2.0 - 1.0)


def test_tune_profiles_and_times_every_latency_on_the_evaluator_sample(
    monkeypatch: pytest.MonkeyPatch, digits: ModelGraph, evaluator: Evaluator
) -> None:
    from engine.evaluate.sensitivity import LayerSensitivity, Sensitivity

    sample = _first_sample(evaluator)
    profiled: list = []
    timed: list[dict] = []
    names = [n.name for n in digits.layers]
    sens = Sensitivity(0.99, "acc", {n: LayerSensitivity(n, {"int8": 0.0}) for n in names}, True)

    def fake_profile(graph, options):
        profiled.append(options)
        return fixed_profile(graph)
        yield  # noqa: unreachable

    def fake_sweep(*args, **kwargs):
        return sens
        yield  # noqa: unreachable

    def fake_latency(model, feeds, *a, **k):
        timed.append(dict(feeds))
        return Stats(1.0, 0.9, 1.1)

    def fake_compare(base, candidates, feeds, options):
        timed.append(dict(feeds))
        return Stats(1.0, 0.9, 1.1), {k: Stats(0.5, 0.4, 0.6) for k in candidates}
        yield  # noqa: unreachable

    monkeypatch.setattr(tune, "profile_job", fake_profile)
    monkeypatch.setattr(tune, "sensitivity_job", fake_sweep)
    monkeypatch.setattr(tune, "measure_latency", fake_latency)
    monkeypatch.setattr(tune, "_compare_interleaved", fake_compare)
    stale = fixed_profile(digits)  # a profile timed on generated inputs is not reused for real ones
    result = run(tune.tune_job(digits, evaluator, tune.TuneOptions(routines=("fp32", "int8"), max_rounds=1, max_fill=0, threads=1),
                               profile=stale))
    assert len(profiled) == 1 and _same(dict(profiled[0].feeds), sample)
    assert profiled[0].feeds_source == result.feeds and result.feeds.startswith("evaluator sample 0")
    assert "timed on generated inputs, tune times on evaluator sample 0" in result.reused[0]
    assert len(timed) >= 3 and all(_same(f, sample) for f in timed)  # baseline, each round, the comparison
    assert result.to_json()["timing_feeds"] == result.feeds


def test_a_profile_is_reused_only_when_timed_on_the_same_inputs(digits: ModelGraph, evaluator: Evaluator) -> None:
    timing = timing_feeds(digits, evaluator)
    prof: Profile = fixed_profile(digits)
    prof.threads = 1
    assert "generated inputs" in profile_fits(prof, digits, 1, ("fp32", "int8"), timing)
    assert profile_fits(prof, digits, 1, ("fp32", "int8"), timing_feeds(digits)) == ""
    prof.feeds, prof.feeds_digest = timing.source, timing.digest
    assert profile_fits(prof, digits, 1, ("fp32", "int8"), timing) == ""
    assert "tune times on generated inputs" in profile_fits(prof, digits, 1, ("fp32", "int8"), timing_feeds(digits))


def test_window_measure_and_profile_time_on_the_evaluator_sample(monkeypatch: pytest.MonkeyPatch, digits_model: Path,
                                                                 digits_eval: Path) -> None:
    import engine.measure.interleave as interleave
    import engine.measure.profiler as profiler
    from engine.jobs import catalogue
    from engine.jobs.loaded import forget
    from engine.model.plan import Plan

    forget()
    shapes = {"input": (1, 1, 8, 8)}
    sample = _first_sample(load_evaluator(digits_eval))
    seen: list[dict] = []

    def fake_latency(models, feeds, threads, repeats, *a, **k):
        seen.append(dict(feeds))
        return _fake_stats(models)
        yield  # noqa: unreachable

    def fake_profile(graph, options):
        seen.append(dict(options.feeds))
        return fixed_profile(graph)
        yield  # noqa: unreachable

    monkeypatch.setattr(interleave, "interleaved_latency", fake_latency)
    monkeypatch.setattr(profiler, "profile_job", fake_profile)
    outcome = run(catalogue.measure_plan_job(digits_model, shapes, Plan().to_dict(), evaluator=str(digits_eval),
                                             threads=1, repeats=3))
    assert outcome.feeds.startswith("evaluator sample 0") and _same(seen[-1], sample)
    run(catalogue.profile_model_job(digits_model, shapes, evaluator=str(digits_eval)))
    assert _same(seen[-1], sample)
    outcome = run(catalogue.measure_plan_job(digits_model, shapes, Plan().to_dict(), threads=1, repeats=3))
    assert outcome.feeds == GENERATED and not _same(seen[-1], sample)

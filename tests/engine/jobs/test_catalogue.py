"""engine.jobs.catalogue: the window's picklable jobs and the instant prediction of a plan."""

from __future__ import annotations

import math
import pickle

import pytest

from engine.jobs.catalogue import (baseline_measurement, load_graph, measure_plan_job, plan_routines, predict_plan,
                             profile_model_job)
from engine.progress import run
from engine.model.plan import Plan
from engine.measure.profiler import AdaptCost, LayerProfile, Profile, ProfileOptions, Stats
from engine.evaluate.sensitivity import LayerSensitivity, Sensitivity

SHAPES = {"input": (1, 1, 8, 8)}


@pytest.fixture(scope="module")
def graph(digits_model):
    return load_graph(digits_model, SHAPES)


def _tables(graph) -> tuple[Profile, Sensitivity]:
    layers = [LayerProfile(n.name, n.op_type, n.tunable, 1.0, {"fp32": 1.0, "int8": 0.25} if n.tunable else {})
              for n in graph.nodes]
    profile = Profile(Stats(9.0, 8.0, 10.0), 1.0, layers, [AdaptCost("x", "run", 0.5, "fp32")], 1, "test")
    sens = Sensitivity(0.9, "acc", {n.name: LayerSensitivity(n.name, {"int8": 0.01}) for n in graph.layers}, True)
    return profile, sens


def test_prediction_follows_the_plan(graph) -> None:
    profile, sens = _tables(graph)
    fp32 = predict_plan(graph, Plan(), profile, sens)
    first = graph.layers[0].name
    one = predict_plan(graph, Plan.from_dict({"layers": {first: {"precision": "int8"}}}), profile, sens)
    assert fp32.drop == 0.0 and fp32.latency_ms == pytest.approx(len(graph.nodes) + 0.5)
    assert one.routines[first] == "int8" and one.drop == pytest.approx(0.01)
    assert one.latency_ms < fp32.latency_ms  # 0.75 ms saved, the (unmeasured) adapts cost nothing here
    assert math.isclose(one.route().latency_ms, one.latency_ms)


def test_prediction_without_tables_is_unknown(graph) -> None:
    pred = predict_plan(graph, Plan.from_dict({"default": {"precision": "int8"}}))
    assert pred.latency_ms is None and pred.drop is None
    assert set(pred.routines.values()) == {"int8"}


def test_auto_without_a_tuner_is_predicted_as_fp32_with_a_note(graph, monkeypatch) -> None:
    monkeypatch.setattr("engine.jobs.prediction.tune_available", lambda: False)
    routines, notes = plan_routines(graph, Plan.from_dict({"default": {"precision": "auto"}}))
    assert set(routines.values()) == {"fp32"} and "auto" in notes[0]


def test_prune_edits_are_flagged_as_unpredicted(graph) -> None:
    plan = Plan.from_dict({"layers": {graph.layers[0].name: {"prune": {"ratio": 0.5}}}})
    assert any("measure" in n for n in predict_plan(graph, plan).notes)


def test_baseline_measurement_takes_the_tables(graph) -> None:
    profile, sens = _tables(graph)
    base = baseline_measurement(graph, profile, sens)
    assert (base.ms, base.metric, base.bytes) == (9.0, 0.9, graph.model.ByteSize())
    assert baseline_measurement(graph).ms is None


def test_jobs_take_picklable_arguments_and_run(digits_model, digits_eval, tmp_path) -> None:
    options = ProfileOptions(warmup=1, repeats=3, profile_runs=2, cache_dir=tmp_path)
    pickle.dumps((str(digits_model), SHAPES, options))
    profile = run(profile_model_job(str(digits_model), SHAPES, options))
    assert {lp.name for lp in profile.layers} >= {n.name for n in load_graph(digits_model, SHAPES).layers}
    plan = Plan.from_dict({"default": {"precision": "int8"}}).to_dict()
    outcome = run(measure_plan_job(str(digits_model), SHAPES, plan, evaluator=str(digits_eval), repeats=3))
    measured, base = outcome.measured, outcome.baseline
    assert outcome.plan == plan  # tagged with the plan it was computed for
    assert measured.ms > 0 and 0.5 < measured.metric <= 1.0 and measured.bytes > 0
    # fp32 was timed in turns with the variant in the same job and scored on the same samples
    assert base.ms > 0 and base.ms_p10 <= base.ms <= base.ms_p90 and base.bytes == load_graph(digits_model, SHAPES).model.ByteSize()
    assert base.metric > 0.95 and "split off" in outcome.calibration.source and not outcome.notes
    assert not outcome.calibration.random and outcome.calibration.shapes == {"input": [[1, 1, 8, 8]]}
    unscored = run(measure_plan_job(str(digits_model), SHAPES, plan, repeats=3))
    assert unscored.measured.metric is None and unscored.baseline.metric is None
    assert unscored.calibration.random and any("random inputs" in n for n in unscored.notes)
    assert unscored.calibration.count == 4 and unscored.calibration.shapes == {"input": [[1, 1, 8, 8]]}
    fp32 = run(measure_plan_job(str(digits_model), SHAPES, Plan().to_dict(), repeats=3))
    assert fp32.measured.metric is None and fp32.measured.bytes != measured.bytes  # int8 weights are smaller
    assert not fp32.notes and fp32.calibration is None  # no int8: nothing calibrated, no warning


def test_auto_layers_are_chosen_by_dprs_within_the_budget(graph) -> None:
    profile, sens = _tables(graph)
    first, second = graph.layers[0].name, graph.layers[1].name
    plan = Plan.from_dict({"default": {"precision": "auto"}, "layers": {first: {"precision": "fp32"}}})
    free, _ = plan_routines(graph, plan, profile, sens)
    assert free[first] == "fp32"  # pinned stays pinned
    assert all(free[n.name] == "int8" for n in graph.layers[1:])  # 4x faster, nothing to pay
    tight, _ = plan_routines(graph, plan, profile, sens, max_drop=0.015)
    assert tight[first] == "fp32" and sum(r != "fp32" for r in tight.values()) == 1  # 0.01 per layer: one fits
    pred = predict_plan(graph, plan, profile, sens, max_drop=0.015)
    assert pred.drop == pytest.approx(0.01) and pred.latency_ms < pred.fp32_ms
    assert second in free


def test_tune_model_job_returns_a_picklable_outcome_with_a_trial_per_round(digits_model, digits_eval,
                                                                          tmp_path) -> None:
    from engine.jobs.catalogue import TuneOutcome, tune_model_job
    from engine.optimize.tune import TuneOptions

    graph = load_graph(digits_model, SHAPES)
    first = graph.layers[0].name
    plan = Plan.from_dict({"default": {"precision": "auto"}, "layers": {first: {"precision": "fp32"}}}).to_dict()
    fast = ProfileOptions(warmup=1, repeats=3, profile_runs=2, cache_dir=tmp_path, routines=("fp32", "int8", "int8_dynamic"))
    options = TuneOptions(max_drop=0.5, repeats=3, max_rounds=2, profile=fast)  # max_drop is replaced below
    outcome = run(tune_model_job(str(digits_model), SHAPES, str(digits_eval), 0.02, plan, options))
    assert isinstance(outcome, TuneOutcome)
    assert pickle.loads(pickle.dumps(outcome)).routines == outcome.routines  # it crosses the worker's pipe
    assert set(outcome.routines) == {n.name for n in graph.layers} and outcome.routines[first] == "fp32"
    assert outcome.trials and all(t.label.startswith("tune round") and t.measured.ms > 0 for t in outcome.trials)
    assert all(t.routines[first] == "fp32" for t in outcome.trials)
    assert outcome.baseline.metric is not None and outcome.measured.metric is not None
    if outcome.feasible:
        assert outcome.baseline.metric - outcome.measured.metric <= 0.02 + 1e-9
    assert outcome.sensitivity is not None and {lp.name for lp in outcome.profile.layers} >= set(outcome.routines)


def test_export_plan_job_saves_the_variant(digits_model, tmp_path) -> None:
    import onnx

    from engine.jobs.catalogue import export_plan_job

    plan = Plan.from_dict({"default": {"precision": "auto"}}).to_dict()
    graph = load_graph(digits_model, SHAPES)
    routines = {n.name: "int8" for n in graph.layers}
    saved = run(export_plan_job(str(digits_model), SHAPES, plan, routines, tmp_path / "sub" / "v.onnx"))
    ops = {n.op_type for n in onnx.load(saved).graph.node}
    assert saved == str(tmp_path / "sub" / "v.onnx") and ops & {"QuantizeLinear", "QLinearConv", "ConvInteger"}

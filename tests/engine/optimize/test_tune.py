"""Tune: the DPRS problem built from measurements, the accuracy-control rounds, the session and the CLI."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest

from engine.optimize import dprs

from engine.optimize import tune, tune_session
from engine.evaluate.evaluator import Evaluator
from engine.ir.graph import ModelGraph, load_model
from engine.progress import run
from engine.model.plan import LayerSettings, Plan
from engine.measure.predict import predict_ms
from engine.measure.profiler import Profile, ProfileOptions, Stats, profile
from tests.engine.optimize.fake_tune import fake_pipeline as _fake_pipeline, no_drops
from tests.engine.optimize.tables import fixed_profile
from engine.optimize.routes import build_problem
from engine.evaluate.sensitivity import LayerSensitivity, Sensitivity, SweepSettings, sweep

FAST = ProfileOptions(repeats=6, profile_runs=5, warmup=2, use_cache=False)


@pytest.fixture(scope="module")
def prof(digits: ModelGraph, evaluator: Evaluator) -> Profile:
    """Timed on the evaluator's sample, as tune times (so tune may reuse it)."""
    from engine.optimize.timing_feeds import timing_feeds

    timing = timing_feeds(digits, evaluator)
    return profile(digits, replace(FAST, feeds=timing.feeds, feeds_source=timing.source))


@pytest.fixture(scope="module")
def sens(digits: ModelGraph, evaluator: Evaluator) -> Sensitivity:
    return sweep(digits, evaluator, SweepSettings())


def _all(graph: ModelGraph, problem: dprs.Problem, layer_routine: dict[str, str]) -> dict[str, str]:
    return {n.name: layer_routine.get(n.name, "fp32") for n in graph.nodes if n.name in problem.times}


def _uniform(graph: ModelGraph, problem: dprs.Problem, routine: str) -> dict[str, str]:
    return {n.name: routine if routine in problem.times[n.name] else "fp32" for n in graph.layers}


def test_problem_covers_the_graph_and_unconstrained_solve_is_fastest(digits: ModelGraph, prof: Profile, sens: Sensitivity) -> None:
    problem = build_problem(digits, prof, sens)
    assert list(problem.nodes) == [n.name for n in digits.nodes]
    ops = [n for n in digits.nodes if not n.tunable]
    assert ops and all(list(problem.times[n.name]) == ["fp32"] for n in ops)
    assert set(problem.times["/conv1/Conv"]) == {"fp32", "int8", "fp16"}  # Conv: no dynamic int8
    assert problem.weight_bytes["/fc1/Gemm"]["int8"] * 4 == problem.weight_bytes["/fc1/Gemm"]["fp32"]
    route = dprs.solve(problem)
    best = dprs.brute_force(problem)
    assert route.latency_ms == pytest.approx(best.latency_ms, rel=1e-9)
    for r in ("fp32", "int8", "int8_dynamic", "fp16"):
        assert route.latency_ms <= dprs.route_cost(problem, _all(digits, problem, _uniform(digits, problem, r)))[0] + 1e-12


def test_predicted_latency_agrees_with_predict_ms(digits: ModelGraph, prof: Profile, sens: Sensitivity) -> None:
    problem = build_problem(digits, prof, sens, routines=("fp32", "int8", "int8_dynamic"))
    layers = [n.name for n in digits.layers]
    mixed = {name: ("int8" if i % 2 else "fp32") for i, name in enumerate(layers)}
    # On these routes every island border sees neighbours that all differ, so DPRS's pairwise prices are exact.
    for lr in [_uniform(digits, problem, r) for r in ("fp32", "int8", "int8_dynamic")] + [mixed]:
        ours = dprs.route_cost(problem, _all(digits, problem, lr))[0]
        assert ours == pytest.approx(predict_ms(prof, digits, lr), rel=1e-9), lr
    # A border tensor reaching k Convs is split k ways among the pairs; when only some of them differ,
    # DPRS under-prices it by at most the unpaid shares of the border kinds' prices.
    # Two fp32 borders split here: conv2's output reaches conv_a (int8) and conv3 (fp32), and conv3's
    # input reaches back to conv2 (fp32) and conv_b (int8); each is priced half.
    split = {**mixed, "/conv2/Conv": "fp32", "/res/conv_a/Conv": "int8"}
    ours = dprs.route_cost(problem, _all(digits, problem, split))[0]
    theirs = predict_ms(prof, digits, split)
    halves = sum(prof.adapt_ms(t, "layout") or 0.0 for t in ("/conv2/Conv_output_0", "/pool/MaxPool_output_0")) / 2
    assert ours <= theirs + 1e-12
    assert theirs - ours <= halves + 1e-12


def test_zero_budget_keeps_every_layer_with_a_drop_in_fp32(digits: ModelGraph, prof: Profile) -> None:
    names = [n.name for n in digits.layers]
    free = names[1]  # one layer loses nothing: it may change
    layers = {n: LayerSensitivity(n, {"int8": 0.0 if n == free else 0.02, "fp16": 0.0 if n == free else 0.01,
                                      "int8_dynamic": 0.005}) for n in names}
    sens = Sensitivity(0.9, "acc", layers, True)
    route = dprs.solve(build_problem(digits, prof, sens), dprs.Constraints(max_drop=0.0))
    assert route.feasible and route.drop == 0.0
    assert all(route.routines[n] == "fp32" for n in names if n != free)


def test_unprofiled_unmeasured_and_pinned_routines_are_not_offered(digits: ModelGraph, prof: Profile, sens: Sensitivity) -> None:
    cut = replace(prof, layers=[replace(lp, routines={k: v for k, v in lp.routines.items() if k != "fp16"})
                                if lp.name == "/conv2/Conv" else lp for lp in prof.layers])
    layers = dict(sens.layers)
    layers["/conv3/Conv"] = LayerSensitivity("/conv3/Conv", {"fp16": 0.0})  # int8 never measured
    problem = build_problem(digits, cut, replace(sens, layers=layers), pinned={"/fc1/Gemm": "int8"})
    assert "fp16" not in problem.times["/conv2/Conv"]
    assert "int8" not in problem.times["/conv3/Conv"]
    assert dprs.solve(problem).routines["/fc1/Gemm"] == "int8"


def test_tune_digits_meets_the_budget_and_saves_a_session(
    digits: ModelGraph, evaluator: Evaluator, digits_model: Path, digits_eval: Path, tmp_path: Path
) -> None:
    plan = Plan(LayerSettings("auto"), {"/fc2/Gemm": LayerSettings("fp32")})
    options = tune.TuneOptions(max_drop=0.01, repeats=5, profile=FAST)
    result = run(tune.tune_job(digits, evaluator, options, plan))
    drop = result.baseline_metric - result.metric
    assert (result.feasible and drop <= 0.01 + 1e-9) or "no route met" in result.note
    assert result.layer_routines()["/fc2/Gemm"] == "fp32"  # pinned by the plan
    assert all(r.routines["/fc2/Gemm"] == "fp32" for r in result.rounds)
    assert result.ms_measured.median <= result.baseline_ms.median or result.model is digits.model
    from engine.io.session_file import load_session, save_session

    session = tune_session.to_session(result, digits, digits_model, digits_eval, {"input": (1, 1, 8, 8)})
    save_session(session, tmp_path / "s.json")
    back = load_session(tmp_path / "s.json")
    assert len(back.trials) == len(result.rounds) and back.baseline.metric == result.baseline_metric
    assert back.plan.settings_for("/fc2/Gemm").precision == "fp32" and back.route.routines == result.route.routines
    # the session says how int8 was calibrated: samples split off from the evaluator's, at the model's shape
    assert back.calibration == result.calibration and "split off" in back.calibration.source
    assert not back.calibration.random and back.calibration.shapes == {"input": [[1, 1, 8, 8]]}


def test_cli_rejects_bad_input(tmp_path: Path, digits_eval: Path, capsys: pytest.CaptureFixture) -> None:
    from engine.cli.main import main

    assert main(["tune", str(tmp_path / "missing.onnx"), "--eval", str(digits_eval)]) == 2
    assert main(["tune", "digits", "--eval", str(digits_eval), "--max-drop", "-1"]) == 2
    assert main(["tune", "digits", "--eval", str(digits_eval), "--memory-limit", "lots"]) == 2
    assert main(["tune", "digits", "--eval", str(digits_eval), "-o", str(tmp_path / "nowhere" / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert "missing.onnx" in err and "max_drop" in err and "--memory-limit" in err and "nowhere" in err


def test_parse_bytes() -> None:
    from engine.cli.tune import parse_bytes

    assert parse_bytes("4000000") == 4_000_000 and parse_bytes("4MB") == 4_000_000
    assert parse_bytes("512k") == 512_000 and parse_bytes("1MiB") == 1 << 20


@pytest.mark.skipif(not os.environ.get("LAYERLAB_TEST_PPOCR"), reason="slow: set LAYERLAB_TEST_PPOCR=1")
def test_ppocr_predicted_agrees_with_predict_ms(ppocr_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    graph = load_model(ppocr_model, {"x": (1, 3, 48, 320)})
    prof = profile(graph, ProfileOptions(repeats=6, profile_runs=5))
    problem = build_problem(graph, prof, None, routines=("fp32", "int8", "int8_dynamic"))
    route = dprs.solve(problem)
    layers = {n.name: route.routines[n.name] for n in graph.layers}
    assert route.latency_ms == pytest.approx(predict_ms(prof, graph, layers), rel=0.05)
    assert json.dumps(layers)


def test_the_fp32_comparison_is_interleaved(
    monkeypatch: pytest.MonkeyPatch, digits: ModelGraph, evaluator: Evaluator
) -> None:
    """A route that looked fast when timed alone but is slower than fp32 in the round-robin run is dropped."""
    sens = no_drops(digits)
    fast = fixed_profile(digits)  # every layer 10x faster in int8, adapts far cheaper: drops decide
    _fake_pipeline(monkeypatch, fast, sens, lambda r: 1.0)
    monkeypatch.setattr(tune, "measure_latency", lambda *a, **k: Stats(9.0, 8.0, 10.0))  # fp32 timed alone: slow
    seen: list[list[int]] = []

    def compare(base, candidates, feeds, options):
        seen.append(sorted(candidates))
        return Stats(0.3, 0.2, 0.4), {k: Stats(0.6, 0.5, 0.7) for k in candidates}
        yield  # noqa: unreachable

    monkeypatch.setattr(tune, "_compare_interleaved", compare)
    result = run(tune.tune_job(digits, evaluator, tune.TuneOptions(routines=("fp32", "int8"))))
    assert seen and seen[0]  # the candidates were compared with fp32 in one run
    assert "no faster than fp32" in result.note and result.model is digits.model


def test_dprs_and_predict_ms_agree_where_int8_layers_connect_directly() -> None:
    """conv_0 -> conv_1 with no op between (and conv_2 -> conv_3): when both run int8 ORT keeps the tensor
    in int8 (no Dequantize/Quantize pair); DPRS's pairwise prices and predict_ms both leave the pair out."""
    from itertools import product

    from engine.ir.graph import build_graph
    from engine.measure.predict import convert_sites
    from tests.builders import _Builder, make_model

    b = _Builder(3)
    x = "x"
    for i in range(4):
        x = b.conv(x, 8, 8, name=f"conv_{i}", relu=i % 2 == 1)  # conv_0->conv_1 direct, relu, conv_2->conv_3 direct
    graph = build_graph(make_model(b, [1, 8, 12, 12], x, [1, 8, 12, 12]))
    prof = fixed_profile(graph)  # known numbers: the agreement is arithmetic, no timing may move it
    problem = build_problem(graph, prof, None, routines=("fp32", "int8"))
    names = [n.name for n in graph.layers]
    direct = "conv_0_out"  # conv_0's output, read by conv_1 alone
    assert (prof.adapt_ms(direct, "quantize") or 0) > 0 and (prof.adapt_ms(direct, "dequantize") or 0) > 0
    for choice in product(("fp32", "int8"), repeat=len(names)):
        lr = dict(zip(names, choice))
        ours = dprs.route_cost(problem, _all(graph, problem, lr))[0]
        assert ours == pytest.approx(predict_ms(prof, graph, lr), rel=1e-9), lr
    both = {n: "int8" for n in names}
    ins, outs = convert_sites(graph, both, "int8")
    assert direct not in ins and direct not in outs and "x" in ins
    # the pair is charged as soon as one side leaves int8
    apart = {**both, "conv_1": "fp32"}
    ins, outs = convert_sites(graph, apart, "int8")
    assert direct in outs and direct not in ins
    saved = (prof.adapt_ms(direct, "quantize") or 0) + (prof.adapt_ms(direct, "dequantize") or 0)
    assert saved > 0


def test_under_the_budget_tune_adds_layers_by_time_saved_per_drop(
    monkeypatch: pytest.MonkeyPatch, digits: ModelGraph, evaluator: Evaluator
) -> None:
    """The tables say 0.004 a layer, so DPRS takes two within 0.01; measured, int8 costs nothing: tune
    goes on adding layers (each round reported) until none is left to add."""
    names = [n.name for n in digits.layers]
    sens = no_drops(digits, drop=0.004)
    fast = fixed_profile(digits)  # every layer 10x faster in int8, adapts far cheaper: drops decide
    base = run(tune.evaluate_job(digits.model, evaluator)).metric
    built = _fake_pipeline(monkeypatch, fast, sens, lambda r: base)
    options = tune.TuneOptions(max_drop=0.01, routines=("fp32", "int8"))
    result = run(tune.tune_job(digits, evaluator, options))
    first = result.rounds[0]
    assert sum(v == "int8" for v in first.routines.values()) == 2 and not first.added
    filled = [r for r in result.rounds if r.added]
    assert filled and all(set(r.added) <= {n for n, v in r.routines.items() if v == "int8"} for r in filled)
    # measured drops stay 0, so the budget is never used: it goes on until no layer helps (or the round limit)
    from engine.optimize.fill import next_layers

    assert sum(v == "int8" for v in filled[-1].routines.values()) > 2
    assert len(filled) == options.max_fill or not next_layers(digits, fast, sens, filled[-1].routines, {}, 0.01,
                                                              ("fp32", "int8"))
    # the first fill takes the layer that saves most per unit of drop (all drops equal: the most time saved)
    saved = {n: predict_ms(fast, digits, first.routines) - predict_ms(fast, digits, {**first.routines, n: "int8"})
             for n in names if first.routines[n] == "fp32"}
    assert filled[0].added[0] == max(saved, key=saved.get) or len(filled[0].added) > 1
    assert all(b in built for b in [dict(r.routines) for r in filled])
    assert any("added" in t.label for t in tune_session.round_trials(result, digits))
    # 0.009 measured: no layer's 0.004 fits in what is left, none is added
    built = _fake_pipeline(monkeypatch, fast, sens, lambda r: base - 0.009 if "int8" in r.values() else base)
    result = run(tune.tune_job(digits, evaluator, replace(options, max_rounds=1)))
    assert not any(r.added for r in result.rounds)


def test_tune_reuses_tables_and_sweeps_only_what_is_missing(
    monkeypatch: pytest.MonkeyPatch, digits: ModelGraph, evaluator: Evaluator, prof: Profile, sens: Sensitivity
) -> None:
    swept: list[tuple] = []
    real = tune.sensitivity_job

    def counting(graph, ev, settings=None):
        swept.append(settings.layers)
        return (yield from real(graph, ev, settings))

    monkeypatch.setattr(tune, "sensitivity_job", counting)
    monkeypatch.setattr(tune, "profile_job", lambda *a, **k: pytest.fail("the profile was measured again"))
    options = tune.TuneOptions(max_drop=0.01, repeats=3, max_rounds=1, max_fill=0, routines=("fp32", "int8"))
    result = run(tune.tune_job(digits, evaluator, options, None, prof, sens))
    assert swept == [] and result.sensitivity is sens and result.profile is prof
    assert result.reused == ["profile: reused", "sensitivity: reused"]
    lacking = replace(sens, layers={k: v for k, v in sens.layers.items() if k != "/conv3/Conv"})
    result = run(tune.tune_job(digits, evaluator, options, None, prof, lacking))
    assert swept == [("/conv3/Conv",)]  # only the missing layer
    assert result.sensitivity.layers["/conv3/Conv"].drops["int8"] == pytest.approx(sens.layers["/conv3/Conv"].drops["int8"])
    other = replace(sens, baseline=sens.baseline - 0.1)  # measured with another evaluator: swept again
    run(tune.tune_job(digits, evaluator, options, None, prof, other))
    assert swept[-1] is None


def test_cli_tune_with_a_session_does_not_sweep_again(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, digits_eval: Path, tmp_path: Path
) -> None:
    from engine.cli.main import main
    from engine.evaluate.contract import Evaluator as Contract

    calls = {"metric": 0}
    real_metric = Contract.metric

    def counting(self, outputs, labels=None):
        calls["metric"] += 1
        return real_metric(self, outputs, labels)

    monkeypatch.setattr(Contract, "metric", counting)
    real = tune.TuneOptions
    monkeypatch.setattr(tune, "TuneOptions", lambda **kw: real(**{**kw, "repeats": 3, "profile": FAST}))
    args = ["tune", "digits", "--eval", str(digits_eval), "--session", str(tmp_path / "s.json"), "--json"]
    assert main(args) == 0
    first, calls["metric"] = calls["metric"], 0
    out = json.loads(capsys.readouterr().out)
    assert out["reused"][1].startswith("sensitivity: measured")
    # where the shapes came from is kept with them (the example's default: no --input, no evaluator choice)
    assert json.loads((tmp_path / "s.json").read_text())["shape_notes"] == ["input: 1x1x8x8 given as the example's default"]
    assert main(args) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["reused"] == ["profile: reused", "sensitivity: reused"]
    # one evaluation for the fp32 baseline and one per measured round: no sweep (one per layer and routine)
    assert calls["metric"] == 1 + again["rounds"] < first


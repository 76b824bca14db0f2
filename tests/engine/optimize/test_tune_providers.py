"""tune --providers: provider routine tables built before DPRS, each layer placed where its routine is
fastest, the plan and the exported model saying where, a mixed route timed as parts.

As the other provider tests do, the second provider's times are hand-picked (a timer that returns fixed
numbers stands for the provider's micro-model timings) and its sessions run on the CPU provider (this
ONNX Runtime has no other): ONNX Runtime falls back to CPU for a provider it lacks, so the parts of a
mixed route really run, in turn, through the partitioned runner (only the final comparison with fp32 is
given fixed numbers: CPU code standing in for the provider says nothing about its speed)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import onnx
import pytest

from engine.errors import SettingsError
from engine.evaluate.evaluator import Evaluator
from engine.evaluate.sensitivity import LayerSensitivity, Sensitivity
from engine.ir.graph import ModelGraph
from engine.measure import provider_tables, timing
from engine.measure.partition import PartitionedModel
from engine.measure.predict import predict_ms
from engine.optimize import tune
from engine.progress import run
from tests.engine.optimize.tables import fixed_profile

_OV = "OpenVINOExecutionProvider"
_CPU = "CPUExecutionProvider"


def _fake_provider(monkeypatch: pytest.MonkeyPatch, digits: ModelGraph, sens: Sensitivity, fast: set[str]) -> list:
    """Tune's profile and sweep return fixed tables; on the provider, the segments of ``fast`` take 0.01 ms
    (fp32) and 0.005 ms (int8), every other segment 50 ms; crossings cost 0.001 ms + 0.01 ms/MB. Returns the
    list that collects what each round timed."""
    timed: list = []

    def fixed(value):
        def job(*args, **kwargs):
            return value
            yield  # noqa: unreachable - makes this a generator
        return job

    def timer(entries, whole, feeds, provider, threads, options):
        routines: dict[str, dict[str, float]] = {}
        for seg in entries:
            ms = (0.01 if seg.routine == "fp32" else 0.005) if seg.layer in fast else 50.0
            routines.setdefault(seg.layer, {})[f"{seg.routine}@OpenVINO"] = ms
        return {"routines": routines, "unsupported": {}, "run_ms": {provider: 0.02},
                "crossings": {f"{_CPU}>{provider}": [0.001, 0.01], f"{provider}>{_CPU}": [0.001, 0.01]},
                "whole": {"fp32@OpenVINO": {"median": 60.0, "p10": 59.0, "p90": 61.0}}}
        yield  # noqa: unreachable

    def spy(graph, plan, model, feeds, threads):
        form = real(graph, plan, model, feeds, threads)
        timed.append(form)
        return form

    def compare(base, candidates, feeds, options):
        # the provider's parts run CPU code here, so "faster than fp32" is decided on fixed numbers: fp32 9 ms
        return tune.Stats(9.0, 9.0, 9.0), {k: tune.Stats(1.0 + k, 1.0 + k, 1.0 + k) for k in candidates}
        yield  # noqa: unreachable

    # No layout borders seen (their weights 0): DPRS shares a border among the Convs it reaches, exact only when
    # one or all of them differ (test_tune), and that approximation is not what this file checks.
    prof = fixed_profile(digits)
    prof = replace(prof, adapts=[a for a in prof.adapts if a.routine is None or a.kind not in ("transpose", "reorder")])
    real = tune.timed_form
    monkeypatch.setattr(tune, "_compare_interleaved", compare)
    monkeypatch.setattr(tune, "profile_job", fixed(prof))
    monkeypatch.setattr(tune, "sensitivity_job", fixed(sens))
    monkeypatch.setattr(tune, "timed_form", spy)
    monkeypatch.setattr(provider_tables, "time_segments_job", timer)
    # the provider's sessions fall back to the CPU provider (ORT does so for a provider it lacks)
    monkeypatch.setattr(provider_tables, "check_provider", lambda provider, label: None)
    monkeypatch.setattr(timing, "check_provider", lambda provider, label: None)
    return timed


def _sens(digits: ModelGraph, drop: float) -> Sensitivity:
    return Sensitivity(0.99, "acc", {n.name: LayerSensitivity(n.name, {"int8": drop}, {"int8": 20.0}) for n in digits.layers}, True)


def test_tune_places_the_layers_the_provider_runs_faster_there(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, digits: ModelGraph, evaluator: Evaluator
) -> None:
    monkeypatch.setenv("LAYERLAB_CACHE", str(tmp_path))  # the fake tables must not reach the user's cache
    names = [n.name for n in digits.layers]
    fast = {names[0], names[1]}
    # int8 loses far more than the budget anywhere: the choice is fp32 here or fp32 on the provider
    timed = _fake_provider(monkeypatch, digits, _sens(digits, 0.5), fast)
    options = tune.TuneOptions(max_drop=0.01, repeats=5, routines=("fp32", "int8"), providers=(_OV,))
    result = run(tune.tune_job(digits, evaluator, options))
    chosen = result.layer_routines()
    assert chosen == {n: "fp32@OpenVINO" if n in fast else "fp32" for n in names}
    assert {n: result.plan.settings_for(n).provider for n in names} == {n: _OV if n in fast else None for n in names}
    # the prediction is predict_ms of the plan, on the profile with the provider tables merged in
    assert "fp32@OpenVINO" in result.profile.layer(names[0]).routines
    assert result.ms_predicted == pytest.approx(predict_ms(result.profile, digits, chosen), abs=1e-9)
    assert result.rounds[0].ms_predicted == pytest.approx(predict_ms(result.profile, digits, result.rounds[0].routines), abs=1e-9)
    # the mixed route was timed as parts: the provider's layers in a part of their own
    parts = [t for t in timed if isinstance(t, PartitionedModel)]
    assert parts and parts[0].providers == [_OV, _CPU]
    assert result.ms_measured.median > 0 and result.feasible


def test_int8_on_the_provider_when_its_drop_fits(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, digits: ModelGraph, evaluator: Evaluator
) -> None:
    monkeypatch.setenv("LAYERLAB_CACHE", str(tmp_path))
    names = [n.name for n in digits.layers]
    _fake_provider(monkeypatch, digits, _sens(digits, 0.0), {names[0]})
    base = run(tune.evaluate_job(digits.model, evaluator)).metric
    monkeypatch.setattr(tune, "evaluate_job", lambda *a, **k: _value(type("R", (), {"metric": base})()))
    options = tune.TuneOptions(max_drop=0.01, repeats=5, max_fill=0, routines=("fp32", "int8"), providers=(_OV,))
    result = run(tune.tune_job(digits, evaluator, options))
    first = result.rounds[0]
    assert first.routines[names[0]] == "int8@OpenVINO"  # 0.005 ms there beats every CPU routine
    assert all(not r.startswith("fp32@") for r in first.routines.values())  # 50 ms elsewhere on the provider
    assert first.ms_predicted == pytest.approx(predict_ms(result.profile, digits, first.routines), abs=1e-9)


def _value(v):
    return v
    yield  # noqa: unreachable


def test_cli_tune_providers_writes_the_placement_into_the_model(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, digits: ModelGraph, digits_model: Path, digits_eval: Path,
    capsys: pytest.CaptureFixture,
) -> None:
    from engine.cli.main import main

    monkeypatch.setenv("LAYERLAB_CACHE", str(tmp_path))
    names = [n.name for n in digits.layers]
    _fake_provider(monkeypatch, digits, _sens(digits, 0.5), {names[0]})
    out = tmp_path / "t.onnx"
    assert main(["tune", str(digits_model), "--eval", str(digits_eval), "--input", "input=1x1x8x8", "--threads", "1",
                 "--providers", _OV, "-o", str(out)]) == 0
    text = capsys.readouterr().out
    row = next(line for line in text.splitlines() if line.startswith(names[0] + " "))
    assert "@OpenVINO " in row and " OpenVINO " in row  # fp32 or int8 there: the CLI's sweep is a real one
    assert "session.layer_assignment_settings" in text and "both on device 'cpu'" in text
    model = onnx.load(str(out))
    tags = {n.name: {p.key: p.value for p in n.metadata_props}.get("layer_ann") for n in model.graph.node}
    assert tags[names[0]] == "ep_OpenVINO" and tags[names[1]] == "ep_CPU" and None not in tags.values()


def test_the_cpu_provider_and_structural_routes_are_refused_in_one_line() -> None:
    with pytest.raises(SettingsError, match="name other providers"):
        tune.TuneOptions(providers=(_CPU,))
    with pytest.raises(SettingsError, match="cannot be combined"):
        tune.TuneOptions(providers=(_OV,), structural=True)

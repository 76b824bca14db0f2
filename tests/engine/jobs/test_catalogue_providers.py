"""The window's jobs with execution providers: a profile with provider tables, a plan predicted and measured
with a layer on another provider, a tune's provider routes back as precision + provider.

The provider's times are hand-picked (a timer standing for its micro-model timings, as the other provider
tests do) and its sessions fall back to the CPU provider (this ONNX Runtime has no other)."""

from __future__ import annotations

import pytest

from engine.jobs import catalogue
from engine.measure import provider_tables, timing
from engine.measure.predict import predict_ms
from engine.measure.profiler import ProfileOptions
from engine.model.plan import LayerSettings, Plan
from engine.progress import run

_OV = "OpenVINOExecutionProvider"
_CPU = "CPUExecutionProvider"


def _timer(entries, whole, feeds, provider, threads, options):
    routines: dict[str, dict[str, float]] = {}
    for seg in entries:
        routines.setdefault(seg.layer, {})[f"{seg.routine}@OpenVINO"] = 0.001 if seg.routine == "fp32" else 0.0005
    return {"routines": routines, "unsupported": {}, "run_ms": {provider: 0.0},
            "crossings": {f"{_CPU}>{provider}": [0.01, 0.0], f"{provider}>{_CPU}": [0.02, 0.0]},
            "whole": {}}  # no all-layers route: the segment times stay as timed (scale not set)
    yield  # noqa: unreachable


@pytest.fixture
def fake_provider(monkeypatch, tmp_path):
    monkeypatch.setenv("LAYERLAB_CACHE", str(tmp_path))
    monkeypatch.setattr(provider_tables, "time_segments_job", _timer)
    monkeypatch.setattr(provider_tables, "check_provider", lambda provider, label: None)
    monkeypatch.setattr(timing, "check_provider", lambda provider, label: None)


def test_profile_job_merges_the_provider_tables(fake_provider, digits_model) -> None:
    shapes = {"input": (1, 1, 8, 8)}
    options = ProfileOptions(repeats=4, profile_runs=3, warmup=1, routines=("fp32", "int8"), threads=1)
    prof = run(catalogue.profile_model_job(str(digits_model), shapes, options, providers=(_OV,)))
    graph = catalogue.load_graph(str(digits_model), shapes)
    for node in graph.layers:
        assert prof.layer(node.name).routines["fp32@OpenVINO"] == 0.001 and prof.layer(node.name).routines["int8@OpenVINO"] == 0.0005
    assert prof.crossings == {f"{_CPU}>{_OV}": [0.01, 0.0], f"{_OV}>{_CPU}": [0.02, 0.0]}
    # the window's prediction prices a layer placed there as predict_ms does: its segment there, two crossings
    name = graph.layers[1].name
    plan = Plan(LayerSettings("fp32"), {name: LayerSettings("int8", provider=_OV)})
    prediction = catalogue.predict_plan(graph, plan, prof)
    assert prediction.routines[name] == "int8@OpenVINO"
    assert prediction.latency_ms == pytest.approx(predict_ms(prof, graph, {name: "int8@OpenVINO"}), abs=1e-12)
    assert prediction.latency_ms != pytest.approx(predict_ms(prof, graph, {name: "int8"}), abs=1e-6)
    # auto layers may be placed there by DPRS: every segment there takes less than any CPU layer, crossings aside
    auto = catalogue.plan_routines(graph, Plan(LayerSettings("auto")), prof)[0]
    assert set(auto.values()) == {"int8@OpenVINO"}


def test_measure_times_a_plan_with_a_layer_on_another_provider_as_parts(fake_provider, digits_model, monkeypatch) -> None:
    shapes = {"input": (1, 1, 8, 8)}
    graph = catalogue.load_graph(str(digits_model), shapes)
    name = graph.layers[1].name
    timed = []
    from engine.measure import interleave  # imported inside the job: spy on the module it comes from

    original = interleave.interleaved_latency

    def spy(models, *a, **k):
        timed.append(models)
        return original(models, *a, **k)

    monkeypatch.setattr(interleave, "interleaved_latency", spy)
    plan = Plan(LayerSettings("fp32"), {name: LayerSettings("fp32", provider=_OV)}).to_dict()
    out = run(catalogue.measure_plan_job(str(digits_model), shapes, plan, threads=1, repeats=3))
    assert out.measured.ms > 0 and out.plan == plan
    assert timed[0]["plan"].providers == [_CPU, _OV, _CPU]  # conv1's segment, then conv2's on OpenVINO, then the rest
    # auto layers resolve to DPRS's provider routine as precision + provider
    resolved = catalogue._resolve_auto(Plan(LayerSettings("auto")), graph, {name: "int8@OpenVINO"})
    assert resolved.settings_for(name) == LayerSettings("int8", provider=_OV)

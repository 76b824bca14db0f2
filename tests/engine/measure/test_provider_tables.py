"""Routine tables per execution provider: the crossing fit, merging into a profile, and (where the
OpenVINO provider is installed) every segment timed on it."""

from __future__ import annotations

from dataclasses import replace

import onnxruntime as ort
import pytest

from engine.errors import SettingsError
from engine.ir.graph import build_graph
from engine.measure.provider_tables import ProviderTables, TableOptions, crossing_fit, merge, provider_tables
from engine.measure.predict import predict_ms
from engine.measure.tables import AdaptCost, LayerProfile, Profile, Stats
from tests import builders

_MB = 1024 * 1024
_OV = "OpenVINOExecutionProvider"


def test_the_crossing_fit_recovers_a_line_and_never_goes_negative() -> None:
    line = [(b, 0.05 + 0.3 * b / _MB) for b in (16_384, 262_144, _MB, 4 * _MB)]
    fixed, per_mb = crossing_fit(line)
    assert fixed == pytest.approx(0.05, abs=1e-9) and per_mb == pytest.approx(0.3, abs=1e-9)
    # a falling line (noise on a flat cost): the mean, no slope
    assert crossing_fit([(_MB, 0.2), (2 * _MB, 0.1)]) == pytest.approx((0.15, 0.0))
    # a negative intercept: a line through the origin instead
    fixed, per_mb = crossing_fit([(_MB, 0.1), (2 * _MB, 0.3)])
    assert fixed == 0.0 and per_mb == pytest.approx((0.1 * 1 + 0.3 * 2) / 5, abs=1e-12)
    assert crossing_fit([(_MB, -0.2)]) == (0.0, 0.0)


def _stack_profile(graph) -> Profile:
    layers = [LayerProfile(n.name, n.op_type, n.tunable, {"conv_0": 1.0, "conv_1": 2.0, "conv_2": 3.0}.get(n.name, 0.1),
                           {"fp32": {"conv_0": 1.0, "conv_1": 2.0, "conv_2": 3.0}[n.name]} if n.tunable else {})
              for n in graph.nodes]
    return Profile(Stats(6.5, 6.4, 6.6), 1.0, layers, [AdaptCost("", "run", 0.05, "fp32")], threads=1, ort_version="t")


def test_merge_scales_the_segments_so_the_route_all_on_the_provider_predicts_what_it_measured() -> None:
    """Segments alone sum to 4.0 ms on OpenVINO; all of them in one route measured 2.05 ms, of which 0.05 is
    the run cost: every OpenVINO routine is halved, and the all-OpenVINO prediction is the measurement."""
    graph = build_graph(builders.conv_stack(n=3, channels=4, size=8))
    profile = _stack_profile(graph)
    tables = ProviderTables(routines={"conv_0": {"fp32@OpenVINO": 1.0, "int8@OpenVINO": 0.6}, "conv_1": {"fp32@OpenVINO": 1.0},
                                      "conv_2": {"fp32@OpenVINO": 2.0}},
                            unsupported={"conv_1": {"int8@OpenVINO": "no"}},
                            crossings={f"CPUExecutionProvider>{_OV}": [0.01, 0.02]},
                            whole={"fp32@OpenVINO": {"median": 2.05, "p10": 2.0, "p90": 2.1}})
    merged = merge(profile, tables, graph)
    assert merged.provider_scale == {_OV: pytest.approx(0.5)}
    assert merged.layer("conv_0").routines == {"fp32": 1.0, "fp32@OpenVINO": pytest.approx(0.5), "int8@OpenVINO": pytest.approx(0.3)}
    assert merged.layer("conv_1").unsupported == {"int8@OpenVINO": "no"}
    assert predict_ms(merged, graph, dict.fromkeys(["conv_0", "conv_1", "conv_2"], "fp32@OpenVINO")) == pytest.approx(2.05)
    assert merged.crossings == {f"CPUExecutionProvider>{_OV}": [0.01, 0.02]}
    assert merged.variants == {"fp32@OpenVINO": Stats(2.05, 2.0, 2.1)}
    assert profile.layer("conv_0").routines == {"fp32": 1.0} and profile.crossings == {}  # the input is untouched
    assert Profile.from_json(merged.to_json()) == merged
    # a route measured slower than any scale can explain is held at the bound
    slow = replace(tables, whole={"fp32@OpenVINO": {"median": 100.0, "p10": 99.0, "p90": 101.0}})
    assert merge(profile, slow, graph).provider_scale == {_OV: 4.0}


def test_cpu_and_unknown_routines_are_refused_in_one_line() -> None:
    graph = build_graph(builders.conv_stack(n=2, channels=4, size=8))
    with pytest.raises(SettingsError, match="the CPU provider's routines come from the profile"):
        provider_tables(graph, TableOptions(providers=("CPUExecutionProvider",)))
    with pytest.raises(SettingsError, match="routine 'fp16' per provider"):
        provider_tables(graph, TableOptions(providers=(_OV,), routines=("fp16",)))


@pytest.mark.skipif(_OV not in ort.get_available_providers(), reason="the OpenVINO execution provider is not installed")
def test_every_segment_is_timed_on_openvino(tmp_path) -> None:
    graph = build_graph(builders.residual_net(blocks=1, channels=8, size=8))
    routines = ("fp32",) if ort.__version__ < "1.25" else ("fp32", "int8")  # 1.24's quantizer cannot build int8 here
    tables = provider_tables(graph, TableOptions(providers=(_OV,), routines=routines, threads=1, repeats=5, cache_dir=tmp_path))
    assert {k: sorted(v) for k, v in tables.routines.items()} == {n.name: sorted(f"{r}@OpenVINO" for r in routines) for n in graph.layers}
    assert set(tables.crossings) == {f"CPUExecutionProvider>{_OV}", f"{_OV}>CPUExecutionProvider"}
    assert all(v[0] >= 0 and v[1] >= 0 for v in tables.crossings.values())
    assert tables.whole["fp32@OpenVINO"]["median"] > 0


@pytest.mark.skipif(_OV not in ort.get_available_providers(), reason="the OpenVINO execution provider is not installed")
def test_profile_providers_adds_openvino_routines_and_crossings(tmp_path, monkeypatch, capsys, digits_model) -> None:
    import json

    from engine.cli.main import main

    monkeypatch.setenv("LAYERLAB_CACHE", str(tmp_path))
    assert main(["profile", str(digits_model), "--input", "input=1x1x8x8", "--repeats", "5", "--threads", "1",
                 "--providers", _OV, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    layers = [lp for lp in data["layers"] if lp["tunable"]]
    assert layers and all("fp32@OpenVINO" in lp["routines"] and lp["routines"]["fp32@OpenVINO"] >= 0 for lp in layers)
    assert set(data["crossings"]) == {f"CPUExecutionProvider>{_OV}", f"{_OV}>CPUExecutionProvider"}
    assert 0.1 <= data["provider_scale"][_OV] <= 4.0 and "fp32@OpenVINO" in data["variants_ms"]

"""Routine tables per execution provider: the crossing fit, merging into a profile, and (where the
OpenVINO provider is installed) every segment timed on it."""

from __future__ import annotations

import onnxruntime as ort
import pytest

from engine.errors import SettingsError
from engine.ir.graph import build_graph
from engine.measure.provider_tables import ProviderTables, TableOptions, crossing_fit, merge, provider_tables
from engine.measure.tables import LayerProfile, Profile, Stats
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


def test_merge_adds_provider_routines_crossings_and_whole_runs_without_touching_the_profile() -> None:
    profile = Profile(Stats(2, 1, 3), 1.0, [LayerProfile("c", "Conv", True, 1.0, {"fp32": 1.0}), LayerProfile("r", "Relu", False, 0.1)],
                      [], threads=1, ort_version="t")
    tables = ProviderTables(routines={"c": {"fp32@OpenVINO": 0.4, "int8@OpenVINO": 0.3}},
                            unsupported={"c": {"fp16@OpenVINO": "no"}},
                            crossings={f"CPUExecutionProvider>{_OV}": [0.01, 0.02]},
                            whole={"fp32@OpenVINO": {"median": 0.6, "p10": 0.5, "p90": 0.7}})
    merged = merge(profile, tables)
    assert merged.layer("c").routines == {"fp32": 1.0, "fp32@OpenVINO": 0.4, "int8@OpenVINO": 0.3}
    assert merged.layer("c").unsupported == {"fp16@OpenVINO": "no"}
    assert merged.crossings == {f"CPUExecutionProvider>{_OV}": [0.01, 0.02]}
    assert merged.variants == {"fp32@OpenVINO": Stats(0.6, 0.5, 0.7)}
    assert profile.layer("c").routines == {"fp32": 1.0} and profile.crossings == {}
    assert Profile.from_json(merged.to_json()) == merged


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

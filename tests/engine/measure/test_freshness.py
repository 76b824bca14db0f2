"""A cached profile is reused only while the machine times fp32 as it did then (no timing: injected measures)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.ir.graph import ModelGraph, load_model
from engine.measure import freshness, profiler
from engine.measure.profiler import ProfileOptions, profile_job
from engine.measure.timing import Calibration
from engine.progress import run


@pytest.fixture(scope="module")
def digits(digits_model: Path) -> ModelGraph:
    return load_model(digits_model, {"input": (1, 1, 8, 8)})


def test_freshness_within_and_beyond_the_tolerance() -> None:
    same = freshness.Freshness(4.0, 4.6)
    assert same.fits and same.change == pytest.approx(0.15)
    assert same.note().startswith("reused from the cache: fp32 4.600 ms now, 4.000 ms when cached (+15%")
    stale = freshness.Freshness(4.0, 8.4)
    assert not stale.fits and stale.change == pytest.approx(1.1)
    assert "measured again" in stale.note() and "+110%" in stale.note() and "beyond ±20%" in stale.note()
    faster = freshness.Freshness(10.0, 7.9)  # quieter now than when cached: stale too
    assert not faster.fits and "-21%" in faster.note()
    assert freshness.Freshness(4.0, 4.7, tolerance=0.15).fits is False
    assert not freshness.Freshness(0.0, 1.0).fits


def test_check_uses_the_injected_measure(digits: ModelGraph) -> None:
    asked: list[tuple] = []

    def measure(model, feeds, threads, provider):
        asked.append((model is digits.model, sorted(feeds), threads, provider))
        return 2.5

    fresh = freshness.check(2.0, digits.model, {"input": None}, 3, "CPUExecutionProvider", measure)
    assert asked == [(True, ["input"], 3, "CPUExecutionProvider")]
    assert fresh.now_ms == 2.5 and fresh.cached_ms == 2.0 and not fresh.fits


@pytest.fixture()
def fake_profiling(monkeypatch: pytest.MonkeyPatch) -> dict:
    """The profiler's measuring steps replaced: each variant 'measures' state['e2e'] ms; counts what was measured."""
    state = {"e2e": 4.0, "variants": [], "calibrations": 0}

    def fake_variant(graph, routine, feeds, threads, calib, options, tmp, reference=None):
        state["variants"].append(routine)
        e2e = state["e2e"] if routine == "fp32" else state["e2e"] / 2
        return {"ok": True, "e2e": {"median": e2e, "p10": e2e, "p90": e2e}, "unsupported": {},
                "nodes": {n.name: e2e / len(graph.nodes) for n in graph.nodes}, "adapts": [], "raw_ms": e2e,
                "overhead_ms": 0.0}
        yield  # noqa: unreachable - a generator, as the real one

    def fake_calibrate(threads, tmp):
        state["calibrations"] += 1
        return Calibration(0.01, 0.001)
        yield  # noqa: unreachable

    monkeypatch.setattr(profiler, "_profile_variant", fake_variant)
    monkeypatch.setattr(profiler, "calibrate", fake_calibrate)
    return state


def test_a_cached_profile_is_reused_within_the_tolerance_and_measured_again_beyond(
    digits: ModelGraph, tmp_path: Path, fake_profiling: dict
) -> None:
    options = ProfileOptions(threads=1, routines=("fp32", "int8"), ops_int8=False, adapts=False, cache_dir=tmp_path)
    first = run(profile_job(digits, options, measure_now=lambda *a: pytest.fail("nothing cached: nothing to check")))
    assert fake_profiling["variants"] == ["fp32", "int8"] and first.cache == ""
    assert first.end_to_end.median == 4.0

    # the machine times fp32 at 4.5 ms now (+12.5 %): the cached times are reused, nothing is profiled
    again = run(profile_job(digits, options, measure_now=lambda *a: 4.5))
    assert fake_profiling["variants"] == ["fp32", "int8"] and fake_profiling["calibrations"] == 1
    assert again.end_to_end.median == 4.0 and again.cache.startswith("reused from the cache")

    # a loaded hour: fp32 takes 8.4 ms now (+110 %): every routine and the calibration are measured again
    fake_profiling["e2e"] = 8.4
    stale = run(profile_job(digits, options, measure_now=lambda *a: 8.4))
    assert fake_profiling["variants"] == ["fp32", "int8", "fp32", "int8"] and fake_profiling["calibrations"] == 2
    assert stale.end_to_end.median == 8.4 and "measured again" in stale.cache and "+110%" in stale.cache
    assert stale.variants["int8"].median == 4.2

    # the new times replaced the old: at the same load they are reused
    reused = run(profile_job(digits, options, measure_now=lambda *a: 8.0))
    assert fake_profiling["variants"] == ["fp32", "int8", "fp32", "int8"] and reused.end_to_end.median == 8.4
    assert reused.cache.startswith("reused from the cache")


def test_no_check_without_the_cache_or_with_a_trace(digits: ModelGraph, tmp_path: Path, fake_profiling: dict) -> None:
    never = lambda *a: pytest.fail("no cached profile to check")  # noqa: E731
    options = ProfileOptions(threads=1, routines=("fp32",), adapts=False, cache_dir=tmp_path, use_cache=False)
    run(profile_job(digits, options, measure_now=never))
    run(profile_job(digits, options, measure_now=never))
    assert fake_profiling["variants"] == ["fp32", "fp32"]
    cached = ProfileOptions(threads=1, routines=("fp32",), adapts=False, cache_dir=tmp_path)
    run(profile_job(digits, cached, measure_now=never))  # nothing cached yet
    traced = run(profile_job(digits, ProfileOptions(threads=1, routines=("fp32",), adapts=False, cache_dir=tmp_path,
                                                    trace_path=tmp_path / "t.json"), measure_now=never))
    assert fake_profiling["variants"] == ["fp32"] * 4 and traced.cache == ""  # a trace is always a fresh fp32 run

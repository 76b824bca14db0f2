"""tune_job with its measuring steps replaced by fakes: the rounds' logic checked on fixed numbers."""

from __future__ import annotations

import pytest

from engine.measure.profiler import Profile, Stats
from engine.evaluate.sensitivity import LayerSensitivity, Sensitivity
from engine.ir.graph import ModelGraph
from engine.optimize import tune

__all__ = ["fake_pipeline", "no_drops"]


def fake_pipeline(monkeypatch: pytest.MonkeyPatch, prof: Profile, sens: Sensitivity, metric_of,
                   ops_ms: float = 0.5, ops_drop: float = 0.0) -> list[dict[str, str]]:
    """Replace the measuring steps of tune_job by fakes; returns the routines of every built variant.

    A variant with its ops in int8 measures ``ops_ms`` and loses ``ops_drop`` more than ``metric_of`` says."""
    built: list[dict[str, str]] = []

    def fake_job(value):
        def job(*args, **kwargs):
            return value
            yield  # noqa: unreachable - makes this a generator
        return job

    def fake_build(graph, plan, calibration, evaluator, feeds, options, i):
        routines = {n.name: plan.settings_for(n.name).precision for n in graph.layers}
        built.append(routines)
        if plan.ops == "int8":
            return graph.model, Stats(ops_ms, ops_ms, ops_ms), metric_of(routines) - ops_drop, graph.model
        return graph.model, Stats(0.5, 0.4, 0.6), metric_of(routines), graph.model
        yield  # noqa: unreachable

    def fake_compare(base, candidates, feeds, options):
        return tune.measure_latency(base, feeds), {}  # candidates keep the times fake_build gave them
        yield  # noqa: unreachable

    monkeypatch.setattr(tune, "_compare_interleaved", fake_compare)
    monkeypatch.setattr(tune, "profile_job", fake_job(prof))
    monkeypatch.setattr(tune, "sensitivity_job", fake_job(sens))
    monkeypatch.setattr(tune, "_build_and_measure", fake_build)
    monkeypatch.setattr(tune, "measure_latency", lambda *a, **k: Stats(1.0, 0.9, 1.1))
    return built


def no_drops(graph: ModelGraph, routines: tuple[str, ...] = ("int8",), drop: float = 0.0) -> Sensitivity:
    """A sweep in which every layer loses ``drop`` in each of ``routines`` (baseline 0.99)."""
    return Sensitivity(0.99, "acc", {n.name: LayerSensitivity(n.name, dict.fromkeys(routines, drop))
                                     for n in graph.layers}, True)

"""Tune's one thread count: the profile it predicts from and every latency it measures share it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from engine.evaluate.evaluator import Evaluator
from engine.evaluate.sensitivity import LayerSensitivity, Sensitivity
from engine.ir.graph import ModelGraph
from engine.measure.profiler import ProfileOptions, Stats
from engine.optimize import tune
from engine.progress import run
from tests.engine.optimize.tables import fixed_profile


def test_profile_and_every_latency_take_one_thread_count(
    monkeypatch: pytest.MonkeyPatch, digits: ModelGraph, evaluator: Evaluator, digits_model: Path, digits_eval: Path
) -> None:
    """The profile options' threads hold for the latencies too (and tune's own for the profile): DPRS predicts
    from a profile taken at the count every round, fp32 and the comparison are measured at."""
    from engine.jobs.catalogue import tune_model_job

    names = [n.name for n in digits.layers]
    sens = Sensitivity(0.99, "acc", {n: LayerSensitivity(n, {"int8": 0.0}) for n in names}, True)
    fixed = fixed_profile(digits)  # measured with 1 thread
    seen: dict[str, list] = {"profile": [], "latency": [], "compare": []}

    def profile_job(graph, options):
        seen["profile"].append(options.threads)
        return replace(fixed, threads=options.threads)
        yield  # noqa: unreachable

    def sensitivity_job(*args, **kwargs):
        return sens
        yield  # noqa: unreachable

    def compare(base, candidates, feeds, options):
        seen["compare"].append(options.threads)
        return Stats(1.0, 0.9, 1.1), {k: Stats(0.5, 0.4, 0.6) for k in candidates}
        yield  # noqa: unreachable

    monkeypatch.setattr(tune, "profile_job", profile_job)
    monkeypatch.setattr(tune, "sensitivity_job", sensitivity_job)
    monkeypatch.setattr(tune, "_compare_interleaved", compare)
    monkeypatch.setattr(tune, "measure_latency", lambda model, feeds, threads, **kw: seen["latency"].append(threads)
                        or Stats(1.0, 0.9, 1.1))
    options = tune.TuneOptions(routines=("fp32", "int8"), max_rounds=1, max_fill=0, profile=ProfileOptions(threads=1))
    run(tune.tune_job(digits, evaluator, options))
    assert seen["profile"] == [1] and set(seen["latency"]) == {1} and seen["compare"] == [1]
    # a profile taken with 1 thread does not stand for one at 2: tune profiles again, at 2
    seen = {k: [] for k in seen}
    run(tune.tune_job(digits, evaluator, replace(options, threads=2, profile=None), None, fixed, sens))
    assert seen["profile"] == [2] and set(seen["latency"]) == {2} and seen["compare"] == [2]
    # the window's count replaces whatever its tune options say
    seen = {k: [] for k in seen}
    run(tune_model_job(digits_model, {"input": (1, 1, 8, 8)}, digits_eval, 0.01, None, replace(options, threads=2),
                       threads=1))
    assert seen["profile"] == [1] and set(seen["latency"]) == {1}

"""Tune on a target: DPRS works on the target's routine tables and every latency comes from the target."""

from __future__ import annotations

from pathlib import Path

from engine.evaluate.evaluator import load_evaluator
from engine.ir.graph import load_model
from engine.measure.profiler import ProfileOptions, Stats, profile
from engine.optimize.tune import TuneOptions, tune_job
from engine.optimize.tune_session import to_session
from engine.progress import Progress, run

FAST = ProfileOptions(repeats=6, profile_runs=5, warmup=2, use_cache=False)


class _Target:
    """A target whose int8 kernels are 50x slower than fp32 (as on a board without int8 kernels)."""

    def __init__(self, graph) -> None:
        self.base = profile(graph, FAST)
        self.timed: list[list[str]] = []

    def profile_job(self, graph, options):
        yield Progress(0, 1, "target")
        prof = self.base
        for lp in prof.layers:
            if "int8" in lp.routines:
                lp.routines["int8"] = 50 * max(lp.routines["fp32"], 0.01)
            lp.routines.pop("int8_dynamic", None)
        prof.target = {"name": "slow-int8", "address": "127.0.0.1:9", "cpu": "board", "ort": "x", "cores": 4}
        return prof

    def latency_job(self, models, feeds, threads, repeats, sessions=3):
        yield Progress(0, 1, "target timing")
        self.timed.append(list(models))
        return {n: Stats(1.0, 0.9, 1.1) for n in models}


def test_tune_uses_the_targets_tables_and_timings(digits_model: Path, digits_eval: Path) -> None:
    graph = load_model(digits_model, {"input": (1, 1, 8, 8)})
    target = _Target(graph)
    result = run(tune_job(graph, load_evaluator(digits_eval), TuneOptions(max_drop=0.05, repeats=5, target=target)))
    # Here int8 wins (tests/engine/optimize/test_tune.py); on this target it never pays: DPRS keeps fp32.
    assert set(result.rounds[0].routines.values()) == {"fp32"}
    assert result.baseline_ms == Stats(1.0, 0.9, 1.1)  # the baseline was timed on the target
    assert target.timed[0] == [f"{graph.label} [fp32]"]
    assert result.profile.target["name"] == "slow-int8"
    session = to_session(result, graph, digits_model, digits_eval, {"input": (1, 1, 8, 8)})
    assert session.machine["target"] == "slow-int8" and session.machine["cpu"] == "board"

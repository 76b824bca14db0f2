"""A finished tune as session data: the session it leaves, and one Trial per round."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from engine.ir.graph import ModelGraph
from engine.model.session import Measurement, Session, Trial
from engine.optimize.plans import route_plan, sweep_calibration
from engine.optimize.tune import TuneResult

__all__ = ["round_trials", "to_session"]

logger = logging.getLogger(__name__)


def to_session(result: TuneResult, graph: ModelGraph, model_path: Any, evaluator_path: Any,
               input_shapes: Mapping[str, tuple[int, ...]] | None = None, shape_notes: Sequence[str] = ()) -> Session:
    """A Session holding the tune: plan, profile, sensitivity, route, baseline/current and one Trial per round."""
    session = Session()
    session.set_model(Path(model_path), graph, dict(input_shapes or {}), shape_notes)
    if evaluator_path is not None:
        session.set_evaluator(Path(evaluator_path))
    session.set_plan(result.plan)
    session.set_profile(result.profile)
    if result.profile.target:  # measured on a remote target: the session's machine is that one
        t = result.profile.target
        session.machine = {"cpu": t.get("cpu"), "cores": t.get("cores"), "system": t.get("host"),
                           "onnxruntime": t.get("ort"), "target": t.get("name") or t.get("address"),
                           "providers": t.get("providers")}
    session.set_sensitivity(result.sensitivity)
    session.set_route(result.route)
    b = result.baseline_ms
    session.set_baseline(Measurement(b.median, b.p10, b.p90, result.baseline_metric, graph.model.ByteSize()))
    m = result.ms_measured
    session.set_current(Measurement(m.median, m.p10, m.p90, result.metric, result.model.ByteSize()))
    for trial in round_trials(result, graph):
        session.add_trial(trial)
    session.set_calibration(result.calibration)
    return session


def round_trials(result: TuneResult, graph: ModelGraph) -> list[Trial]:
    """One session Trial per tune round: its plan, routines, predicted and measured numbers."""
    return [Trial(
        plan=route_plan(graph, r.routines, r.ops, sweep_calibration(result.sensitivity)).to_dict(), routines=dict(r.routines),
        predicted=Measurement(ms=r.ms_predicted, metric=result.baseline_metric - r.drop_predicted, bytes=r.weight_bytes),
        measured=Measurement(r.ms_measured.median, r.ms_measured.p10, r.ms_measured.p90, r.metric),
        label=f"tune round {i + 1}" + (" (ops int8)" if r.ops != "fp32" else "")
        + (f" (reverted {', '.join(r.reverted)})" if r.reverted else "")
        + (f" (added {', '.join(r.added)})" if r.added else ""),
    ) for i, r in enumerate(result.rounds)]

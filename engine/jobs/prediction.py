"""The instant prediction of a plan: routines, latency and drop from cached tables, without ONNX Runtime.

The window calls it on a background thread at every plan edit; the baseline row comes from here too.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any
from engine.errors import LayerLabError
from engine.model.session import Measurement

__all__ = ["Prediction", "baseline_measurement", "plan_routines", "predict_plan", "tune_available"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prediction:
    """What a plan should cost, from cached tables: routines per layer, latency, metric drop."""

    routines: dict[str, str]
    latency_ms: float | None
    drop: float | None
    notes: list[str] = field(default_factory=list)
    fp32_ms: float | None = None  # the same prediction for the all-fp32 plan: speedups compare like with like

    def route(self) -> Any:
        """The prediction as an ``engine.optimize.dprs.Route`` (for the session and the routine colour mode)."""
        from engine.optimize.dprs import Route

        return Route(dict(self.routines), self.latency_ms if self.latency_ms is not None else math.nan,
                     self.drop if self.drop is not None else math.nan, 0, 0.0,
                     detail="; ".join(self.notes))


def tune_available() -> bool:
    """True when ``engine.optimize.tune`` (DPRS over the session's tables) can be imported."""
    try:
        import engine.optimize.tune  # noqa: F401
    except ImportError:
        return False
    return True


def plan_routines(graph: Any, plan: Any, profile: Any = None, sensitivity: Any = None,
                  max_drop: float | None = None) -> tuple[dict[str, str], list[str]]:
    """The routine of every layer under ``plan``; ``auto`` layers are chosen by DPRS when engine.optimize.tune exists.

    DPRS solves ``engine.optimize.routes.build_problem`` over the profile (and sensitivity) with the layers that
    are not ``auto`` pinned, within ``max_drop`` when given. Without a profile (or the tuner) an ``auto``
    layer is predicted as fp32, and a note says so.
    """
    from engine.measure.providers import CPU, routine_on

    # a layer placed on another provider runs its precision there (int8@OpenVINO)
    chosen = {n.name: routine_on(s.precision or "fp32", s.provider or CPU) if s.precision != "auto" else "auto"
              for n in graph.layers for s in [plan.settings_for(n.name)]}
    auto = [n for n, r in chosen.items() if r == "auto"]
    notes: list[str] = []
    if auto and profile is not None and tune_available():
        from engine.optimize import dprs
        from engine.optimize.routes import build_problem
        from engine.optimize.tune import TuneOptions

        pinned = {n: r for n, r in chosen.items() if r != "auto"}
        try:
            # tune's routines: ORT's fp16 CPU timings are cast noise that would lure DPRS (see engine.optimize.tune)
            # plus the provider routines the profile has (the window's Target ▸ Execution providers)
            extra = sorted({r for lp in profile.layers for r in lp.routines if "@" in r})
            problem = build_problem(graph, profile, sensitivity, pinned=pinned, routines=(*TuneOptions().routines, *extra))
            route = dprs.solve(problem, dprs.Constraints(max_drop=max_drop))
            if not route.feasible:
                notes.append(f"DPRS: no route within the budget ({route.detail or route.binding})")
            chosen.update({n: route.routines.get(n, "fp32") for n in auto})
            auto = []
        except (LayerLabError, KeyError, ValueError) as exc:  # a half-made table: predict, do not fail
            notes.append(f"DPRS failed ({exc})")
    if profile is not None:
        timed = {lp.name: lp.routines for lp in profile.layers}
        untimed = [n for n, r in chosen.items() if "@" in r and r not in timed.get(n, {})]
        if untimed:
            notes.append(f"{len(untimed)} layer(s) on a provider this profile has no times for: predicted at their CPU "
                         "time (profile with that provider: Target ▸ Execution providers)")
    if auto:
        why = "no profile yet" if profile is None else "no tuner"
        notes.append(f"{len(auto)} auto layer(s) predicted as fp32 ({why})")
        chosen.update({n: "fp32" for n in auto})
    return chosen, notes


def predict_plan(graph: Any, plan: Any, profile: Any = None, sensitivity: Any = None,
                 max_drop: float | None = None) -> Prediction:
    """Predicted latency (``engine.measure.predict.predict_ms``) and drop (sum of per-layer drops) of ``plan``.

    The tables hold layer precisions and, when the profile timed it, ops in int8; pruning and low-rank
    are measured, not predicted (a note says so).
    """
    from engine.measure.predict import predict_ms
    from engine.measure.providers import split_routine

    routines, notes = plan_routines(graph, plan, profile, sensitivity, max_drop)
    latency = predict_ms(profile, graph, routines, plan.ops) if profile is not None else None
    drop = None
    if sensitivity is not None:
        drop, unknown = 0.0, 0
        for name, routine in routines.items():
            if routine == "fp32":
                continue
            base = split_routine(routine)[0]  # a provider's routine loses what its precision does
            value = 0.0 if base == "fp32" else getattr(sensitivity.layers.get(name), "drops", {}).get(base)
            if value is None:
                unknown += 1
            else:
                drop += float(value)
        if unknown:
            notes.append(f"{unknown} layer(s) have no measured drop for their routine")
    if any(plan.settings_for(n.name).prune is not None or plan.settings_for(n.name).rank is not None
           for n in graph.layers):
        notes.append("pruning and rank are not in the tables: measure to see them")
    if plan.ops != "fp32" and (profile is None or all(lp.int8_ops is None for lp in profile.layers)):
        notes.append(f"ops in {plan.ops} are not in this profile: measure to see them")
    fp32 = predict_ms(profile, graph, {n: "fp32" for n in routines}) if profile is not None else None
    return Prediction(routines, latency, drop, notes, fp32)


def baseline_measurement(graph: Any, profile: Any = None, sensitivity: Any = None) -> Measurement:
    """The fp32 model's numbers as far as the tables know them: profiled latency, baseline metric, size."""
    e2e = getattr(profile, "end_to_end", None)
    metric = getattr(sensitivity, "baseline", None)
    if metric is not None and not math.isfinite(metric):
        metric = None
    return Measurement(getattr(e2e, "median", None), getattr(e2e, "p10", None), getattr(e2e, "p90", None),
                       metric, graph.model.ByteSize())

"""What tune can take from tables already measured, and what it must still measure.

A profile is reused when it was measured for the same model (sha256), the same input shapes and
the same threads (tune settles on one count first, ``threads_for``, and measures with it too), timed on
the same inputs (``engine.optimize.timing_feeds``: an evaluator's sample, or generated ones); a
sensitivity table when its baseline equals the metric tune just measured for fp32 with the same evaluator (a different evaluator, sample set
or calibration split gives another baseline) and it was complete. Only the (layer, routine) pairs the
table lacks are swept (``missing_sweep``), and the result is merged (``merge``).
"""

from __future__ import annotations

import logging
import math
from dataclasses import replace
from typing import Any, Sequence

from engine.evaluate.sensitivity import LayerSensitivity, Sensitivity, SweepSettings
from engine.ir.graph import ModelGraph
from engine.measure.tables import Profile
from engine.passes.layer_variants import applicable

__all__ = ["merge", "missing_sweep", "profile_fits", "sensitivity_fits", "threads_for"]

logger = logging.getLogger(__name__)


def _shapes(graph: ModelGraph) -> dict[str, list[int]]:
    return {t.name: [int(d) for d in t.shape] for t in graph.inputs
            if t.shape is not None and all(isinstance(d, int) for d in t.shape)}


def threads_for(threads: int | None, profile: Any, remote: bool) -> int | None:
    """The one thread count tune profiles and measures with: ``threads``, else the profile options' (``profile``),
    else this machine's physical cores; None on a remote target (the agent picks its own, for both)."""
    threads = threads or getattr(profile, "threads", None)
    if threads is None and not remote:
        from engine.measure.timing import physical_cores

        threads = physical_cores()
    return threads


def profile_fits(profile: Profile | None, graph: ModelGraph, threads: int | None, routines: Sequence[str],
                 feeds: Any = None) -> str:
    """'' when ``profile`` can stand for a new one on ``graph``; else why not. ``feeds``: the
    ``engine.optimize.timing_feeds.TimingFeeds`` tune times on; the profile must have been timed on the same."""
    if profile is None:
        return "no profile"
    if not profile.complete:
        return "the profile was cancelled before it finished"
    if profile.model_sha256 and graph.sha256 and profile.model_sha256 != graph.sha256:
        return "the profile is of another model"
    if profile.input_shapes and profile.input_shapes != _shapes(graph):
        return f"the profile was measured at {profile.input_shapes}"
    if threads is not None and profile.threads != threads:
        return f"the profile was measured with {profile.threads} threads"
    wanted = feeds.digest if feeds is not None and feeds.from_evaluator else ""
    if feeds is not None and profile.feeds_digest != wanted:
        return f"the profile was timed on {profile.feeds or 'generated inputs'}, tune times on {feeds.source}"
    timed = {r for lp in profile.layers for r in lp.routines}
    lacking = [r for r in routines if r != "fp32" and r not in timed and any(applicable(graph, n, r) for n in graph.layers)]
    if lacking:
        return f"the profile has no {lacking[0]} times"
    return ""


def sensitivity_fits(sens: Sensitivity | None, baseline: float) -> str:
    """'' when ``sens`` was measured with the evaluator (and calibration) that gives fp32 ``baseline``."""
    if sens is None:
        return "no sensitivity"
    if not math.isclose(sens.baseline, baseline, rel_tol=1e-6, abs_tol=1e-9):
        return f"its fp32 baseline {sens.baseline:.6g} differs from {baseline:.6g} (another evaluator or samples)"
    return ""


def missing_sweep(sens: Sensitivity, graph: ModelGraph, routines: Sequence[str],
                  base: SweepSettings) -> SweepSettings | None:
    """The sweep of the layers and routines ``sens`` lacks (None: nothing is missing)."""
    wanted = [r for r in routines if r != "fp32"]
    layers, need = [], set()
    for node in graph.layers:
        known = sens.layers.get(node.name)
        lacking = [r for r in wanted if applicable(graph, node, r) and (known is None or r not in known.drops)]
        if lacking:
            layers.append(node.name)
            need.update(lacking)
    if not layers:
        return None
    return replace(base, routines=tuple(r for r in wanted if r in need), layers=tuple(layers))


def merge(old: Sensitivity, new: Sensitivity) -> Sensitivity:
    """``old`` with what ``new`` measured added (``new`` wins where both have a value)."""
    layers = {name: replace(ls, drops=dict(ls.drops), sqnr_db=dict(ls.sqnr_db)) for name, ls in old.layers.items()}
    for name, ls in new.layers.items():
        into = layers.setdefault(name, LayerSensitivity(name))
        into.drops.update(ls.drops)
        into.sqnr_db.update(ls.sqnr_db)
        if "int8" in ls.drops:  # the int8 variant the new sweep chose goes with its drop
            into.method_drops, into.calibration = dict(ls.method_drops), ls.calibration
            into.cle, into.bias_correction, into.smoothquant = ls.cle, ls.bias_correction, ls.smoothquant
            into.symmetric = ls.symmetric
    return Sensitivity(old.baseline, old.metric_name or new.metric_name, layers, old.complete and new.complete,
                       {**old.whole_model, **new.whole_model})


def describe(what: str, why: Any) -> str:
    return f"{what}: reused" if not why else f"{what}: measured ({why})"

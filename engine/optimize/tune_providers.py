"""Tune across execution providers: which provider routines DPRS is offered, the provider tables built
before it, and what a mixed-provider route is timed as.

``tune --providers A,B`` builds each provider's routine tables with the same job as ``profile --providers``
(``engine.measure.provider_tables.with_providers_job``: every segment timed as a micro-model there, crossings
fitted on bytes, merged into the profile), so DPRS may place each layer on the provider where its
segment runs fastest. A route whose layers all stay on the CPU provider is one model, timed as one; a
route that mixes providers is timed as ``engine.measure.partition`` runs it: parts cut from the fp32
model at the provider borders, one session per part in turn (int8 parts calibrated on the timing input:
the kernels, not the scales, set the speed). Its metric is the exported variant's (the same QDQ model),
scored with the CPU provider: a provider's kernels may round differently, which this does not see.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import onnx

from engine.errors import SettingsError
from engine.ir.graph import ModelGraph
from engine.measure.partition import PartitionedModel, partition
from engine.measure.providers import CPU, routine_on
from engine.model.plan import Plan

__all__ = ["PROVIDER_BASES", "check_providers", "plan_routines", "provider_routines", "timed_form"]

logger = logging.getLogger(__name__)

#: The routines timed per provider (``engine.measure.provider_tables``): fp32 always, int8 when tune offers it.
PROVIDER_BASES = ("fp32", "int8")


def check_providers(providers: Sequence[str], structural: bool) -> None:
    """SettingsError (one line) for providers tune cannot offer: the CPU provider (its routines are the
    profile's own) and structural routines together with providers (a partitioned route cannot prune)."""
    if CPU in providers:
        raise SettingsError(f"providers: {CPU} is where the plain routines run already; name other providers")
    if providers and structural:
        raise SettingsError("providers: structural routines (--structural) cannot be combined with other "
                            "execution providers yet (a route split into parts runs precisions only)")


def provider_routines(routines: Sequence[str], providers: Sequence[str]) -> tuple[str, ...]:
    """``routines`` and, per provider, its fp32 and (when ``routines`` has int8) int8: ``fp32@OpenVINO`` ..."""
    extra = [routine_on(b, p) for p in providers for b in PROVIDER_BASES if b == "fp32" or b in routines]
    return (*routines, *extra)


def plan_routines(plan: Plan) -> dict[str, str]:
    """layer -> routine of a plan's non-fp32 layers, with its provider (``int8@OpenVINO``; plain on CPU)."""
    out = {}
    for name, s in plan.layers.items():
        routine = routine_on(s.precision or "fp32", s.provider or CPU)
        if routine != "fp32":
            out[name] = routine
    return out


def timed_form(graph: ModelGraph, plan: Plan, model: onnx.ModelProto, feeds: Mapping[str, Any],
               threads: int | None) -> onnx.ModelProto | PartitionedModel:
    """What to time for ``plan``: ``model`` itself when every layer runs on CPU, else the plan's route as
    parts on their providers (see the module docstring)."""
    routines = plan_routines(plan)
    if all(s.provider in (None, CPU) for s in plan.layers.values()):
        return model
    return partition(graph, routines, feeds, threads or 1)

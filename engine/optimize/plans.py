"""A route as a plan: every layer pinned to the routine DPRS chose, with the int8 variant the sweep measured best."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from engine.ir.graph import ModelGraph
from engine.measure.providers import CPU, split_routine
from engine.model.plan import LayerSettings, Plan
from engine.passes.layer_variants import SMOOTHQUANT_ALPHA, parse_variant, variant_name
from engine.evaluate.sensitivity import Sensitivity
from engine.evaluate.structural import is_structural, layer_settings

__all__ = ["route_plan", "sweep_calibration"]

logger = logging.getLogger(__name__)


def route_plan(graph: ModelGraph, routines: Mapping[str, str], ops: str = "fp32",
               calibration: Mapping[str, str] | None = None, data: bool = True) -> Plan:
    """A plan pinning every layer to its routine (fp32 where ``routines`` says nothing); ``calibration``:
    layer -> int8 variant (``engine.passes.layer_variants.variant_name``: a calibration method, with
    ``+cle``, ``+smoothquant``, ``+symmetric`` and ``+bias_correction`` when the sweep chose them), written for the layers
    that run int8 (SmoothQuant at ``SMOOTHQUANT_ALPHA``, the strength the sweep measured).
    A structural routine becomes its prune or rank entry (``data``: reconstruct, as the sweep measured it); a
    provider routine (``int8@OpenVINO``) its precision with the layer's ``provider``."""
    calibration = calibration or {}

    def settings(name: str) -> LayerSettings:
        routine, provider = split_routine(routines.get(name, "fp32"))
        where = None if provider == CPU else provider  # fp32@OpenVINO: fp32, on OpenVINO
        if is_structural(routine):
            return layer_settings(graph, name, routine, data)
        if routine != "int8" or name not in calibration:
            return LayerSettings(routine, provider=where)
        v = parse_variant(calibration[name])
        return LayerSettings(routine, calibration=None if v.method == "minmax" else v.method, cle=v.cle,
                             bias_correction=v.bias_correction, smoothquant=SMOOTHQUANT_ALPHA if v.smoothquant else None,
                             symmetric=v.symmetric, provider=where)

    return Plan(LayerSettings("fp32"), {n.name: settings(n.name) for n in graph.layers}, ops)


def sweep_calibration(sens: Sensitivity) -> dict[str, str]:
    """Layer -> the int8 variant the sweep measured best for its int8 routine (plain MinMax left out)."""
    chosen = {n: variant_name(ls.calibration or "minmax", ls.cle, ls.bias_correction, ls.smoothquant, ls.symmetric) for n, ls in sens.layers.items()}
    return {n: v for n, v in chosen.items() if v != "minmax"}

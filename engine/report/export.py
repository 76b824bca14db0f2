"""What a session leaves behind besides the report: the optimized ONNX, the plan JSON, a per-layer CSV.

``layer_rows`` is the per-layer table (routine, latency, drop per routine, MACs, params) that the
CSV and the report share. It reads the session's profile and sensitivity, which may be the typed
objects or, while those modules are absent, their JSON dicts. Tables are found by key:

- routine times: ``routine_ms`` / ``routine_times`` / ``times`` / ``routines`` as
  ``{layer: {routine: ms}}``, or ``layers`` entries with ``routines: {routine: ms}`` and ``ms``
  (``engine.measure.profiler.Profile``: a list of ``{"name", "op", "ms", "routines", ...}``);
- per-layer time: ``layer_ms`` / ``per_layer_ms`` as ``{layer: ms}``, or ``layers`` entries' ``ms``;
- drops: ``drops`` / ``drop`` as ``{layer: {routine: drop}}``, or ``layers`` entries' ``drops``.
``layers`` may be a dict keyed by layer name or a list of entries that carry a ``name``.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

from engine.errors import LayerLabError
from engine.model.session import Session
from engine.measure.providers import CPU, split_routine
from engine.report.provider_export import annotated
from engine.io.session_file import to_data
from engine.io.files import atomic_write_text

__all__ = ["LayerRow", "layer_rows", "routine_label", "routine_names", "layer_csv", "write_layer_csv", "write_plan", "export_model"]

logger = logging.getLogger(__name__)

_TIME_KEYS = ("routine_ms", "routine_times", "times", "routines")
_MS_KEYS = ("layer_ms", "per_layer_ms")
_DROP_KEYS = ("drops", "drop")


@dataclass(frozen=True)
class LayerRow:
    """One layer of the report table; None where a table has no number."""

    name: str
    op: str
    routine: str
    ms: float | None
    fp32_ms: float | None
    drop: float | None
    drops: dict[str, float] = field(default_factory=dict)
    macs: int | None = None
    params: int = 0
    precision: str = "fp32"  # the plan's setting ("auto": DPRS chooses the routine)
    prune: str = ""  # "30% structured" when the plan prunes the layer
    rank: int | None = None  # the low-rank rank when the plan factors the layer
    calibration: str | None = None  # an int8 layer's calibration method (+ CLE, bias correction) when the plan names one
    provider: str = ""  # the execution provider, when the route or plan puts the layer on one other than CPU


def routine_label(row: LayerRow) -> str:
    """The routine as the report prints it: ``int8 · percentile99.99`` when the plan names a calibration."""
    return f"{row.routine} · {row.calibration}" if row.calibration and row.routine == "int8" else row.routine


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _entries(data: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """``data["layers"]`` as {name: entry}, from a dict keyed by name or a list of named entries."""
    layers = data.get("layers")
    if isinstance(layers, Mapping):
        return {str(k): v for k, v in layers.items() if isinstance(v, Mapping)}
    if isinstance(layers, list):
        return {str(v["name"]): v for v in layers if isinstance(v, Mapping) and "name" in v}
    return {}


def _nested(data: Any, keys: tuple[str, ...], entry_key: str) -> dict[str, dict[str, float]]:
    """``{layer: {routine: number}}`` under the first matching key (or inside ``layers`` entries)."""
    if not isinstance(data, Mapping):
        return {}
    for key in keys:
        table = data.get(key)
        if isinstance(table, Mapping) and table and all(isinstance(v, Mapping) for v in table.values()):
            out = {str(k): {str(r): n for r, x in v.items() if (n := _number(x)) is not None} for k, v in table.items()}
            if any(out.values()):
                return out
    return {
        k: {str(r): n for r, x in v[entry_key].items() if (n := _number(x)) is not None}
        for k, v in _entries(data).items()
        if isinstance(v.get(entry_key), Mapping)
    }


def _flat(data: Any, keys: tuple[str, ...]) -> dict[str, float]:
    if not isinstance(data, Mapping):
        return {}
    for key in keys:
        table = data.get(key)
        if isinstance(table, Mapping):
            return {str(k): n for k, v in table.items() if (n := _number(v)) is not None}
    return {k: n for k, v in _entries(data).items() if (n := _number(v.get("ms"))) is not None}


def _plan_calibration(plan: Any, name: str) -> str | None:
    """The int8 method as the report prints it: ``percentile99.9``, ``minmax + CLE + bias correction``,
    ``minmax + SmoothQuant α=0.5``..."""
    if plan is None:
        return None
    if hasattr(plan, "settings_for"):
        s = plan.settings_for(name)
        method, cle, corrected, alpha, symmetric = s.calibration, s.cle, s.bias_correction, s.smoothquant, s.symmetric
    else:
        entry = ((to_data(plan) or {}).get("layers") or {}).get(name) or {}
        method = entry.get("calibration") if isinstance(entry.get("calibration"), str) else None
        cle, corrected = entry.get("cle") is True, entry.get("bias_correction") is True
        alpha = entry.get("smoothquant") if isinstance(entry.get("smoothquant"), (int, float)) else None
        symmetric = entry.get("symmetric") is True
    extras = (["CLE"] * bool(cle) + ([f"SmoothQuant α={alpha:g}"] if alpha is not None else [])
              + ["symmetric activations"] * bool(symmetric) + ["bias correction"] * bool(corrected))
    if not extras:
        return method
    return " + ".join([method or "minmax", *extras])


def _plan_provider(plan: Any, name: str) -> str:
    """The provider the plan puts layer ``name`` on ("" for none), from the typed plan or its JSON."""
    if plan is None:
        return ""
    if hasattr(plan, "settings_for"):
        return plan.settings_for(name).provider or ""
    entry = ((to_data(plan) or {}).get("layers") or {}).get(name) or {}
    return entry.get("provider") if isinstance(entry.get("provider"), str) else ""


def _plan_precision(plan: Any, name: str) -> str | None:
    return _plan_settings(plan, name)[0]


def _plan_settings(plan: Any, name: str) -> tuple[str | None, str, int | None]:
    """(precision, prune as "30% structured" or "", rank) of layer ``name`` in ``plan`` (typed or its JSON)."""
    if plan is None:
        return None, "", None
    if hasattr(plan, "settings_for"):
        s = plan.settings_for(name)
        prune = f"{100 * s.prune.ratio:.0f}% {s.prune.mode}" if s.prune is not None and s.prune.ratio > 0 else ""
        return s.precision, prune, s.rank
    data = to_data(plan) or {}
    entry = (data.get("layers") or {}).get(name) or {}
    pr = entry.get("prune") or {}
    prune = f"{100 * float(pr['ratio']):.0f}% {pr.get('mode', 'unstructured')}" if pr.get("ratio") else ""
    return entry.get("precision") or (data.get("default") or {}).get("precision"), prune, entry.get("rank")


def layer_rows(session: Session) -> list[LayerRow]:
    """The per-layer table of ``session`` (its graph's layers, in topological order)."""
    if session.graph is None:
        raise LayerLabError("the session has no model graph loaded")
    profile, sensitivity = to_data(session.profile), to_data(session.sensitivity)
    times = _nested(profile, _TIME_KEYS, "routines")
    layer_ms = _flat(profile, _MS_KEYS)
    drops = _nested(sensitivity, _DROP_KEYS, "drops")
    routes = to_data(session.route) or {}
    chosen = routes.get("routines") or {} if isinstance(routes, Mapping) else {}
    rows = []
    for node in session.graph.layers:
        precision, prune, rank = _plan_settings(session.plan, node.name)
        routine = chosen.get(node.name) or precision or "fp32"
        base, provider = split_routine(routine)
        provider = _plan_provider(session.plan, node.name) or ("" if provider == CPU else provider)
        own_times = times.get(node.name, {})
        ms = own_times.get(routine, layer_ms.get(node.name) if routine == "fp32" or not own_times else None)
        own_drops = drops.get(node.name, {})
        rows.append(
            LayerRow(
                name=node.name,
                op=node.op_type,
                routine=routine,
                ms=ms,
                fp32_ms=own_times.get("fp32", layer_ms.get(node.name)),
                drop=own_drops.get(base, 0.0 if base == "fp32" else None),  # int8@OpenVINO: int8's drop
                drops=dict(own_drops),
                macs=node.macs,
                params=node.params,
                precision=precision or "fp32",
                prune=prune,
                rank=rank,
                calibration=_plan_calibration(session.plan, node.name),
                provider=provider,
            )
        )
    return _mark_group_members(session.graph, rows)


def _mark_group_members(graph: Any, rows: list[LayerRow]) -> list[LayerRow]:
    """A structured prune shrinks its whole group: the other layers of the group say so ("50% structured,
    with conv2"), since the plan names only the layer that carries the choice."""
    from engine.passes.prune import prune_group

    index = {row.name: i for i, row in enumerate(rows)}
    out = list(rows)
    for row in rows:
        if not row.prune.endswith(" structured"):
            continue
        try:
            members = prune_group(graph, row.name).layers
        except (LayerLabError, ValueError, KeyError):
            continue
        for other in members:
            if other in index and other != row.name and not out[index[other]].prune:
                out[index[other]] = replace(out[index[other]], prune=f"{row.prune}, with {row.name}")
    return out


def routine_names(rows: list[LayerRow]) -> list[str]:
    """Every routine with a drop in the table, in first-seen order."""
    return list(dict.fromkeys(r for row in rows for r in row.drops))


def _cell(value: float | int | None) -> str:
    return "" if value is None else f"{value:.6g}" if isinstance(value, float) else str(value)


def layer_csv(session: Session) -> str:
    """CSV text: name, op, precision, prune, rank, routine, ms, drop_<routine>..., macs, params (one row per layer)."""
    rows = layer_rows(session)
    routines = routine_names(rows)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["name", "op", "precision", "prune", "rank", "routine", "ms", *[f"drop_{r}" for r in routines],
                     "macs", "params"])
    for row in rows:
        drops = [_cell(row.drops.get(r)) for r in routines]
        writer.writerow([row.name, row.op, row.precision, row.prune, _cell(row.rank), routine_label(row), _cell(row.ms),
                         *drops, _cell(row.macs), row.params])
    return buffer.getvalue()


def write_layer_csv(session: Session, path: str | os.PathLike[str]) -> Path:
    """Write ``layer_csv`` atomically."""
    path = Path(path)
    atomic_write_text(path, layer_csv(session))
    return path


def write_plan(session: Session, path: str | os.PathLike[str]) -> Path:
    """Write the session's plan as a plan file (``layerlab apply`` reads it)."""
    import json

    if session.plan is None:
        raise LayerLabError(f"{path}: the session has no plan to export")
    path = Path(path)
    atomic_write_text(path, json.dumps(to_data(session.plan), indent=2) + "\n")
    return path


def _resolve_auto(plan: Any, session: Session) -> Any:
    """Replace ``auto`` precisions by the route's routine when it names a precision."""
    from dataclasses import replace

    from engine.model.plan import PRECISIONS

    routes = to_data(session.route) or {}
    chosen = routes.get("routines") or {} if isinstance(routes, Mapping) else {}
    layers = dict(plan.layers)
    for node in session.graph.layers:
        settings = plan.settings_for(node.name)
        routine = chosen.get(node.name)
        if settings.precision == "auto" and routine in PRECISIONS and routine != "auto":
            layers[node.name] = replace(settings, precision=routine)
    return replace(plan, layers=layers)


def export_model(session: Session, path: str | os.PathLike[str], evaluator: Any = None) -> Path:
    """The optimized ONNX: the session's plan built on its graph as Measure and Tune build it
    (``engine.evaluate.calibration.build_variant``: int8 calibrated by ``evaluator``, an Evaluator, else
    on random inputs with a warning), so the bytes are those that were measured.

    A plan with ``auto`` layers takes the routine DPRS chose for them from the session's route.
    """
    import onnx

    if session.graph is None or session.plan is None:
        raise LayerLabError(f"{path}: the session needs a model and a plan to export the optimized model")
    from engine.model.plan import Plan
    from engine.evaluate.calibration import build_variant, calibration_for

    plan = session.plan if isinstance(session.plan, Plan) else Plan.from_dict(to_data(session.plan), "session plan")
    plan = _resolve_auto(plan, session)
    model = build_variant(session.graph, plan, calibration_for(session.graph, evaluator)).model
    model, _ = annotated(model, session.graph, plan)  # a mixed-provider plan: layer_ann on every node
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        onnx.save_model(model, str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path

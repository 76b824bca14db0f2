"""What each colour mode of the graph view shows: one value (or category) per node, read from the session.

No Qt and no arithmetic beyond picking and summing the engine's numbers; the view maps values to
colours with a pyqtgraph colour map. Results the engine has not produced yet give an empty mapping
and a ``missing`` sentence the legend shows ("not profiled yet").

Profile, sensitivity and route are read by attribute (``profile.layers[name].ms``,
``sensitivity.layers[name].drops``, ``route.routines``) so a view can be tested with hand-made values.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

__all__ = ["MODES", "ColourValues", "default_mode", "layers_by_name", "node_values", "sensitivity_drop", "structural_drop"]

logger = logging.getLogger(__name__)

#: mode id -> label for menus and the legend.
MODES: dict[str, str] = {
    "kind": "Layer / op",
    "sensitivity": "Sensitivity (accuracy drop)",
    "structural": "Structural drop (prune / rank)",
    "latency": "Latency",
    "routine": "Routine chosen",
    "macs": "MACs",
}


@dataclass
class ColourValues:
    """Per-node values for one mode: numbers (``values``) or names (``categories``), and tooltip lines."""

    mode: str
    values: dict[str, float] = field(default_factory=dict)
    categories: dict[str, str] = field(default_factory=dict)
    tooltips: dict[str, str] = field(default_factory=dict)
    unit: str = ""
    log_scale: bool = False
    missing: str = ""  # why nothing is shown, when values and categories are both empty
    unmeasured: list[str] = field(default_factory=list)  # layers without a value when others have one (a cancelled run)

    @property
    def numeric(self) -> bool:
        return self.mode in ("sensitivity", "structural", "latency", "macs")


def sensitivity_drop(layer_sensitivity: Any) -> tuple[str, float] | None:
    """The drop the view colours by: int8 (static) when measured, else the worst routine's drop."""
    drops = {k: v for k, v in (getattr(layer_sensitivity, "drops", {}) or {}).items() if not _structural(k)}
    if not drops:
        return None
    for key in ("int8", "int8_static"):
        if key in drops:
            return key, float(drops[key])
    key = max(drops, key=lambda k: drops[k])
    return key, float(drops[key])


def _structural(routine: str) -> bool:
    return routine.startswith(("prune:", "rank:"))  # the engine's structural routine names


def structural_drop(layer_sensitivity: Any) -> tuple[str, float] | None:
    """The structural drop the view colours by: prune:0.5 when measured (a group's root), else the
    largest rank's (the gentlest factorisation), else the worst structural drop."""
    drops = {k: float(v) for k, v in (getattr(layer_sensitivity, "drops", {}) or {}).items() if _structural(k)}
    if not drops:
        return None
    if "prune:0.5" in drops:
        return "prune:0.5", drops["prune:0.5"]
    ranks = sorted((k for k in drops if k.startswith("rank:")), key=lambda k: float(k.split(":")[1]))
    key = ranks[-1] if ranks else max(drops, key=lambda k: drops[k])
    return key, drops[key]


def default_mode(session: Any) -> str:
    """The mode a window starts in: the drop once sensitivity exists, else latency once profiled, else layer/op."""
    if getattr(session.sensitivity, "layers", None):
        return "sensitivity"
    if layers_by_name(getattr(session.profile, "layers", None) if session.profile is not None else None):
        return "latency"
    return "kind"


def node_values(session: Any, mode: str) -> ColourValues:
    """The values of ``mode`` for every node of the session's graph that has one."""
    graph = session.graph
    out = ColourValues(mode)
    if graph is None:
        out.missing = "no model"
        return out
    if mode == "kind":
        for node in graph.nodes:
            out.categories[node.name] = "layer" if node.tunable else "op"
        return out
    if mode == "macs":
        out.unit, out.log_scale = "MACs", True
        for node in graph.nodes:
            if node.macs:
                out.values[node.name] = float(node.macs)
                out.tooltips[node.name] = f"MACs: {node.macs:,}"
        if not out.values:
            out.missing = "MACs unknown (give concrete input shapes)"
        return out
    if mode == "latency":
        return _unmeasured(graph, _latency(session.profile, out), session.profile, "profile")
    if mode == "sensitivity":
        return _unmeasured(graph, _sensitivity(session.sensitivity, out), session.sensitivity, "sweep")
    if mode == "structural":
        return _sensitivity(session.sensitivity, out, structural_drop,
                            "no structural drops yet (sweep with structural variants)")
    if mode == "routine":
        route = session.route
        routines = dict(getattr(route, "routines", {}) or {}) if route is not None else {}
        if not routines:
            out.missing = "no route yet (run tune)"
        for name, routine in routines.items():
            out.categories[name] = str(routine)
            out.tooltips[name] = f"routine: {routine}"
        return out
    raise ValueError(f"unknown colour mode {mode!r}")


def _unmeasured(graph: Any, out: ColourValues, table: Any, run: str) -> ColourValues:
    """Name the layers a partial table lacks (the view hatches them, the legend counts them)."""
    if out.values:
        out.unmeasured = [n.name for n in getattr(graph, "layers", ()) if n.name not in out.values]  # hand-made graphs may lack layers
        why = f"the {run} was cancelled before it" if getattr(table, "complete", True) is False else "no value"
        for name in out.unmeasured:
            out.tooltips[name] = f"not measured ({why})"
    return out


def _latency(profile: Any, out: ColourValues) -> ColourValues:
    out.unit = "ms"
    layers = layers_by_name(getattr(profile, "layers", None) if profile is not None else None)
    if not layers:
        out.missing = "not profiled yet"
        return out
    times = {name: float(lp.ms) for name, lp in layers.items() if getattr(lp, "ms", None) is not None}
    total = sum(times.values())
    for name, ms in times.items():
        out.values[name] = ms
        share = f" ({100 * ms / total:.1f}% of total)" if total > 0 else ""
        lines = [f"latency: {ms:.3f} ms{share}"]
        for routine, rms in sorted((getattr(layers[name], "routines", {}) or {}).items()):
            lines.append(f"  {routine}: {float(rms):.3f} ms")
        unsupported = getattr(layers[name], "unsupported", None)
        if unsupported:
            lines.append(f"  unsupported: {', '.join(map(str, unsupported))}")
        out.tooltips[name] = "\n".join(lines)
    return out


def _sensitivity(sensitivity: Any, out: ColourValues, pick: Any = sensitivity_drop,
                 none_picked: str = "") -> ColourValues:
    out.unit = "drop"
    layers = dict(getattr(sensitivity, "layers", {}) or {}) if sensitivity is not None else {}
    if not layers:
        out.missing = "no sensitivity yet (needs an evaluator)"
        return out
    for name, ls in layers.items():
        picked = pick(ls)
        if picked is None:
            continue
        out.values[name] = picked[1]
        lines = [f"drop ({picked[0]}): {picked[1]:.4f}"]
        for routine, d in sorted((getattr(ls, "drops", {}) or {}).items()):
            lines.append(f"  {routine}: {float(d):.4f}")
        sqnr = getattr(ls, "sqnr_db", None)
        if isinstance(sqnr, dict):  # the engine keeps one SQNR per routine
            lines += [f"  SQNR {r}: {float(v):.1f} dB" for r, v in sorted(sqnr.items())]
        elif sqnr is not None:
            lines.append(f"  SQNR: {float(sqnr):.1f} dB")
        out.tooltips[name] = "\n".join(lines)
    if not out.values and none_picked:
        out.missing = none_picked
    return out


def layers_by_name(layers: Any) -> dict[str, Any]:
    """Profile layers by node name: the engine keeps a list of LayerProfile, hand-made tables may use a dict."""
    if not layers:
        return {}
    if isinstance(layers, dict):
        return dict(layers)
    return {lp.name: lp for lp in layers}


"""How the graph view's boxes look: fill by colour mode, latency bars, plan badges, the selection's relations.

Functions of a ``gui.qt_graph_view.QtGraphView`` (its ``items``, ``session`` and ``colour_mode``), kept
apart from building and navigation. They touch only what changed on each box (``NodeItem`` repaints
only when its look does), and map values to colours with a pyqtgraph colour map; the numbers come
from ``gui.colour_modes``.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import pyqtgraph as pg
from PySide6.QtGui import QColor

from gui.colour_modes import ColourValues, default_mode, node_values
from gui.layer_options import prune_group

__all__ = ["recolour", "update_badges", "mark_related", "CATEGORY_COLOURS", "COLORMAP"]

logger = logging.getLogger(__name__)

COLORMAP = "viridis"
#: categorical colours (routines, kinds), tab10-like.
CATEGORY_COLOURS = ["#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#eeca3b", "#b279a2", "#ff9da6",
                    "#9d755d", "#bab0ac"]
_KIND_COLOURS = {"layer": QColor("#a9c6ea"), "op": QColor("#eeeeee")}


def recolour(view: Any) -> None:
    """Colour every node by the current mode, draw the latency bars and tell the legend."""
    if not view.mode_chosen:
        view.colour_mode = default_mode(view.session)
    values = node_values(view.session, view.colour_mode) if view.session.graph is not None else ColourValues(
        view.colour_mode, missing="no model")
    lo = hi = None
    fills: dict[str, QColor] = {}
    categories: dict[str, QColor] = {}
    if values.values:
        data = {k: (math.log10(v) if values.log_scale else v) for k, v in values.values.items() if v > 0 or not values.log_scale}
        lo, hi = min(data.values(), default=0.0), max(data.values(), default=1.0)
        span = (hi - lo) or 1.0
        cmap = pg.colormap.get(COLORMAP)
        names = list(data)
        colours = cmap.map([(data[n] - lo) / span for n in names], mode="qcolor")
        fills = dict(zip(names, colours))
        shown = [n for n in names if n in view.items]
        view.hottest = max(shown, key=lambda n: data[n]) if shown else None
    elif values.categories:
        palette = {}
        for cat in sorted(set(values.categories.values())):
            if view.colour_mode == "kind":
                palette[cat] = _KIND_COLOURS.get(cat, QColor("#e9e9e9"))
            else:
                palette[cat] = QColor(CATEGORY_COLOURS[len(palette) % len(CATEGORY_COLOURS)])
        fills = {n: palette[c] for n, c in values.categories.items()}
        categories = palette
    latency = node_values(view.session, "latency") if view.colour_mode != "latency" else values
    slowest = max((latency.values.get(n, 0.0) for n, item in view.items.items() if item.tunable), default=0.0)
    unmeasured = set(values.unmeasured)
    for name, item in view.items.items():
        extra = values.tooltips.get(name, "")
        ms = latency.values.get(name) if item.tunable else None
        if ms is not None and view.colour_mode != "latency":
            extra = f"{extra}\n{latency.tooltips.get(name, '')}".strip()
        item.set_look(fills.get(name), extra, item.badge)
        item.set_latency((ms, ms / slowest) if ms is not None and slowest > 0 else None)
        item.set_unmeasured(name in unmeasured)
    view.coloured.emit({"values": values, "lo": lo, "hi": hi, "categories": categories,
                        "latency": slowest if latency.values else None})


def update_badges(view: Any) -> None:
    """Write each layer's plan change (precision, prune %, rank) in its corner."""
    plan = view.session.plan
    for name, item in view.items.items():
        badge = ""
        if plan is not None and item.tunable and name in plan.layers:
            s = plan.settings_for(name)
            parts = [s.precision] if s.precision not in (None, "fp32") else []
            if s.prune is not None and s.prune.ratio > 0:
                parts.append(f"p{round(100 * s.prune.ratio)}%")
            if s.rank is not None:
                parts.append(f"r{s.rank}")
            badge = " ".join(parts)
        if badge != item.badge:
            item.badge = badge
            item.update()


def mark_related(view: Any, names: Any) -> None:
    """Outline the selected layers' prune group and neighbouring layers (those tagged with their routine)."""
    graph = view.session.graph
    group: set[str] = set()
    nbrs: set[str] = set()
    for name in names:
        if name in view.layer_nbrs:
            group.update(prune_group(graph, name))
            nbrs.update(view.layer_nbrs[name])
    selected = set(names)
    routines = dict(getattr(view.session.route, "routines", {}) or {})
    plan = view.session.plan
    for name, item in view.items.items():
        if name in selected or not item.tunable:
            item.set_mark("")
        elif name in group:
            item.set_mark("group", "group")
        elif name in nbrs:
            routine = routines.get(name) or (plan.settings_for(name).precision if plan is not None else "fp32")
            item.set_mark("neighbour", f"[{routine}]")
        else:
            item.set_mark("")

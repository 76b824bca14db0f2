"""Charts: per-layer latency (fp32 baseline beside the current route) and a Pareto plot of every trial.

Both read the session only. Clicking a point of the Pareto plot calls ``on_restore(trial)``; the
window turns that into an undoable plan edit. The numbers come from the engine; this module only
picks which routine's time to draw and where.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import pyqtgraph as pg
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QHBoxLayout, QWidget

from gui.colour_modes import layers_by_name
from gui.session_links import connect_view

__all__ = ["QtCharts", "layer_bars", "trial_points"]

logger = logging.getLogger(__name__)


def layer_bars(session: Any) -> tuple[list[str], list[float], list[float]]:
    """Layer names, fp32 ms and ms under the session's route (the profiled time of its routine)."""
    graph = session.graph
    layers = layers_by_name(getattr(session.profile, "layers", None))
    if graph is None or not layers:
        return [], [], []
    routines = dict(getattr(session.route, "routines", {}) or {})
    names, base, current = [], [], []
    for node in graph.layers:
        lp = layers.get(node.name)
        if lp is None:
            continue
        times = dict(getattr(lp, "routines", {}) or {})
        names.append(node.name)
        base.append(float(lp.ms))
        current.append(float(times.get(routines.get(node.name, "fp32"), lp.ms)))
    return names, base, current


def trial_points(session: Any) -> list[tuple[float, float, int]]:
    """(latency ms, metric, trial index) of every trial that was measured with a metric."""
    points = []
    for i, trial in enumerate(session.trials):
        m = trial.measured
        if m.ms is not None and m.metric is not None:
            points.append((float(m.ms), float(m.metric), i))
    return points


def _short(name: str) -> str:
    parts = [p for p in name.split("/") if p]
    return parts[-2] if len(parts) >= 2 else (parts[-1] if parts else name)


class QtCharts(QWidget):
    """The two charts side by side; ``on_restore(trial)`` is called when a Pareto point is clicked."""

    def __init__(self, session: Any, on_restore: Callable[[Any], None], parent: Any = None) -> None:
        super().__init__(parent)
        self.session = session
        self.on_restore = on_restore
        self.latency = pg.PlotWidget(background="w")
        self.latency.setTitle("per-layer latency: fp32 (grey) vs current route (blue)", size="9pt")
        self.latency.setLabel("left", "ms")
        self.latency.getAxis("left").enableAutoSIPrefix(False)  # "ms (x0.001)" reads badly
        self.latency.setMouseEnabled(False, False)
        self.latency.hideButtons()
        self.pareto = pg.PlotWidget(background="w")
        self.pareto.setTitle("trials: latency vs metric (click to restore)", size="9pt")
        self.pareto.setLabel("bottom", "latency (ms)")
        self.pareto.getAxis("bottom").enableAutoSIPrefix(False)
        self.pareto.setLabel("left", "metric")
        self.pareto.hideButtons()
        self.scatter = pg.ScatterPlotItem(size=10, hoverable=True)
        self.scatter.sigClicked.connect(self._clicked)
        self.current_marker = pg.ScatterPlotItem(size=18, symbol="star", brush=pg.mkBrush("#e45756"),
                                                 pen=pg.mkPen("k"))
        self.baseline_marker = pg.ScatterPlotItem(size=12, symbol="s", brush=pg.mkBrush("#bbbbbb"), pen=pg.mkPen("k"))
        for item in (self.scatter, self.baseline_marker, self.current_marker):
            self.pareto.addItem(item)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.latency, 3)
        layout.addWidget(self.pareto, 2)
        # a burst of changes (a session opened, a tune landing) redraws once, on the next event-loop turn
        self._later = QTimer(self)
        self._later.setSingleShot(True)
        self._later.setInterval(0)
        self._later.timeout.connect(self.refresh)
        self._links = connect_view(session.events, {name: lambda _: self._later.start() for name in
                                                     ("model", "profile", "route", "baseline", "current", "trials")},
                                   "charts")
        self.refresh()

    def close_view(self) -> None:
        self._later.stop()
        self._links.disconnect()

    def refresh(self) -> None:
        self._draw_latency()
        self._draw_pareto()

    def _draw_latency(self) -> None:
        plot = self.latency
        plot.clear()
        names, base, current = layer_bars(self.session)
        if not names:
            plot.getAxis("bottom").setTicks([[]])
            return
        xs = list(range(len(names)))
        plot.addItem(pg.BarGraphItem(x=[x - 0.2 for x in xs], height=base, width=0.4, brush="#bbbbbb"))
        plot.addItem(pg.BarGraphItem(x=[x + 0.2 for x in xs], height=current, width=0.4, brush="#4c78a8"))
        step = max(1, -(-len(names) // 5))  # at most 5 labels: layer names overlap beyond that in the dock
        plot.getAxis("bottom").setTicks([[(x, _short(n)) for x, n in zip(xs, names)][::step]])

    def _draw_pareto(self) -> None:
        points = trial_points(self.session)
        self.scatter.setData([{"pos": (x, y), "data": i, "brush": pg.mkBrush("#4c78a8")} for x, y, i in points])
        base = self.session.baseline
        if base is not None and base.ms is not None and base.metric is not None:
            self.baseline_marker.setData([base.ms], [base.metric])
        else:
            self.baseline_marker.setData([], [])
        current = self.session.current
        if current is not None and current.ms is not None and current.metric is not None:
            self.current_marker.setData([current.ms], [current.metric])
        else:
            self.current_marker.setData([], [])

    def _clicked(self, _item: Any, points: Any, *_: Any) -> None:
        if len(points) == 0:
            return
        index = points[0].data()
        if index is not None and 0 <= index < len(self.session.trials):
            self.restore(index)

    def restore(self, index: int) -> None:
        """Restore trial ``index`` (what a click on its point does)."""
        self.on_restore(self.session.trials[index])

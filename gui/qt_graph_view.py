"""The graph view: every node of the session's model as a box, laid out by ``engine.layout.layered``, coloured by a mode.

Repaints from the session (model, plan, profile, sensitivity, route, selection); the selection made
here goes back through ``session.set_selection``. Zoom with the wheel or Ctrl+=/Ctrl+-, pan by
dragging the background, F fits, Ctrl+F searches (Enter: next match), arrow keys walk the edges.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QKeySequence, QPainter, QShortcut
from PySide6.QtWidgets import QFrame, QGraphicsScene, QGraphicsView, QLineEdit

from engine.layout.layered import layout_graph
from gui.colour_modes import MODES, ColourValues, node_values
from gui.graph_items import LAYER_SIZE, OP_SIZE, NodeItem, edge_paths

__all__ = ["QtGraphView", "CATEGORY_COLOURS", "COLORMAP"]

logger = logging.getLogger(__name__)

COLORMAP = "viridis"
#: categorical colours (routines, kinds), tab10-like.
CATEGORY_COLOURS = ["#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#eeca3b", "#b279a2", "#ff9da6",
                    "#9d755d", "#bab0ac"]
_KIND_COLOURS = {"layer": QColor("#a9c6ea"), "op": QColor("#eeeeee")}
_ZOOM_STEP = 1.25


class QtGraphView(QGraphicsView):
    """QGraphicsView of ``session.graph``; ``coloured`` is emitted with the ColourValues and colour ranges."""

    coloured = Signal(object)  # a dict: values (ColourValues), lo, hi, categories {name: QColor}

    def __init__(self, session: Any, parent: Any = None) -> None:
        super().__init__(parent)
        self.session = session
        self.items: dict[str, NodeItem] = {}
        self.colour_mode = "kind"
        self._syncing = False
        self._succs: dict[str, list[str]] = {}
        self._preds: dict[str, list[str]] = {}
        self._ranks: dict[str, int] = {}
        self._matches: list[str] = []
        self._match_index = 0
        self.setScene(QGraphicsScene(self))
        self.setRenderHints(QPainter.RenderHint.Antialiasing | QPainter.RenderHint.TextAntialiasing)
        self.setViewportUpdateMode(QGraphicsView.ViewportUpdateMode.SmartViewportUpdate)
        self.setDragMode(QGraphicsView.DragMode.ScrollHandDrag)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setBackgroundBrush(QColor("#fbfbfb"))
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.scene().selectionChanged.connect(self._on_scene_selection)
        self._search = QLineEdit(self)
        self._search.setPlaceholderText("find node or op (Enter: next, Esc: close)")
        self._search.setClearButtonEnabled(True)
        self._search.resize(320, 28)
        self._search.hide()
        self._search.textChanged.connect(self.search)
        self._search.returnPressed.connect(self.next_match)
        hide = QShortcut(QKeySequence("Escape"), self._search)
        hide.setContext(Qt.ShortcutContext.WidgetShortcut)
        hide.activated.connect(self._hide_search)
        for keys, slot in (
            ("Ctrl+=", lambda: self.zoom(_ZOOM_STEP)),
            ("Ctrl++", lambda: self.zoom(_ZOOM_STEP)),
            ("Ctrl+-", lambda: self.zoom(1 / _ZOOM_STEP)),
            ("Ctrl+F", self.show_search),
        ):
            shortcut = QShortcut(QKeySequence(keys), self)
            shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            shortcut.activated.connect(slot)
        self._callbacks = {
            "model": lambda _: self.rebuild(),
            "plan": lambda _: self._update_badges(),
            "profile": lambda _: self.recolour(),
            "sensitivity": lambda _: self.recolour(),
            "route": lambda _: self.recolour(),
            "selection": self._on_session_selection,
        }
        for name, callback in self._callbacks.items():
            getattr(session.events, name).connect(callback)
        self.rebuild()

    def close_view(self) -> None:
        """Stop listening to the session (the window calls this when it closes)."""
        for name, callback in self._callbacks.items():
            getattr(self.session.events, name).disconnect(callback)

    # --- building -------------------------------------------------------------------------------

    def rebuild(self) -> None:
        """Lay out and draw the session's graph from scratch."""
        scene = self.scene()
        self._syncing = True
        scene.clear()
        self._syncing = False
        self.items.clear()
        graph = self.session.graph
        if graph is None:
            self.recolour()
            return
        names = [n.name for n in graph.nodes]
        known = set(names)
        pairs = [(e.src, e.dst) for e in graph.edges if e.src in known and e.dst in known]
        sizes = {n.name: LAYER_SIZE if n.tunable else OP_SIZE for n in graph.nodes}
        layout = layout_graph(names, pairs, sizes, node_gap=28.0, rank_gap=36.0)
        self._ranks = dict(layout.layers)
        self._succs = {n: [] for n in names}
        self._preds = {n: [] for n in names}
        for src, dst in dict.fromkeys(pairs):
            self._succs[src].append(dst)
            self._preds[dst].append(src)
        lines, heads = edge_paths(layout.edges.values())
        scene.addItem(lines)
        scene.addItem(heads)
        for node in graph.nodes:
            item = NodeItem(node, layout.positions[node.name], layout.sizes[node.name])
            scene.addItem(item)
            self.items[node.name] = item
        margin = 60.0
        scene.setSceneRect(QRectF(-margin, -margin, layout.width + 2 * margin, layout.height + 2 * margin))
        logger.info("graph view: %d nodes, %d edges", len(self.items), len(pairs))
        self._update_badges()
        self.recolour()
        self._on_session_selection(self.session.selection)
        QTimer.singleShot(0, self.fit_width)

    # --- colour -------------------------------------------------------------------------------

    def set_colour_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown colour mode {mode!r}")
        self.colour_mode = mode
        self.recolour()

    def recolour(self) -> None:
        """Colour every node by the current mode and tell the legend."""
        values = node_values(self.session, self.colour_mode) if self.session.graph is not None else ColourValues(
            self.colour_mode, missing="no model")
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
        elif values.categories:
            palette = {}
            for cat in sorted(set(values.categories.values())):
                if self.colour_mode == "kind":
                    palette[cat] = _KIND_COLOURS.get(cat, QColor("#e9e9e9"))
                else:
                    palette[cat] = QColor(CATEGORY_COLOURS[len(palette) % len(CATEGORY_COLOURS)])
            fills = {n: palette[c] for n, c in values.categories.items()}
            categories = palette
        for name, item in self.items.items():
            item.set_look(fills.get(name), values.tooltips.get(name, ""), item.badge)
        self.coloured.emit({"values": values, "lo": lo, "hi": hi, "categories": categories})

    def _update_badges(self) -> None:
        plan = self.session.plan
        for name, item in self.items.items():
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

    # --- navigation ---------------------------------------------------------------------------

    def zoom(self, factor: float) -> None:
        scale = self.transform().m11()
        factor = min(max(factor, 0.02 / scale), 4.0 / scale)  # keep between 2% and 400%
        self.scale(factor, factor)

    def fit(self) -> None:
        """Show the whole graph."""
        if self.items:
            self.fitInView(self.scene().itemsBoundingRect().adjusted(-20, -20, 20, 20),
                           Qt.AspectRatioMode.KeepAspectRatio)

    def fit_width(self) -> None:
        """The start view: readable boxes (scale 0.6 to 1), the top of the graph, centred on its first node."""
        if not self.items:
            return
        rect = self.scene().itemsBoundingRect().adjusted(-20, -20, 20, 20)
        self.resetTransform()
        scale = min(max(self.viewport().width() / max(rect.width(), 1.0), 0.6), 1.0)
        self.scale(scale, scale)
        first = next(iter(self.items.values())).pos().x()
        x = rect.center().x() if rect.width() * scale <= self.viewport().width() else first
        self.centerOn(x, rect.top() + self.viewport().height() / (2 * scale))

    def wheelEvent(self, event: Any) -> None:  # noqa: N802 - Qt override
        steps = event.angleDelta().y() / 120.0
        if steps:
            self.zoom(1.15 ** steps)
        event.accept()

    def keyPressEvent(self, event: Any) -> None:  # noqa: N802 - Qt override
        key = event.key()
        if key in (Qt.Key.Key_Up, Qt.Key.Key_Down, Qt.Key.Key_Left, Qt.Key.Key_Right):
            self.step(key)
            event.accept()
        elif key == Qt.Key.Key_F and not event.modifiers():
            self.fit()
            event.accept()
        elif key == Qt.Key.Key_Escape and self._search.isVisible():
            self._search.hide()
        else:
            super().keyPressEvent(event)

    def step(self, key: Any) -> str | None:
        """Move the selection along an edge (up/down) or along its rank (left/right); returns the new node."""
        current = self.session.selection[-1] if self.session.selection else None
        if current not in self.items:
            target = next(iter(self.items), None)
        else:
            x = self.items[current].pos().x()
            if key in (Qt.Key.Key_Up, Qt.Key.Key_Down):
                pool = self._preds[current] if key == Qt.Key.Key_Up else self._succs[current]
                target = min(pool, key=lambda n: abs(self.items[n].pos().x() - x), default=None)
            else:
                rank = self._ranks[current]
                row = sorted((n for n, r in self._ranks.items() if r == rank), key=lambda n: self.items[n].pos().x())
                i = row.index(current) + (1 if key == Qt.Key.Key_Right else -1)
                target = row[i] if 0 <= i < len(row) else None
        if target is not None:
            self.select([target], centre=True)
        return target

    def select(self, names: list[str], centre: bool = False) -> None:
        """Select these nodes (the session hears of it) and optionally centre on the first."""
        self.session.set_selection(tuple(n for n in names if n in self.items))
        if centre and names and names[0] in self.items:
            self.centerOn(self.items[names[0]])

    # --- search ---------------------------------------------------------------------------------

    def show_search(self) -> None:
        self._search.move(self.viewport().width() - self._search.width() - 12, 10)
        self._search.show()
        self._search.setFocus()
        self._search.selectAll()

    def _hide_search(self) -> None:
        self._search.hide()
        self.setFocus()

    def search(self, text: str) -> list[str]:
        """Select every node whose name or op type contains ``text`` (case-insensitive); centre on the first."""
        needle = text.strip().lower()
        self._matches = [n for n, item in self.items.items()
                         if needle and (needle in n.lower() or needle in item.node.op_type.lower())]
        self._match_index = 0
        self.select(self._matches, centre=True)
        return self._matches

    def next_match(self) -> None:
        if self._matches:
            self._match_index = (self._match_index + 1) % len(self._matches)
            self.centerOn(self.items[self._matches[self._match_index]])

    # --- selection sync --------------------------------------------------------------------------

    def _on_scene_selection(self) -> None:
        if self._syncing:
            return
        names = tuple(item.name for item in self.scene().selectedItems() if isinstance(item, NodeItem))
        order = {n: i for i, n in enumerate(self.session.selection)}
        names = tuple(sorted(names, key=lambda n: order.get(n, len(order))))  # keep the older ones first
        if names != self.session.selection:
            self.session.set_selection(names)

    def _on_session_selection(self, names: Any) -> None:
        wanted = set(names or ())
        self._syncing = True
        try:
            for name, item in self.items.items():
                if item.isSelected() != (name in wanted):
                    item.setSelected(name in wanted)
        finally:
            self._syncing = False

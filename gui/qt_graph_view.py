"""The graph view: every node of the session's model as a box, laid out by ``engine.layout.layered``, coloured by a mode.

Repaints from the session (model, plan, profile, sensitivity, route, selection); the selection made
here goes back through ``session.set_selection``. Zoom with the wheel or Ctrl+=/Ctrl+-, pan by
dragging the background, F fits, Ctrl+F searches (Enter: next match), arrow keys walk the edges,
View ▸ Layers only (Ctrl+L) toggles *layers only* (ops folded into the edges, ``engine.layout.fold``; on by default above
``COMPACT_ABOVE`` nodes).

At a glance: until the user picks a colour mode the fill follows the results (drop once sensitivity
exists, else latency, else layer/op); every profiled layer carries a latency bar; selecting a layer
outlines its neighbouring layers (with their routines) and its prune group. A large model is laid out
on a background thread and its boxes are added in chunks, so the event loop never waits long; it
opens fitted when boxes stay readable, else at a readable zoom centred on the hottest layer. A graph
far taller than the view is wrapped into columns for the view's shape (``engine.layout.wrap``).
"""

from __future__ import annotations

import logging
from typing import Any

from PySide6.QtCore import QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QKeySequence, QPainter, QShortcut
from PySide6.QtWidgets import QFrame, QGraphicsScene, QGraphicsView

from gui.colour_modes import MODES
from gui.graph_paint import CATEGORY_COLOURS, COLORMAP, mark_related, recolour, update_badges
from gui.graph_items import LAYER_SIZE, OP_SIZE, NodeItem, aspect_changed, edge_items, lay_out
from gui.qt_background import QtBackground
from gui.qt_graph_find import QtGraphFind, step
from gui.session_links import connect_view, guarded

__all__ = ["QtGraphView", "CATEGORY_COLOURS", "COLORMAP", "COMPACT_ABOVE"]

logger = logging.getLogger(__name__)

_ZOOM_STEP = 1.25
#: above this many nodes the view starts in "layers only" mode.
COMPACT_ABOVE = 300
_SYNC_BELOW = 200  # smaller graphs are built at once; larger ones in the background and in chunks
_CHUNK = 120  # boxes added per event-loop turn
_READABLE = 0.6  # a scale at which box text is comfortably readable
_TEXT_FIT = 0.5  # fitted at or above this scale, the box text still shows


class QtGraphView(QGraphicsView):
    """QGraphicsView of ``session.graph``; ``coloured`` is emitted with the ColourValues and colour ranges."""

    coloured = Signal(object)  # a dict: values (ColourValues), lo, hi, categories {name: QColor}, latency (lo, hi)
    built = Signal()  # every box of the current model is in the scene

    def __init__(self, session: Any, parent: Any = None) -> None:
        super().__init__(parent)
        self.session = session
        self.items: dict[str, NodeItem] = {}
        self.colour_mode = "kind"
        self.mode_chosen = False  # until the user picks a mode, the fill follows the results
        self.compact: bool | None = None  # layers only; None: automatic (on above COMPACT_ABOVE nodes)
        self.building = False
        self._generation = 0
        self._layout = QtBackground(self, "layerlab-layout")
        self.layer_nbrs: dict[str, list[str]] = {}
        self.hottest: str | None = None
        self._syncing = False
        self._drawn: tuple | None = None  # the layout input of the boxes in the scene (``_layout_work``)
        self._drawn_graph: Any = None  # the graph whose boxes are in the scene
        self.succs: dict[str, list[str]] = {}  # the drawn edges and ranks, for walking (gui.qt_graph_find.step)
        self.preds: dict[str, list[str]] = {}
        self.ranks: dict[str, int] = {}
        self.columns: tuple[tuple[int, int], ...] = ()  # the drawn layout's columns (first, last rank), wrapped
        self._built_aspect: float | None = None  # the viewport's aspect the drawn layout was wrapped for
        self._rewrap = QTimer(self)  # after a resize that changes the aspect a lot, wrap the columns anew
        self._rewrap.setSingleShot(True)
        self._rewrap.setInterval(250)
        self._rewrap.timeout.connect(self._on_rewrap)
        self.setScene(QGraphicsScene(self))
        self.setRenderHints(QPainter.RenderHint.Antialiasing | QPainter.RenderHint.TextAntialiasing)
        self.setViewportUpdateMode(QGraphicsView.ViewportUpdateMode.SmartViewportUpdate)
        self.setDragMode(QGraphicsView.DragMode.ScrollHandDrag)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setBackgroundBrush(QColor("#fbfbfb"))
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.scene().selectionChanged.connect(self._on_scene_selection)
        self.find = QtGraphFind(self)
        for keys, slot in (
            ("Ctrl+=", lambda: self.zoom(_ZOOM_STEP)),
            ("Ctrl++", lambda: self.zoom(_ZOOM_STEP)),
            ("Ctrl+-", lambda: self.zoom(1 / _ZOOM_STEP)),
            ("Ctrl+F", self.show_search),
        ):
            shortcut = QShortcut(QKeySequence(keys), self)
            shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            shortcut.activated.connect(slot)
        # results arriving together (a session opened, a tune landing) repaint once, on the next turn
        self._pending: set[str] = set()
        self._later = QTimer(self)
        self._later.setSingleShot(True)
        self._later.setInterval(0)
        self._later.timeout.connect(self.flush)
        self._repaints = {"badges": guarded(lambda: self._update_badges(), "graph view on plan"),
                          "colours": guarded(lambda: self.recolour(), "graph view on results"),
                          "related": guarded(lambda: self._mark_related(self.session.selection), "graph view on route")}
        self._callbacks = {
            "model": lambda _: self.rebuild(),
            "plan": lambda _: self._soon("badges"),
            "profile": lambda _: self._soon("colours"),
            "sensitivity": lambda _: self._soon("colours"),
            "route": lambda _: self._soon("colours", "related"),
            "selection": self._on_session_selection,
        }
        self._links = connect_view(session.events, self._callbacks, "graph view")
        self.rebuild()

    def close_view(self) -> None:
        """Stop listening to the session (the window calls this when it closes)."""
        self._later.stop()
        self._generation += 1  # a layout still running lands nowhere
        self._links.disconnect()
        self._layout.shutdown()

    # --- building -------------------------------------------------------------------------------

    @property
    def layers_only(self) -> bool:
        """Whether ops are folded into the edges now (automatic until toggled)."""
        graph = self.session.graph
        if self.compact is not None:
            return self.compact
        return graph is not None and len(graph.nodes) > COMPACT_ABOVE

    def toggle_compact(self) -> None:
        """Switch between every node and layers only; the selection and colours stay."""
        self.compact = not self.layers_only
        self.rebuild(keep_view=True)

    def rebuild(self, keep_view: bool = False) -> None:
        """Lay out and draw the session's graph from scratch (large graphs: in the background).

        The same graph again (a session of this model reopened) keeps its boxes and layout: only the
        nodes behind them are swapped, so a reopen costs a recolour, not a scene rebuild."""
        self._generation += 1
        graph = self.session.graph
        drawn = not self.building and bool(self.items) and self._drawn is not None
        if drawn and graph is self._drawn_graph and self.layers_only == self._drawn[4] and self._reuse(graph):
            return  # the very graph object (a reopen that kept it): nothing to compare
        work = _layout_work(graph, self.layers_only) if graph is not None else None
        if drawn and work is not None and work == self._drawn and self._reuse(graph):
            return
        self._drawn, self._drawn_graph = None, graph
        scene = self.scene()
        self._syncing = True
        scene.clear()
        self._syncing = False
        self.items.clear()
        if work is None:
            self.building = False
            self.recolour()
            return
        names = work[0]
        self._drawn = work
        self.building = True
        aspect = self._built_aspect = self._aspect()
        if len(names) < _SYNC_BELOW:
            self._place(self._generation, lay_out(*work, aspect), None, keep_view)
            return
        generation = self._generation
        self._layout.submit(lambda: lay_out(*work, aspect),
                            lambda result, error: self._place(generation, result, error, keep_view))

    def _aspect(self) -> float | None:
        """The viewport's width/height (a tall graph is wrapped into columns to fit it), None before it has a size."""
        size = self.viewport().size()
        if size.width() < 50 or size.height() < 50:
            return None
        return round(size.width() / size.height(), 2)

    def resizeEvent(self, event: Any) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        if self.items and not self.building and aspect_changed(self._aspect(), self._built_aspect):
            self._rewrap.start()

    def _on_rewrap(self) -> None:
        if self.items and not self.building and aspect_changed(self._aspect(), self._built_aspect):
            self._drawn = None  # the same graph, laid out for the new shape of the view
            self.rebuild()

    def _place(self, generation: int, laid_out: Any, error: BaseException | None, keep_view: bool) -> None:
        if generation != self._generation:
            return  # a newer model (or mode) replaced this one
        if error is not None:  # a layout bug must not take the window down
            logger.error("layout failed", exc_info=error)
            self.building = False
            self._drawn = None
            return
        layout, shapes, nbrs, shown = laid_out
        self.ranks = dict(layout.layers)
        self.columns = layout.columns
        self.layer_nbrs = nbrs
        self.succs = {n: [] for n in layout.positions}
        self.preds = {n: [] for n in layout.positions}
        for src, dst in layout.edges:
            self.succs[src].append(dst)
            self.preds[dst].append(src)
        for item in edge_items(*shapes):
            self.scene().addItem(item)
        margin = 60.0
        self.scene().setSceneRect(QRectF(-margin, -margin, layout.width + 2 * margin, layout.height + 2 * margin))
        nodes = [n for n in self.session.graph.nodes if n.name in shown]
        if len(nodes) < _SYNC_BELOW:
            self._add_items(generation, layout, nodes, keep_view)
        else:
            self._add_chunk(generation, layout, nodes, 0, keep_view)

    def _add_chunk(self, generation: int, layout: Any, nodes: list[Any], start: int, keep_view: bool) -> None:
        if generation != self._generation:
            return
        end = min(start + _CHUNK, len(nodes))
        for node in nodes[start:end]:
            self._new_item(node, layout)
        if end < len(nodes):
            QTimer.singleShot(0, self, lambda: self._add_chunk(generation, layout, nodes, end, keep_view))
        else:
            self._finish(keep_view)

    def _add_items(self, generation: int, layout: Any, nodes: list[Any], keep_view: bool) -> None:
        for node in nodes:
            self._new_item(node, layout)
        self._finish(keep_view)

    def _new_item(self, node: Any, layout: Any) -> None:
        item = NodeItem(node, layout.positions[node.name], layout.sizes[node.name])
        self.scene().addItem(item)
        self.items[node.name] = item

    def _reuse(self, graph: Any) -> bool:
        """Point the drawn boxes at ``graph``'s nodes (same names, edges and kinds); False if one is missing."""
        nodes = {n.name: n for n in graph.nodes}
        if any(name not in nodes for name in self.items):
            return False
        for name, item in self.items.items():
            item.set_node(nodes[name])
        self._drawn_graph = graph
        self._finish(keep_view=True)
        return True

    def _finish(self, keep_view: bool) -> None:
        logger.info("graph view: %d boxes%s", len(self.items), " (layers only)" if self.layers_only else "")
        self.building = False
        self._pending.clear()  # everything below is done now
        self._update_badges()
        self.recolour()
        self._on_session_selection(self.session.selection)
        if not keep_view:
            QTimer.singleShot(0, self.start_view)
        self.built.emit()

    # --- colour -------------------------------------------------------------------------------

    @property
    def pending(self) -> bool:
        """True while a repaint the session asked for waits for the next event-loop turn."""
        return bool(self._pending)

    def _soon(self, *what: str) -> None:
        self._pending.update(what)
        self._later.start()

    def flush(self) -> None:
        """Do the repaints the session asked for since the last turn (each once)."""
        pending, self._pending = self._pending, set()
        self._later.stop()
        for what in ("badges", "colours", "related"):  # a bug in one is logged; the others still run
            if what in pending:
                self._repaints[what]()

    def set_colour_mode(self, mode: str) -> None:
        """Colour by ``mode`` from now on (the user's choice: results arriving no longer change it)."""
        if mode not in MODES:
            raise ValueError(f"unknown colour mode {mode!r}")
        self.colour_mode = mode
        self.mode_chosen = True
        self.recolour()

    def recolour(self) -> None:
        """Colour every node by the current mode, draw the latency bars and tell the legend (``gui.graph_paint``)."""
        recolour(self)

    def _update_badges(self) -> None:
        update_badges(self)

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

    def start_view(self) -> None:
        """Fitted when the boxes stay readable that way; else readable boxes around the hottest layer (or the top)."""
        if not self.items:
            return
        rect = self.scene().itemsBoundingRect().adjusted(-20, -20, 20, 20)
        viewport = self.viewport().size()
        fit = min(viewport.width() / max(rect.width(), 1.0), viewport.height() / max(rect.height(), 1.0))
        self.resetTransform()
        if fit >= _TEXT_FIT:
            self.fit()
            return
        scale = min(max(fit, _READABLE), 1.0)
        self.scale(scale, scale)
        hottest = self.items.get(self.hottest or "")
        if hottest is not None:
            self.centerOn(hottest)
        else:
            self.centerOn(rect.center().x(), rect.top() + viewport.height() / (2 * scale))

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
        elif key == Qt.Key.Key_Escape and self.find.box.isVisible():
            self.find.hide()
        else:
            super().keyPressEvent(event)

    def step(self, key: Any) -> str | None:
        """Move the selection along an edge (up/down) or its rank (left/right); ``gui.qt_graph_find.step``."""
        return step(self, key)

    def select(self, names: list[str], centre: bool = False) -> None:
        """Select these nodes (the session hears of it) and optionally centre on the first."""
        self.session.set_selection(tuple(n for n in names if n in self.items))
        if centre and names and names[0] in self.items:
            self.centerOn(self.items[names[0]])

    def show_search(self) -> None:
        self.find.show()

    def search(self, text: str) -> list[str]:
        """Select every node whose name or op type contains ``text``; ``gui.qt_graph_find``."""
        return self.find.search(text)

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
        self._mark_related(names or ())

    def _mark_related(self, names: Any) -> None:
        mark_related(self, names)


def _layout_work(graph: Any, layers_only: bool) -> tuple:
    """What ``lay_out`` needs for ``graph``: names, edges, layers, box sizes, layers-only (plain values)."""
    names = [n.name for n in graph.nodes]
    known = set(names)
    pairs = list(dict.fromkeys((e.src, e.dst) for e in graph.edges if e.src in known and e.dst in known))
    layers = [n.name for n in graph.layers]
    sizes = {n.name: LAYER_SIZE if n.tunable else OP_SIZE for n in graph.nodes}
    return names, pairs, layers, sizes, layers_only and bool(layers)

"""Scene items of the graph view: one box per node, all edges in one path (cheap at thousands of nodes).

A node box paints only a rectangle when zoomed out (level of detail), and its text when the box is
big enough on screen to read. Items record their drawing into a QPicture per zoom tier (pyqtgraph's
way) and replay it; a change of colour, badge, latency or mark drops the recording.
"""

from __future__ import annotations

import logging
from typing import Any, Iterable, Sequence

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QFont, QFontMetrics, QPainter, QPainterPath, QPen, QPicture, QPolygonF
from PySide6.QtWidgets import QGraphicsItem, QGraphicsPathItem, QStyleOptionGraphicsItem

from engine.layout.fold import fold_edges
from engine.layout.layered import layout_graph
from engine.layout.wrap import wrap_layout

__all__ = ["NodeItem", "lay_out", "aspect_changed", "edge_paths", "edge_shapes", "edge_items", "LAYER_SIZE", "OP_SIZE", "shape_label", "MARK_COLOURS", "BAR_COLOUR",
           "UNMEASURED_COLOUR"]

logger = logging.getLogger(__name__)

LAYER_SIZE = (180.0, 62.0)
OP_SIZE = (150.0, 52.0)
_LAYER_FILL = QColor("#dce8f7")
_OP_FILL = QColor("#f2f2f2")
_SELECTED = QColor("#ff8c00")
_TEXT_LOD = 0.45  # below this scale the text would be unreadable: draw boxes only
_BAR_H = 13.0  # the latency bar under a layer box
BAR_COLOUR = QColor("#d1495b")
UNMEASURED_COLOUR = QColor("#6b6b6b")
MARK_COLOURS = {"neighbour": QColor("#2ca02c"), "group": QColor("#9467bd")}
_ARROW = 7.0


def shape_label(shape: Sequence[object] | None) -> str:
    """1x64x24x80 ('?' for unknown)."""
    if shape is None:
        return "?"
    return "x".join(str(d) for d in shape) or "scalar"


def _lines(node: Any) -> tuple[str, str, str]:
    """The three lines a box shows: op type, name, first output shape."""
    return node.op_type, node.name, shape_label(node.out_shapes[0] if node.out_shapes else None)


class NodeItem(QGraphicsItem):
    """One node: op type, name and output shape; layers (tunable) are larger, bold-bordered and tinted.

    A layer may carry a latency bar (``set_latency``): a strip along its bottom edge whose length is its
    share of the slowest layer's time, with the time written beside it, so the fill can show the drop
    while latency stays visible. ``mark`` outlines neighbours and prune-group members of the selection.
    The drawing is recorded once per look and zoom tier into a QPicture; ``paint`` replays it.
    """

    def __init__(self, node: Any, centre: tuple[float, float], size: tuple[float, float]) -> None:
        super().__init__()
        self.node = node
        self.name: str = node.name
        self.tunable: bool = bool(node.tunable)
        w, h = size
        self._rect = QRectF(-w / 2, -h / 2, w, h)
        self.setPos(*centre)
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIsSelectable, True)
        self.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)  # pans replay pixmaps, no Python
        self.setAcceptHoverEvents(True)  # the tooltip is built on hover, not on every recolour
        self.fill = _LAYER_FILL if self.tunable else _OP_FILL
        self.badge = ""  # short text drawn in the corner (the plan's change, e.g. "int8")
        self.tooltip_extra = ""
        self.latency: tuple[float, float] | None = None  # (ms, share of the slowest layer 0..1)
        self.mark = ""  # "", "neighbour" or "group": outline drawn around the box
        self.mark_text = ""  # e.g. the neighbour's routine
        self.unmeasured = False  # the colour mode's table lacks this layer (a cancelled run): hatched
        self._lines = _lines(node)
        self._pictures: dict[tuple, QPicture] = {}

    def set_node(self, node: Any) -> None:
        """The same node from a reloaded graph (its shapes may differ): keep the box, redraw if the text changed."""
        self.node = node
        lines = _lines(node)
        if lines != self._lines:
            self._lines = lines
            self.refresh()

    def _base_tooltip(self) -> str:
        n = self.node
        kind = "layer" if self.tunable else "op"
        shapes = ", ".join(shape_label(s) for s in n.out_shapes) or "?"
        lines = [f"{n.name} ({n.op_type}, {kind})", f"output: {shapes}"]
        if n.macs is not None:
            lines.append(f"MACs: {n.macs:,}")
        if n.params:
            lines.append(f"params: {n.params:,}")
        return "\n".join(lines)

    def tooltip(self) -> str:
        base = self._base_tooltip()
        return f"{base}\n{self.tooltip_extra}" if self.tooltip_extra else base

    def hoverEnterEvent(self, event: Any) -> None:  # noqa: N802 - Qt override
        self.setToolTip(self.tooltip())
        super().hoverEnterEvent(event)

    def set_look(self, fill: QColor | None, tooltip_extra: str = "", badge: str = "") -> None:
        """New fill colour (None: the default), extra tooltip lines and corner badge; repaints when changed."""
        fill = fill if fill is not None else (_LAYER_FILL if self.tunable else _OP_FILL)
        changed = fill.rgb() != self.fill.rgb() or badge != self.badge
        self.fill, self.badge, self.tooltip_extra = fill, badge, tooltip_extra
        if changed:
            self.refresh()

    def set_latency(self, latency: tuple[float, float] | None) -> None:
        if latency != self.latency:
            if (latency is None) != (self.latency is None):
                self.prepareGeometryChange()  # the bar changes the bounding rect
            self.latency = latency
            self.refresh()

    def set_unmeasured(self, unmeasured: bool) -> None:
        if unmeasured != self.unmeasured:
            self.unmeasured = unmeasured
            self.refresh()

    def set_mark(self, mark: str, text: str = "") -> None:
        if (mark, text) != (self.mark, self.mark_text):
            self.mark, self.mark_text = mark, text
            self.refresh()

    def refresh(self) -> None:
        """Forget the recorded drawing and repaint."""
        self._pictures.clear()
        self.update()

    def boundingRect(self) -> QRectF:  # noqa: N802 - Qt override
        return self._rect.adjusted(-6, -6, 6, 6 + (_BAR_H if self.latency is not None else 0))

    def itemChange(self, change: Any, value: Any) -> Any:  # noqa: N802 - Qt override
        if change == QGraphicsItem.GraphicsItemChange.ItemSelectedHasChanged:
            self._pictures.clear()
        return super().itemChange(change, value)

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: Any = None) -> None:
        lod = option.levelOfDetailFromTransform(painter.worldTransform())
        tier = 0 if lod < 0.15 else 1 if lod < _TEXT_LOD else 2
        key = (tier, self.isSelected())
        picture = self._pictures.get(key)
        if picture is None:
            picture = QPicture()
            recorder = QPainter(picture)
            recorder.setRenderHints(painter.renderHints())
            self._draw(recorder, tier, key[1])
            recorder.end()
            self._pictures[key] = picture
        picture.play(painter)

    def _draw(self, painter: QPainter, tier: int, selected: bool) -> None:
        if selected:
            pen = QPen(_SELECTED, 4 if self.tunable else 3)
        else:
            pen = QPen(QColor("#1f3f6e") if self.tunable else QColor("#8a8a8a"), 2.2 if self.tunable else 1.0)
        pen.setCosmetic(tier < 2)  # stays visible when zoomed far out
        painter.setPen(pen)
        painter.setBrush(QBrush(self.fill))
        if tier == 0:  # far out: the colour is what matters, an outline would hide it
            if not selected:
                painter.setPen(Qt.PenStyle.NoPen)
            painter.drawRect(self._rect)
            self._draw_hatch(painter, 0.0)
            self._draw_latency(painter, tier)
            return
        radius = 4.0 if self.tunable else 12.0
        painter.drawRoundedRect(self._rect, radius, radius)
        self._draw_hatch(painter, radius)
        if self.mark:
            outline = QPen(MARK_COLOURS[self.mark], 3, Qt.PenStyle.DashLine)
            outline.setCosmetic(tier < 2)
            painter.setPen(outline)
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawRoundedRect(self._rect.adjusted(-4, -4, 4, 4), radius + 2, radius + 2)
        self._draw_latency(painter, tier)
        if tier < 2:
            return
        text_colour = QColor("black") if self.fill.lightnessF() > 0.5 else QColor("white")
        painter.setPen(text_colour)
        inner = self._rect.adjusted(8, 4, -8, -4)
        bold = QFont(painter.font())
        bold.setPointSizeF(9.5)
        bold.setBold(True)
        plain = QFont(painter.font())
        plain.setPointSizeF(8.0)
        line_h = inner.height() / 3
        corner = " ".join(t for t in (self.mark_text, self.badge) if t)
        corner_w = QFontMetrics(plain).horizontalAdvance(corner) + 6 if corner else 0
        for i, (text, font) in enumerate(zip(self._lines, (bold, plain, plain))):
            painter.setFont(font)
            row = QRectF(inner.left(), inner.top() + i * line_h, inner.width(), line_h)
            align = Qt.AlignmentFlag.AlignHCenter
            if i == 0 and QFontMetrics(font).horizontalAdvance(text) / 2 > inner.width() / 2 - corner_w:
                row.setWidth(inner.width() - corner_w)  # centred, the title would run into the corner text
                align = Qt.AlignmentFlag.AlignLeft
            elided = QFontMetrics(font).elidedText(text, Qt.TextElideMode.ElideMiddle, int(row.width()))
            painter.drawText(row, align | Qt.AlignmentFlag.AlignVCenter, elided)
        if corner:
            painter.setFont(plain)
            painter.drawText(inner, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignTop, corner)

    def _draw_hatch(self, painter: QPainter, radius: float) -> None:
        """Diagonal hatching and a dashed grey border: this layer has no value in the current colours."""
        if not self.unmeasured:
            return
        painter.save()
        painter.setBrush(QBrush(UNMEASURED_COLOUR, Qt.BrushStyle.BDiagPattern))
        pen = QPen(UNMEASURED_COLOUR, 2, Qt.PenStyle.DashLine)
        pen.setCosmetic(True)
        painter.setPen(pen)
        painter.drawRoundedRect(self._rect, radius, radius)
        painter.restore()

    def _draw_latency(self, painter: QPainter, tier: int) -> None:
        if self.latency is None:
            return
        ms, share = self.latency
        track = QRectF(self._rect.left(), self._rect.bottom() + 2, self._rect.width(), _BAR_H - 2)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor("#e3e3e3"))
        painter.drawRect(track)
        painter.setBrush(BAR_COLOUR)
        painter.drawRect(QRectF(track.left(), track.top(), max(track.width() * share, 2.0), track.height()))
        if tier == 2:
            font = QFont(painter.font())
            font.setPointSizeF(7.5)
            font.setBold(True)
            painter.setFont(font)
            painter.setPen(QColor("black") if share < 0.75 else QColor("white"))
            painter.drawText(track.adjusted(4, -2, -4, 2), Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
                             f"{ms:.3g} ms")


def edge_shapes(polylines: Iterable[Sequence[tuple[float, float]]]) -> tuple[QPainterPath, QPainterPath]:
    """All edges as one path and all arrow heads as another (plain values: any thread may build them)."""
    lines, heads = QPainterPath(), QPainterPath()
    for points in polylines:
        if len(points) < 2:
            continue
        lines.moveTo(*points[0])
        for p in points[1:]:
            lines.lineTo(*p)
        (x0, y0), (x1, y1) = points[-2], points[-1]
        direction = QPointF(x1 - x0, y1 - y0)
        length = max((direction.x() ** 2 + direction.y() ** 2) ** 0.5, 1e-6)
        ux, uy = direction.x() / length, direction.y() / length
        tip = QPointF(x1, y1)
        base = QPointF(x1 - ux * _ARROW * 1.6, y1 - uy * _ARROW * 1.6)
        side = QPointF(-uy * _ARROW * 0.6, ux * _ARROW * 0.6)
        heads.addPolygon(QPolygonF([tip, base + side, base - side, tip]))
    return lines, heads


def edge_items(lines: QPainterPath, heads: QPainterPath) -> tuple[QGraphicsPathItem, QGraphicsPathItem]:
    """The scene items for ``edge_shapes``: a cosmetic grey stroke and filled heads, under the boxes."""
    line_item = QGraphicsPathItem(lines)
    pen = QPen(QColor("#707070"), 1.3)
    pen.setCosmetic(True)
    line_item.setPen(pen)
    line_item.setZValue(-1)
    head_item = QGraphicsPathItem(heads)
    head_item.setPen(Qt.PenStyle.NoPen)
    head_item.setBrush(QColor("#707070"))
    head_item.setZValue(-1)
    return line_item, head_item


def edge_paths(polylines: Iterable[Sequence[tuple[float, float]]]) -> tuple[QGraphicsPathItem, QGraphicsPathItem]:
    """All edges as one stroked path and all arrow heads as one filled path."""
    return edge_items(*edge_shapes(polylines))


def aspect_changed(aspect: float | None, built: float | None) -> bool:
    """Whether a layout wrapped for ``built`` no longer suits a view of ``aspect`` (30 % off, or none before)."""
    if aspect is None:
        return False
    return built is None or max(aspect / built, built / aspect) > 1.3


def lay_out(names: list[str], pairs: list[tuple[str, str]], layers: list[str],
            sizes: dict[str, tuple[float, float]], compact: bool,
            aspect: float | None = None) -> tuple[Any, Any, dict[str, list[str]], set[str]]:
    """For the view, on its layout thread: the layout, the edge shapes, each layer's neighbouring
    layers, the nodes shown (``compact``: layers only, ops folded into the edges). With the view's
    width/height ``aspect``, a layout far taller than the view is wrapped into columns
    (``engine.layout.wrap``) so that it fits at a readable scale."""
    folded = fold_edges(names, pairs, layers)
    nbrs: dict[str, list[str]] = {n: [] for n in layers}
    for src, dst in folded:
        nbrs[src].append(dst)
        nbrs[dst].append(src)
    shown, shown_pairs = (layers, list(folded)) if compact else (names, pairs)
    layout = layout_graph(shown, shown_pairs, {n: sizes[n] for n in shown}, node_gap=28.0, rank_gap=36.0)
    if aspect is not None:
        layout = wrap_layout(layout, aspect)
    return layout, edge_shapes(layout.edges.values()), nbrs, set(shown)

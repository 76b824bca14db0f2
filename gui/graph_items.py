"""Scene items of the graph view: one box per node, all edges in one path (cheap at thousands of nodes).

A node box paints only a rectangle when zoomed out (level of detail), and its text when the box is
big enough on screen to read. Items cache their painting in device coordinates; a colour change
calls ``update()`` which refreshes the cache.
"""

from __future__ import annotations

import logging
from typing import Any, Iterable, Sequence

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QFont, QFontMetrics, QPainter, QPainterPath, QPen, QPolygonF
from PySide6.QtWidgets import QGraphicsItem, QGraphicsPathItem, QStyleOptionGraphicsItem

__all__ = ["NodeItem", "edge_paths", "LAYER_SIZE", "OP_SIZE", "shape_label"]

logger = logging.getLogger(__name__)

LAYER_SIZE = (180.0, 62.0)
OP_SIZE = (150.0, 52.0)
_LAYER_FILL = QColor("#dce8f7")
_OP_FILL = QColor("#f2f2f2")
_SELECTED = QColor("#ff8c00")
_TEXT_LOD = 0.45  # below this scale the text would be unreadable: draw boxes only
_ARROW = 7.0


def shape_label(shape: Sequence[object] | None) -> str:
    """1x64x24x80 ('?' for unknown)."""
    if shape is None:
        return "?"
    return "x".join(str(d) for d in shape) or "scalar"


class NodeItem(QGraphicsItem):
    """One node: op type, name and output shape; layers (tunable) are larger, bold-bordered and tinted."""

    def __init__(self, node: Any, centre: tuple[float, float], size: tuple[float, float]) -> None:
        super().__init__()
        self.node = node
        self.name: str = node.name
        self.tunable: bool = bool(node.tunable)
        w, h = size
        self._rect = QRectF(-w / 2, -h / 2, w, h)
        self.setPos(*centre)
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIsSelectable, True)
        self.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
        self.setToolTip(self._base_tooltip())
        self.fill = _LAYER_FILL if self.tunable else _OP_FILL
        self.badge = ""  # short text drawn in the corner (the plan's change, e.g. "int8")
        shape = node.out_shapes[0] if node.out_shapes else None
        self._lines = (node.op_type, node.name, shape_label(shape))

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

    def set_look(self, fill: QColor | None, tooltip_extra: str = "", badge: str = "") -> None:
        """New fill colour (None: the default), extra tooltip lines and corner badge; repaints."""
        self.fill = fill if fill is not None else (_LAYER_FILL if self.tunable else _OP_FILL)
        self.badge = badge
        base = self._base_tooltip()
        self.setToolTip(f"{base}\n{tooltip_extra}" if tooltip_extra else base)
        self.update()

    def boundingRect(self) -> QRectF:  # noqa: N802 - Qt override
        return self._rect.adjusted(-3, -3, 3, 3)

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: Any = None) -> None:
        lod = option.levelOfDetailFromTransform(painter.worldTransform())
        selected = self.isSelected()
        if selected:
            pen = QPen(_SELECTED, 4 if self.tunable else 3)
        else:
            pen = QPen(QColor("#1f3f6e") if self.tunable else QColor("#8a8a8a"), 2.2 if self.tunable else 1.0)
        pen.setCosmetic(lod < _TEXT_LOD)  # stays visible when zoomed far out
        painter.setPen(pen)
        painter.setBrush(QBrush(self.fill))
        radius = 4.0 if self.tunable else 12.0
        if lod < 0.15:  # far out: the colour is what matters, an outline would hide it
            if not selected:
                painter.setPen(Qt.PenStyle.NoPen)
            painter.drawRect(self._rect)
            return
        painter.drawRoundedRect(self._rect, radius, radius)
        if lod < _TEXT_LOD:
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
        for i, (text, font) in enumerate(zip(self._lines, (bold, plain, plain))):
            painter.setFont(font)
            elided = QFontMetrics(font).elidedText(text, Qt.TextElideMode.ElideMiddle, int(inner.width()))
            row = QRectF(inner.left(), inner.top() + i * line_h, inner.width(), line_h)
            painter.drawText(row, Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignVCenter, elided)
        if self.badge:
            painter.setFont(plain)
            painter.drawText(inner, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignTop, self.badge)


def edge_paths(polylines: Iterable[Sequence[tuple[float, float]]]) -> tuple[QGraphicsPathItem, QGraphicsPathItem]:
    """All edges as one stroked path and all arrow heads as one filled path."""
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

"""The overview: the whole graph in a strip, every node in its current colour, the visible part framed.

Real models are tall and narrow (PP-OCR's 440 nodes are 20,000 px of chain), so a minimap that keeps
the aspect ratio would draw each box a pixel high. This one stretches the graph to the strip and
draws every box at least ``_MIN_PX`` high, so that which layers are red is visible at a glance; a
click or drag centres the main view there. It paints from the graph view's items (position, size,
fill), so it never holds state of its own.

It draws into a QImage shown by a QLabel, redrawn only when a 150 ms poll sees the view change:
PySide6 6.12.0 drops a reference to None on every QPainter call from Python and aborts the
interpreter after a few thousand (that version is excluded in pyproject.toml); drawing only on
change keeps the number of Python painter calls small on any version.
"""

from __future__ import annotations

import logging
from typing import Any

from PySide6.QtCore import QPointF, QRectF, QSize, Qt, QTimer
from PySide6.QtGui import QColor, QImage, QPainter, QPen, QPixmap
from PySide6.QtWidgets import QLabel, QSizePolicy

__all__ = ["QtOverview"]

logger = logging.getLogger(__name__)

_MIN_PX = 2.0
_FRAME = QColor("#d62728")


class QtOverview(QLabel):
    """A strip showing every node of ``view`` (a QtGraphView); clicking moves the view."""

    def __init__(self, view: Any, parent: Any = None) -> None:
        super().__init__(parent)
        self.view = view
        self.setMinimumWidth(60)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)  # the image follows the dock
        self.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.setToolTip("Overview: the whole graph in its colours; click or drag to move the view")
        # polled rather than redrawn on every scroll signal: see the module docstring
        self._key: Any = None
        self._timer = QTimer(self)
        self._timer.timeout.connect(self._poll)
        self._timer.start(150)

    def _state(self) -> tuple:
        view = self.view
        return (view.horizontalScrollBar().value(), view.verticalScrollBar().value(), view.transform().m11(),
                view.viewport().size().toTuple(), self.size().toTuple(), len(view.items),
                tuple(item.fill.rgb() for item in view.items.values()),
                tuple(i.name for i in view.items.values() if i.isSelected()))

    def _poll(self) -> None:
        if not self.isVisible():
            return
        key = self._state()
        if key != self._key:
            self._key = key
            self.render()

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt override
        return QSize(110, 400)

    def _mapping(self) -> tuple[QRectF, float, float] | None:
        rect = self.view.scene().sceneRect()
        if not self.view.items or rect.width() <= 0 or rect.height() <= 0:
            return None
        return rect, (self.width() - 4) / rect.width(), (self.height() - 4) / rect.height()

    def render(self) -> None:
        """Draw the strip now (the poll calls this when the view or its colours change)."""
        image = QImage(max(self.width(), 1), max(self.height(), 1), QImage.Format.Format_RGB32)
        painter = QPainter(image)
        self._draw(painter)
        painter.end()
        self.setPixmap(QPixmap.fromImage(image))

    def _draw(self, painter: QPainter) -> None:
        painter.fillRect(image_rect := QRectF(0, 0, self.width(), self.height()), QColor("#fafafa"))
        mapping = self._mapping()
        if mapping is None:
            painter.setPen(QColor("#888"))
            painter.drawText(image_rect, Qt.AlignmentFlag.AlignCenter, "no graph")
            return
        rect, sx, sy = mapping
        painter.setPen(Qt.PenStyle.NoPen)
        for item in self.view.items.values():
            box = item.boundingRect().adjusted(3, 3, -3, -3)
            centre = item.pos()
            w, h = max(box.width() * sx, _MIN_PX), max(box.height() * sy, _MIN_PX)
            x = 2 + (centre.x() - rect.left()) * sx - w / 2
            y = 2 + (centre.y() - rect.top()) * sy - h / 2
            painter.setBrush(item.fill if item.tunable else item.fill.lighter(115))
            painter.drawRect(QRectF(x, y, w, h))
            if item.isSelected():
                painter.setPen(QPen(QColor("#ff7f0e"), 2))
                painter.drawRect(QRectF(x - 2, y - 2, w + 4, h + 4))
                painter.setPen(Qt.PenStyle.NoPen)
        seen = self.view.mapToScene(self.view.viewport().rect()).boundingRect().intersected(rect)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.setPen(QPen(_FRAME, 1.5))
        painter.drawRect(QRectF(2 + (seen.left() - rect.left()) * sx, 2 + (seen.top() - rect.top()) * sy,
                                max(seen.width() * sx, 3.0), max(seen.height() * sy, 3.0)))

    def scene_point(self, pos: QPointF) -> QPointF | None:
        """The scene point under widget position ``pos`` (None without a graph)."""
        mapping = self._mapping()
        if mapping is None:
            return None
        rect, sx, sy = mapping
        return QPointF(rect.left() + (pos.x() - 2) / sx, rect.top() + (pos.y() - 2) / sy)

    def mousePressEvent(self, event: Any) -> None:  # noqa: N802 - Qt override
        self._move_view(event.position())

    def mouseMoveEvent(self, event: Any) -> None:  # noqa: N802 - Qt override
        if event.buttons() & Qt.MouseButton.LeftButton:
            self._move_view(event.position())

    def _move_view(self, pos: QPointF) -> None:
        point = self.scene_point(pos)
        if point is not None:
            self.view.centerOn(point)
            self.render()

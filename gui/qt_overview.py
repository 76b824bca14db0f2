"""The overview: a heat strip of the model's layers, top to bottom in graph order, in the view's current colours.

Real models are tall and narrow (PP-OCR's 440 nodes are 20,000 px of chain): a minimap of the whole
graph draws each box a sliver. This strip draws one band per *layer* (ops carry no colour worth
seeing), filled with the layer's colour in the graph view, with its latency bar (when profiled) as a
dark tick from the right edge; the layers now on screen are framed. A click or drag centres the view on
the layer under the pointer. It paints from the view's items, so it holds no state of its own.

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
_LATENCY = QColor(40, 40, 40, 170)


class QtOverview(QLabel):
    """A strip showing every node of ``view`` (a QtGraphView); clicking moves the view."""

    def __init__(self, view: Any, parent: Any = None) -> None:
        super().__init__(parent)
        self.view = view
        self.setMinimumWidth(60)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)  # the image follows the dock
        self.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.setToolTip("Overview: every layer in graph order, in the view's colours (dark ticks: latency);\n"
                        "click or drag to move the view")
        # polled rather than redrawn on every scroll signal: see the module docstring
        self._key: Any = None
        self._timer = QTimer(self)
        self._timer.timeout.connect(self._poll)
        self._timer.start(150)

    def _state(self) -> tuple:
        view = self.view
        return (view.horizontalScrollBar().value(), view.verticalScrollBar().value(), view.transform().m11(),
                view.viewport().size().toTuple(), self.size().toTuple(), len(view.items),
                tuple((item.fill.rgb(), item.latency) for item in view.items.values() if item.tunable),
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

    def bands(self) -> list[Any]:
        """The layer items in graph order (the strip's bands, top to bottom)."""
        graph = self.view.session.graph
        if graph is None:
            return []
        items = self.view.items
        return [items[n.name] for n in graph.layers if n.name in items]

    def _band_height(self, count: int) -> float:
        return (self.height() - 4) / max(count, 1)

    def render(self) -> None:
        """Draw the strip now (the poll calls this when the view or its colours change)."""
        image = QImage(max(self.width(), 1), max(self.height(), 1), QImage.Format.Format_RGB32)
        painter = QPainter(image)
        self._draw(painter)
        painter.end()
        self.setPixmap(QPixmap.fromImage(image))

    def _draw(self, painter: QPainter) -> None:
        painter.fillRect(image_rect := QRectF(0, 0, self.width(), self.height()), QColor("#fafafa"))
        bands = self.bands()
        if not bands:
            painter.setPen(QColor("#888"))
            painter.drawText(image_rect, Qt.AlignmentFlag.AlignCenter, "no layers")
            return
        h = self._band_height(len(bands))
        width = self.width() - 4
        painter.setPen(Qt.PenStyle.NoPen)
        seen = self.view.mapToScene(self.view.viewport().rect()).boundingRect()
        visible = [i for i, item in enumerate(bands) if seen.contains(item.pos())]
        for i, item in enumerate(bands):
            y = 2 + i * h
            painter.setBrush(item.fill)
            painter.drawRect(QRectF(2, y, width, max(h - (1 if h > 4 else 0), _MIN_PX)))
            if item.latency is not None:
                length = max(item.latency[1] * width * 0.4, 1.0)
                painter.setBrush(_LATENCY)
                painter.drawRect(QRectF(2 + width - length, y + h * 0.25, length, max(h * 0.5, 1.0)))
        for i, item in enumerate(bands):
            if item.isSelected():
                painter.setBrush(Qt.BrushStyle.NoBrush)
                painter.setPen(QPen(QColor("#ff7f0e"), 2))
                painter.drawRect(QRectF(1, 2 + i * h - 1, width + 2, max(h, _MIN_PX) + 2))
        if visible:
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.setPen(QPen(_FRAME, 1.5))
            top, bottom = 2 + visible[0] * h, 2 + (visible[-1] + 1) * h
            painter.drawRect(QRectF(1, top - 1, width + 2, max(bottom - top, 3.0) + 2))

    def layer_at(self, pos: QPointF) -> Any:
        """The layer item of the band under widget position ``pos`` (None without layers)."""
        bands = self.bands()
        if not bands:
            return None
        row = int((pos.y() - 2) / self._band_height(len(bands)))
        return bands[min(max(row, 0), len(bands) - 1)]

    def mousePressEvent(self, event: Any) -> None:  # noqa: N802 - Qt override
        self._move_view(event.position())

    def mouseMoveEvent(self, event: Any) -> None:  # noqa: N802 - Qt override
        if event.buttons() & Qt.MouseButton.LeftButton:
            self._move_view(event.position())

    def _move_view(self, pos: QPointF) -> None:
        item = self.layer_at(pos)
        if item is not None:
            self.view.centerOn(item)
            self.render()

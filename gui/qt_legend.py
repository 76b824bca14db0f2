"""The legend of the graph view: the colour-mode chooser and a colour bar (or swatches for categories).

It listens to ``QtGraphView.coloured``; the bar is a pyqtgraph ``ColorBarItem`` with the same colour
map the view paints with, so the two always agree. A second line explains the latency bar under each
layer (its full length is the slowest layer's time), so the fill and the bar read together.
"""

from __future__ import annotations

import logging
from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox, QGridLayout, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from gui.colour_modes import MODES
from gui.graph_items import BAR_COLOUR
from gui.qt_graph_view import COLORMAP, QtGraphView

__all__ = ["QtLegend"]

logger = logging.getLogger(__name__)


class QtLegend(QWidget):
    """Colour mode combo + what the colours mean for ``view``."""

    def __init__(self, view: QtGraphView, parent: Any = None) -> None:
        super().__init__(parent)
        self.view = view
        self.combo = QComboBox()
        for mode, label in MODES.items():
            self.combo.addItem(label, mode)
        self.combo.setToolTip("what the node colours show")
        self.combo.currentIndexChanged.connect(lambda _: view.set_colour_mode(self.combo.currentData()))
        self.text = QLabel()
        self.text.setWordWrap(True)
        self.text.setTextFormat(Qt.TextFormat.PlainText)
        self._plot = pg.GraphicsLayoutWidget()
        self._plot.setBackground(None)
        self._plot.setFixedHeight(58)
        self._bar = pg.ColorBarItem(values=(0, 1), colorMap=pg.colormap.get(COLORMAP), orientation="horizontal",
                                    interactive=False, width=14)
        self._plot.addItem(self._bar)
        top = QHBoxLayout()
        top.addWidget(QLabel("Colour:"))
        top.addWidget(self.combo, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 4, 6, 4)
        layout.addLayout(top)
        layout.addWidget(self._plot)
        layout.addWidget(self.text)
        self.latency_text = QLabel()
        self.latency_text.setWordWrap(True)
        self.latency_text.setTextFormat(Qt.TextFormat.RichText)
        layout.addWidget(self.latency_text)
        self._swatches = QWidget()
        self._swatch_grid = QGridLayout(self._swatches)
        self._swatch_grid.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self._swatches)
        view.coloured.connect(self.show_colours)
        self.show_colours({"values": None, "lo": None, "hi": None, "categories": {}})

    def set_mode(self, mode: str) -> None:
        self.combo.setCurrentIndex(list(MODES).index(mode))

    def show_colours(self, info: dict) -> None:
        values = info["values"]
        slowest = info.get("latency")
        self.latency_text.setText(
            f'<span style="background:{BAR_COLOUR.name()}">&nbsp;&nbsp;&nbsp;&nbsp;</span> bar under each layer: '
            f"its latency; a full bar is the slowest layer, {slowest:.3g} ms" if slowest else "")
        self.latency_text.setVisible(bool(slowest))
        mode = self.view.colour_mode
        if self.combo.currentData() != mode:
            self.combo.blockSignals(True)
            self.combo.setCurrentIndex(list(MODES).index(mode))
            self.combo.blockSignals(False)
        if values is not None and info["lo"] is not None:
            lo, hi = info["lo"], info["hi"]
            if hi <= lo:
                hi = lo + 1e-9
            self._bar.setLevels((lo, hi))
            self._plot.show()
            self._set_swatches({})
            shown = (10 ** lo, 10 ** hi) if values.log_scale else (lo, hi)
            scale = f"log10 of {values.unit}: " if values.log_scale else f"{values.unit}: "
            what = MODES[values.mode].lower()
            missing = (f"\nhatched, dashed grey border: {len(values.unmeasured)} layer(s) not measured "
                       f"(a cancelled run; measure again to fill them in)" if values.unmeasured else "")
            self.text.setText(f"fill: {what}; {scale}{len(values.values)} nodes, "
                              f"{shown[0]:.4g} – {shown[1]:.4g} {values.unit}{missing}")
            return
        self._plot.hide()
        self._set_swatches(info["categories"])
        if info["categories"]:
            self.text.setText("")
        else:
            self.text.setText(values.missing if values is not None else "no model")

    def _set_swatches(self, categories: dict) -> None:
        while self._swatch_grid.count():
            widget = self._swatch_grid.takeAt(0).widget()
            if widget is not None:  # hide now: deleteLater alone leaves the old swatch drawn beside the new one
                widget.hide()
                widget.setParent(None)
                widget.deleteLater()
        for i, (name, colour) in enumerate(categories.items()):
            swatch = QLabel()
            swatch.setFixedSize(16, 12)
            swatch.setStyleSheet(f"background: {colour.name()}; border: 1px solid #777;")
            row, col = divmod(i, 2)
            self._swatch_grid.addWidget(swatch, row, 2 * col)
            self._swatch_grid.addWidget(QLabel(name), row, 2 * col + 1)
        self._swatches.setVisible(bool(categories))

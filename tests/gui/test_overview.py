"""The overview strip: one band per layer in its colour, latency ticks, a click moves the view."""

from __future__ import annotations

from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QColor


def test_overview_is_a_heat_strip_of_the_layers(window, qtbot) -> None:
    overview, view, graph = window.overview, window.graph_view, window.session.graph
    assert window.overview_dock.isVisible()
    overview.resize(100, 400)
    view.resize(400, 300)
    assert [b.name for b in overview.bands()] == [n.name for n in graph.layers]  # ops are not bands
    last = view.items[graph.layers[-1].name]
    last.set_look(QColor("#ff0000"))
    overview.render()
    image = overview.grab().toImage()
    band = (overview.height() - 4) / len(graph.layers)
    y = round(2 + (len(graph.layers) - 0.5) * band)
    assert image.pixelColor(10, y).name() == "#ff0000"  # the last band, full width readable
    view.centerOn(view.items[graph.nodes[0].name])
    qtbot.mouseClick(overview, Qt.MouseButton.LeftButton, pos=QPointF(50, y).toPoint())
    seen = view.mapToScene(view.viewport().rect()).boundingRect()
    assert seen.contains(last.pos()) and overview.layer_at(QPointF(50, y)) is last
    assert not seen.contains(view.items[graph.nodes[0].name].pos())  # it moved from the top


def test_many_renders_do_not_crash_the_interpreter(window) -> None:
    """PySide6 6.12 aborted after ~3,000 paints of a Python paintEvent; the strip paints a QImage instead."""
    for _ in range(4000):
        window.overview.render()
    assert not window.overview.pixmap().isNull()

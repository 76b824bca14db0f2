"""The overview strip: every node in its colour, the visible part framed, a click moves the view."""

from __future__ import annotations

from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QColor


def test_overview_paints_the_colours_and_moves_the_view(window, qtbot) -> None:
    overview, view = window.overview, window.graph_view
    assert window.overview_dock.isVisible() and len(view.items) == len(window.session.graph.nodes)
    overview.resize(100, 400)
    view.resize(400, 300)
    item = view.items[window.session.graph.layers[-1].name]
    item.set_look(QColor("#ff0000"))
    overview.render()
    image = overview.grab().toImage()
    rect, sx, sy = overview._mapping()
    x = round(2 + (item.pos().x() - rect.left()) * sx)
    y = round(2 + (item.pos().y() - rect.top()) * sy)
    assert image.pixelColor(x, y).name() == "#ff0000"  # the box, stretched to the strip
    view.centerOn(view.items[window.session.graph.nodes[0].name])
    before = view.mapToScene(view.viewport().rect().center())
    qtbot.mouseClick(overview, Qt.MouseButton.LeftButton, pos=overview.rect().center() + QPointF(0, 150).toPoint())
    after = view.mapToScene(view.viewport().rect().center())
    assert after.y() > before.y()  # moved down the graph
    target = overview.scene_point(QPointF(overview.rect().center() + QPointF(0, 150).toPoint()))
    assert abs(after.y() - target.y()) < view.viewport().height()


def test_many_renders_do_not_crash_the_interpreter(window) -> None:
    """PySide6 6.12 aborted after ~3,000 paints of a Python paintEvent; the strip paints a QImage instead."""
    for _ in range(4000):
        window.overview.render()
    assert not window.overview.pixmap().isNull()

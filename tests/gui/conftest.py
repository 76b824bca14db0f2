"""GUI fixtures: a window with its own temporary QSettings file, and a session holding the digits model."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("pytestqt")


@pytest.fixture
def settings(tmp_path: Path):
    from PySide6.QtCore import QSettings

    return QSettings(str(tmp_path / "layerlab.ini"), QSettings.Format.IniFormat)


@pytest.fixture(scope="session")
def digits_graph(digits_model: Path):
    from engine.ir.graph import load_model
    from engine.jobs.layer_facts import layer_facts
    from engine.progress import run
    from gui.layer_options import store_facts

    graph = load_model(digits_model, {"input": (1, 1, 8, 8)})
    store_facts(run(layer_facts(graph)))  # what the window's layer-options job delivers, without a worker
    return graph


@pytest.fixture
def session(digits_model: Path, digits_graph):
    from engine.model.plan import Plan
    from engine.model.session import Session

    s = Session()
    s.set_model(digits_model, digits_graph, {"input": (1, 1, 8, 8)})
    s.set_plan(Plan())
    return s


@pytest.fixture
def window(qtbot, session, settings):
    from gui.qt_main_window import QtMainWindow

    w = QtMainWindow(session, settings)
    qtbot.addWidget(w)
    w.show()
    return w


@pytest.fixture(autouse=True)
def _collect_qt_garbage(qapp):
    """Collect each test's widgets while Qt is alive: pyqtgraph items left to interpreter exit can crash it."""
    import gc

    yield
    qapp.processEvents()
    gc.collect()


@pytest.fixture(scope="session", autouse=True)
def _delete_widgets_before_exit(qapp):
    """Delete what is left while Qt is alive, so nothing is torn down during interpreter exit."""
    import gc

    yield
    for widget in qapp.topLevelWidgets():
        widget.deleteLater()
    qapp.processEvents()
    gc.collect()
    gc.freeze()  # PySide6 6.x can crash collecting its wrappers during interpreter exit; leave them be

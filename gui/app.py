"""Start the explorer: a QApplication, a session and the main window; optionally a screenshot and exit.

``layerlab gui`` calls ``run_app``; with ``screenshot`` it waits until the window's jobs (loading the
model) have finished, saves ``window.grab()`` as a PNG and exits, which is how CI and the docs take
pictures of the window.
"""

from __future__ import annotations

import gc
import tempfile
import logging
import sys
from pathlib import Path

from PySide6.QtCore import QSettings, QTimer
from PySide6.QtWidgets import QApplication

from engine.model.session import Session
from gui.qt_main_window import APPLICATION, ORGANIZATION, QtMainWindow

__all__ = ["run_app"]

logger = logging.getLogger(__name__)

_SCREENSHOT_TIMEOUT_MS = 300_000


def run_app(model: Path | None = None, input_shapes: dict[str, tuple[int, ...]] | None = None,
            evaluator: Path | None = None, screenshot: Path | None = None, colour: str | None = None,
            dims: dict[str, int] | None = None, given_by: str = "with --input") -> int:
    """Show the window (loading ``model`` when given) and run the event loop; returns the exit code.
    ``given_by``: how ``input_shapes`` were given (on the command line, an example's default)."""
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setOrganizationName(ORGANIZATION)
    app.setApplicationName(APPLICATION)
    settings = None
    if screenshot is not None:  # the same picture whatever layout the user saved last time, and none saved
        scratch = tempfile.mkdtemp(prefix="layerlab-shot-")
        settings = QSettings(str(Path(scratch) / "layerlab.ini"), QSettings.Format.IniFormat)
    window = QtMainWindow(Session(), settings)
    if screenshot is not None:
        window.files.timer.stop()  # a picture leaves no autosave behind and asks nothing
        window.files.ask = lambda *_: False
        window.resize(1400, 900)  # the same picture whatever layout was saved last time
    window.show()
    if colour is not None:
        window.graph_view.set_colour_mode(colour)
    if evaluator is not None:
        window.open_evaluator(evaluator)
    if model is not None:
        window.open_model(model, input_shapes, dims, given_by=given_by)
    if screenshot is None:
        code = app.exec()
        _dispose(app, window)
        return code

    result = {"code": 0}
    waited = {"ms": 0}

    def shoot() -> None:
        waited["ms"] += 200
        if window.busy() and waited["ms"] < _SCREENSHOT_TIMEOUT_MS:
            QTimer.singleShot(200, shoot)
            return
        if window.busy():
            window.cancel_job()
            print(f"layerlab gui: still busy after {_SCREENSHOT_TIMEOUT_MS // 1000} s; screenshot taken anyway",
                  file=sys.stderr)
        if window.last_error:
            print(f"layerlab gui: {window.last_error}", file=sys.stderr)
            result["code"] = 2
        app.processEvents()
        if not window.grab().save(str(screenshot)):
            print(f"layerlab gui: cannot write {screenshot}", file=sys.stderr)
            result["code"] = 2
        else:
            print(f"saved {screenshot}")
        window.close()
        app.quit()

    QTimer.singleShot(300, shoot)  # give the first job a moment to start and the window to lay out
    app.exec()
    _dispose(app, window)
    return result["code"]


def _dispose(app: QApplication, window: QtMainWindow) -> None:
    """Delete the window while Qt is still alive: pyqtgraph items collected at interpreter exit can crash it."""
    window.deleteLater()
    app.processEvents()
    del window
    gc.collect()

"""Show the model (or the current plan's variant) in Netron, served by the ``netron`` package on localhost.

Netron's server runs in a daemon thread of this process, so the window never waits on it. With
``PySide6.QtWebEngineWidgets`` (``pip install layerlab[web]``) the page shows in a "Netron" dock;
without it the system browser opens the URL. The variant is built and saved to a temporary file
by an engine job (``engine.jobs.catalogue.export_plan_job``) in the worker, like Measure builds it.
Netron keeps one model per process (its handler class holds the content), so showing a model
stops the server of the previous one.
"""

from __future__ import annotations

import importlib.util
import logging
import tempfile
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Qt, QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import QDockWidget

from engine.jobs import catalogue

__all__ = ["QtNetron", "serve", "stop", "web_engine_available", "HOST"]

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"  # never reachable from other machines


def web_engine_available() -> bool:
    """True when the embedded view can be built (PySide6-Addons' QtWebEngineWidgets imports)."""
    try:
        return importlib.util.find_spec("PySide6.QtWebEngineWidgets") is not None
    except (ImportError, ValueError):
        return False


def serve(path: str | Path) -> tuple[tuple[str, int], str]:
    """Serve ``path`` with Netron on a free localhost port; returns the address and the URL."""
    import netron

    address = netron.serve(str(path), None, address=(HOST, 0), browse=False)
    return address, f"http://{address[0]}:{address[1]}"


def stop(address: tuple[str, int] | None) -> None:
    """Stop the Netron server at ``address`` (nothing when None)."""
    if address is not None:
        import netron

        netron.stop(address)


class QtNetron(QObject):
    """The View menu's Netron actions for ``window``; ``url`` is what is served now (None: nothing)."""

    def __init__(self, window: Any) -> None:
        super().__init__(window)
        self.window = window
        self.address: tuple[str, int] | None = None
        self.url: str | None = None
        self.dock: Any = None
        self.embedded = web_engine_available()
        self._tmp = tempfile.TemporaryDirectory(prefix="layerlab-netron-")

    def add_actions(self, menu: Any) -> None:
        """Add "Open in Netron", "Open current variant in Netron" (and the hint when there is no embedded view)."""
        self.original_action = menu.addAction("Open in &Netron")
        self.original_action.triggered.connect(lambda *_: self.open_original())
        self.variant_action = menu.addAction("Open current &variant in Netron")
        self.variant_action.triggered.connect(lambda *_: self.open_variant())
        if not self.embedded:
            menu.addAction("Embedded Netron view needs: pip install layerlab[web]").setEnabled(False)

    def open_original(self) -> str | None:
        """Show the model file as it is on disk."""
        path = self.window.session.model_path
        if path is None or self.window.session.graph is None:
            self.window.set_status("Open a model first.")
            return None
        return self.show(Path(path), Path(path).name)

    def open_variant(self) -> Any:
        """Build the current plan's variant in the worker, then show it; returns the job."""
        window, session = self.window, self.window.session
        if session.graph is None or session.model_path is None:
            window.set_status("Open a model first.")
            return None
        from engine.model.plan import Plan

        plan = session.plan if session.plan is not None else Plan()
        prediction = window.live.predict_now()  # usually there already (computed at the last plan change)
        routines = dict(prediction.routines) if prediction is not None else {}
        out = Path(self._tmp.name) / f"{Path(session.model_path).stem}.variant.onnx"
        kwargs = {"path": str(session.model_path), "input_shapes": dict(session.input_shapes), "plan": plan.to_dict(),
                  "routines": routines, "out_path": str(out),
                  "evaluator": str(session.evaluator_path) if session.evaluator_path and session.evaluator_trusted else None}
        return window.run_job(catalogue.EXPORT_PLAN, kwargs, "Building the variant for Netron",
                              lambda saved: self.show(Path(saved), f"{Path(session.model_path).name} (variant)"),
                              kind="netron")

    def show(self, path: Path, title: str) -> str:
        """Serve ``path`` (stopping the previous server) and show it: embedded dock, else the browser."""
        stop(self.address)
        self.address, self.url = serve(path)
        logger.info("Netron: %s at %s", path, self.url)
        if self.embedded:
            self._show_embedded(title)
        else:
            QDesktopServices.openUrl(QUrl(self.url))
        self.window.set_status(f"Netron: {title} at {self.url}")
        return self.url

    def _show_embedded(self, title: str) -> None:
        from PySide6.QtWebEngineWidgets import QWebEngineView

        if self.dock is None:
            self.dock = QDockWidget("Netron", self.window)
            self.dock.setObjectName("dock_netron")  # saveState needs stable names
            self.dock.setWidget(QWebEngineView())
            self.window.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.dock)
            self.window.tabifyDockWidget(self.window.charts_dock, self.dock)
        self.dock.setWindowTitle(f"Netron — {title}")
        self.dock.widget().setUrl(QUrl(self.url))
        self.dock.show()
        self.dock.raise_()

    def close(self) -> None:
        """Stop the server and remove the temporary variant files."""
        stop(self.address)
        self.address = self.url = None
        self._tmp.cleanup()

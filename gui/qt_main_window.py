"""The explorer window: the graph view in the middle, inspector and legend in docks, jobs in the status bar.

Opening a model loads it in a worker process (``engine.graph:load_model``), so a broken file or a
native crash ends with a message, never with the window. Dock layout and recent files live in
QSettings (tests pass their own QSettings file).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

from PySide6.QtCore import QSettings, Qt
from PySide6.QtGui import QAction, QKeySequence, QUndoStack
from PySide6.QtWidgets import QDockWidget, QFileDialog, QLabel, QMainWindow, QMessageBox, QScrollArea

from engine.plan import Plan
from gui.colour_modes import MODES
from gui.qt_graph_view import QtGraphView
from gui.qt_inspector import QtInspector
from gui.qt_job_status import QtJobStatus
from gui.qt_legend import QtLegend
from gui.qt_worker import QtWorker

__all__ = ["QtMainWindow", "ORGANIZATION", "APPLICATION"]

logger = logging.getLogger(__name__)

ORGANIZATION = "LayerLab"
APPLICATION = "LayerLab"
_MAX_RECENT = 8


class QtMainWindow(QMainWindow):
    """The main window for ``session``."""

    def __init__(self, session: Any, settings: QSettings | None = None) -> None:
        super().__init__()
        self.session = session
        self.settings = settings if settings is not None else QSettings(ORGANIZATION, APPLICATION)
        self.undo_stack = QUndoStack(self)
        self.job: QtWorker | None = None
        self.last_error = ""
        self.setObjectName("LayerLabMainWindow")
        self.setAcceptDrops(True)
        self.resize(1400, 900)

        self.graph_view = QtGraphView(session)
        self.setCentralWidget(self.graph_view)
        self.inspector = QtInspector(session, self.undo_stack)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.inspector)
        self.inspector_dock = self._dock("Inspector", scroll, Qt.DockWidgetArea.RightDockWidgetArea)
        self.legend = QtLegend(self.graph_view)
        self.legend_dock = self._dock("Legend", self.legend, Qt.DockWidgetArea.RightDockWidgetArea)
        self.splitDockWidget(self.legend_dock, self.inspector_dock, Qt.Orientation.Vertical)
        self.resizeDocks([self.legend_dock, self.inspector_dock], [130, 700], Qt.Orientation.Vertical)
        self.resizeDocks([self.inspector_dock], [380], Qt.Orientation.Horizontal)

        self.status_text = QLabel()
        self.job_status = QtJobStatus()
        self.statusBar().addWidget(self.status_text, 1)
        self.statusBar().addPermanentWidget(self.job_status)
        self._build_menus()

        self._callbacks = {"model": lambda _: self._update_title(), "dirty": lambda _: self._update_title(),
                           "evaluator": lambda _: self._update_title()}
        for name, callback in self._callbacks.items():
            getattr(session.events, name).connect(callback)
        self._restore_layout()
        self._update_title()
        self.set_status("Open a model (File ▸ Open, Ctrl+O) or drop an .onnx file here.")

    def _dock(self, title: str, widget: Any, area: Qt.DockWidgetArea) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(f"dock_{title.lower()}")  # saveState needs stable names
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    def _action(self, menu: Any, text: str, slot: Callable, shortcut: Any = None) -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        action.triggered.connect(lambda *_: slot())
        menu.addAction(action)
        return action

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        self._action(file_menu, "&Open model…", self._ask_model, QKeySequence.StandardKey.Open)
        self.recent_menu = file_menu.addMenu("Open &recent")
        self._action(file_menu, "Open &evaluator…", self._ask_evaluator, "Ctrl+E")
        file_menu.addSeparator()
        self._action(file_menu, "&Quit", self.close, QKeySequence.StandardKey.Quit)
        edit_menu = bar.addMenu("&Edit")
        undo = self.undo_stack.createUndoAction(self, "&Undo")
        undo.setShortcut(QKeySequence.StandardKey.Undo)
        redo = self.undo_stack.createRedoAction(self, "&Redo")
        redo.setShortcuts([QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")])
        edit_menu.addActions([undo, redo])
        view_menu = bar.addMenu("&View")
        self._action(view_menu, "&Fit graph (F)", self.graph_view.fit)
        self._action(view_menu, "Zoom &in (Ctrl+=)", lambda: self.graph_view.zoom(1.25))
        self._action(view_menu, "Zoom &out (Ctrl+-)", lambda: self.graph_view.zoom(0.8))
        self._action(view_menu, "F&ind node… (Ctrl+F)", self.graph_view.show_search)
        colour_menu = view_menu.addMenu("&Colour by")
        for mode, label in MODES.items():
            self._action(colour_menu, label, lambda m=mode: self.graph_view.set_colour_mode(m))
        view_menu.addSeparator()
        view_menu.addAction(self.inspector_dock.toggleViewAction())
        view_menu.addAction(self.legend_dock.toggleViewAction())
        self.cancel_action = self._action(bar.addMenu("&Jobs"), "&Cancel running job", self.cancel_job)
        self._rebuild_recent()

    # --- opening --------------------------------------------------------------------------------

    def _ask_model(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open ONNX model", self._last_dir(), "ONNX models (*.onnx)")
        if path:
            self.open_model(Path(path))

    def _ask_evaluator(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open evaluator", self._last_dir(),
                                              "Evaluators (*.py *.npz);;All files (*)")
        if path:
            self.open_evaluator(Path(path))

    def _last_dir(self) -> str:
        recent = self.recent_files()
        return str(Path(recent[0]).parent) if recent else str(Path.home())

    def open_model(self, path: Path, input_shapes: dict[str, tuple[int, ...]] | None = None) -> QtWorker:
        """Load ``path`` in a worker process; the session gets the graph when it is ready."""
        path = Path(path)
        shapes = dict(input_shapes or {})
        job = self.run_job("engine.graph:load_model", {"path": str(path), "input_shapes": shapes},
                           f"Loading {path.name}", lambda graph: self._model_loaded(path, graph, shapes))
        return job

    def _model_loaded(self, path: Path, graph: Any, shapes: dict[str, tuple[int, ...]]) -> None:
        self.undo_stack.clear()  # edits of the previous model cannot be undone into this one
        self.session.set_model(path, graph, shapes)
        self.session.set_plan(Plan())
        self._add_recent(path)
        self.set_status(f"{path.name}: {len(graph.nodes)} nodes, {len(graph.layers)} layers")

    def open_evaluator(self, path: Path) -> None:
        """Remember the evaluator; it runs only when a job needs it (and the user agreed)."""
        self.session.set_evaluator(Path(path))
        self.set_status(f"evaluator: {Path(path).name}")

    # --- jobs -----------------------------------------------------------------------------------

    def run_job(self, target: str, kwargs: dict[str, Any], label: str,
                on_result: Callable[[Any], None]) -> QtWorker:
        """Start an engine job in a worker process (cancelling the one running); ``on_result`` gets its result."""
        self.cancel_job()
        job = QtWorker(target, kwargs, label, parent=self)
        job.finished.connect(lambda result: self._job_finished(job, on_result, result))
        job.errored.connect(lambda message, detail: self.show_error(f"{label} failed: {message}", detail))
        job.cancelled.connect(lambda _: self.set_status(f"{label}: cancelled"))
        job.ended.connect(lambda: self._job_ended(job))
        self.job = job
        self.job_status.attach(job)
        job.start()
        self.set_status(f"{label}…")
        return job

    def _job_finished(self, job: QtWorker, on_result: Callable[[Any], None], result: Any) -> None:
        try:
            on_result(result)
        except Exception as exc:  # a bad result must not take the window down
            logger.exception("handling the result of %s failed", job.label)
            self.show_error(f"{job.label}: {exc}", "")

    def _job_ended(self, job: QtWorker) -> None:
        if self.job is job:
            self.job = None

    def cancel_job(self) -> None:
        if self.job is not None and self.job.running:
            self.job.cancel()

    def busy(self) -> bool:
        return self.job is not None and self.job.running

    # --- status and errors ---------------------------------------------------------------------

    def set_status(self, text: str) -> None:
        self.status_text.setText(text)

    def show_error(self, message: str, detail: str = "") -> None:
        """One line in the status bar and a (non-blocking) message box; the window carries on."""
        self.last_error = message
        self.set_status(message)
        logger.warning("%s", message)
        box = QMessageBox(QMessageBox.Icon.Warning, "LayerLab", message, QMessageBox.StandardButton.Ok, self)
        if detail:
            box.setDetailedText(detail)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()

    def _update_title(self) -> None:
        path = self.session.model_path
        name = path.name if path is not None and self.session.graph is not None else "no model"
        star = "*" if self.session.dirty and self.session.graph is not None else ""
        self.setWindowTitle(f"{name}{star} — LayerLab")

    # --- recent files, drag and drop, layout -----------------------------------------------------

    def recent_files(self) -> list[str]:
        value = self.settings.value("recent", [])
        if isinstance(value, str):  # QSettings returns a lone entry as a string
            value = [value]
        return [str(v) for v in (value or [])]

    def _add_recent(self, path: Path) -> None:
        entry = str(Path(path).resolve())
        recent = [entry] + [p for p in self.recent_files() if p != entry]
        self.settings.setValue("recent", recent[:_MAX_RECENT])
        self._rebuild_recent()

    def _rebuild_recent(self) -> None:
        self.recent_menu.clear()
        for entry in self.recent_files():
            self._action(self.recent_menu, entry, lambda e=entry: self.open_model(Path(e)))
        self.recent_menu.setEnabled(bool(self.recent_files()))

    @staticmethod
    def _onnx_paths(event: Any) -> list[Path]:
        urls = event.mimeData().urls() if event.mimeData().hasUrls() else []
        return [Path(u.toLocalFile()) for u in urls if u.isLocalFile() and u.toLocalFile().lower().endswith(".onnx")]

    def dragEnterEvent(self, event: Any) -> None:  # noqa: N802 - Qt override
        if self._onnx_paths(event):
            event.acceptProposedAction()

    def dropEvent(self, event: Any) -> None:  # noqa: N802 - Qt override
        paths = self._onnx_paths(event)
        if paths:
            event.acceptProposedAction()
            self.open_model(paths[0])

    def _restore_layout(self) -> None:
        geometry = self.settings.value("window/geometry")
        state = self.settings.value("window/state")
        if geometry is not None:
            self.restoreGeometry(geometry)
        if state is not None:
            self.restoreState(state)

    def save_layout(self) -> None:
        self.settings.setValue("window/geometry", self.saveGeometry())
        self.settings.setValue("window/state", self.saveState())
        self.settings.sync()

    def closeEvent(self, event: Any) -> None:  # noqa: N802 - Qt override
        self.save_layout()
        if self.job is not None and self.job.running:
            self.job.cancel()
            self.job.wait(timeout=2.0)  # do not leave a worker process behind
        for name, callback in self._callbacks.items():
            getattr(self.session.events, name).disconnect(callback)
        self.graph_view.close_view()
        self.inspector.close_view()
        super().closeEvent(event)

"""The explorer window: the graph view in the middle, inspector and legend in docks, jobs in the status bar.

Every job runs in the window's one worker process (``gui.qt_worker``), named in
``engine.jobs.catalogue``; opening a model loads it there too, so a broken file or a native crash
ends with a message, never with the window, and later jobs on the model find it loaded. Dock layout and recent files live in
QSettings (tests pass their own QSettings file).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

from PySide6.QtCore import QSettings, Qt
from PySide6.QtGui import QAction, QKeySequence, QUndoStack
from PySide6.QtWidgets import QDockWidget, QFileDialog, QLabel, QMainWindow, QMessageBox, QScrollArea

from engine.jobs import catalogue
from engine.model.plan import Plan
from gui.colour_modes import MODES
from gui.netron_view import QtNetron
from gui.plan_commands import SetPlanCommand
from gui.qt_graph_view import QtGraphView
from gui.qt_inspector import QtInspector
from gui.qt_overview import QtOverview
from gui.qt_plan_controls import QtPlanControls
from gui.qt_shape_dialog import ask_shapes, shapes_label
from gui.qt_shapes import QtShapes
from gui.qt_job_status import QtJobStatus
from gui.qt_legend import QtLegend
from gui.qt_charts import QtCharts
from gui.qt_file_actions import EXPORTS, QtFileActions
from gui.qt_live_engine import QtLiveEngine
from gui.qt_status import QtStatus
from gui.qt_jobs import QtJobRunner
from gui.qt_target_menu import QtTargetMenu
from gui.qt_worker import QtJob, QtWorker
from gui.watchdog import install_from_env
from gui.session_links import connect_view

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
        self.watchdog = install_from_env(self)  # LAYERLAB_STALL_LOG=FILE logs event-loop stalls
        self._shown = False
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
        self.overview = QtOverview(self.graph_view)
        self.overview_dock = self._dock("Overview", self.overview, Qt.DockWidgetArea.LeftDockWidgetArea)
        self.resizeDocks([self.overview_dock], [110], Qt.Orientation.Horizontal)
        self.legend = QtLegend(self.graph_view)
        self.legend_dock = self._dock("Legend", self.legend, Qt.DockWidgetArea.RightDockWidgetArea)
        self.splitDockWidget(self.legend_dock, self.inspector_dock, Qt.Orientation.Vertical)
        self.resizeDocks([self.legend_dock, self.inspector_dock], [130, 700], Qt.Orientation.Vertical)
        self.resizeDocks([self.inspector_dock], [380], Qt.Orientation.Horizontal)

        self.live = QtLiveEngine(session, self.run_job, self.undo_stack.push, self.set_status, self)
        self.undo_stack.indexChanged.connect(self._undo_moved)
        self.files = QtFileActions(self)
        self.netron = QtNetron(self)
        self.results = QtStatus(session, lambda: self.live.prediction)
        self.results_dock = self._dock("Results", self.results, Qt.DockWidgetArea.BottomDockWidgetArea)
        self.charts = QtCharts(session, self._restore_trial)
        self.charts_dock = self._dock("Charts", self.charts, Qt.DockWidgetArea.BottomDockWidgetArea)
        self.splitDockWidget(self.results_dock, self.charts_dock, Qt.Orientation.Horizontal)
        self.resizeDocks([self.results_dock, self.charts_dock], [330, 700], Qt.Orientation.Horizontal)
        self.resizeDocks([self.results_dock], [230], Qt.Orientation.Vertical)

        self.status_text = QLabel()
        self.job_status = QtJobStatus()
        self.shapes = QtShapes(session)  # the shapes and their provenance outlive every status message
        self.statusBar().addWidget(self.status_text, 1)
        self.statusBar().addPermanentWidget(self.shapes)
        self.statusBar().addPermanentWidget(self.job_status)
        self.jobs = QtJobRunner(QtWorker(self), self.job_status, self.results.set_pending, self.set_status,
                                self.status_text.text, self.show_error, self)
        self._build_menus()
        self.inspector.attach_jobs(self.run_job)

        self._callbacks = {"model": lambda _: self._update_title(), "dirty": lambda _: self._update_title(),
                           "evaluator": lambda _: self._update_title(), "plan": lambda _: self.plan_controls.sync()}
        self._links = connect_view(session.events, self._callbacks, "window")
        self._restore_layout()
        self._update_title()
        self.set_status("Open a model (File ▸ Open, Ctrl+O) or drop an .onnx file here.")

    def showEvent(self, event: Any) -> None:  # noqa: N802 - Qt override
        super().showEvent(event)
        if not self._shown and self.settings.value("window/state") is None:
            # first run: keep the graph the biggest thing; resizeDocks only sticks once the window is laid out
            self.resizeDocks([self.results_dock], [220], Qt.Orientation.Vertical)
        self._shown = True

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
        self._action(file_menu, "Open &session…", self._open_session, "Ctrl+Shift+O")
        self._action(file_menu, "&Save session", self.files.save, QKeySequence.StandardKey.Save)
        self._action(file_menu, "Save session &as…", self.files.save_as, "Ctrl+Alt+S")
        export_menu = file_menu.addMenu("E&xport")
        for kind, (label, _, _) in EXPORTS.items():
            self._action(export_menu, label, lambda k=kind: self.files.export(k))
        file_menu.addSeparator()
        self._action(file_menu, "&Quit", self.close, QKeySequence.StandardKey.Quit)
        edit_menu = bar.addMenu("&Edit")
        undo = self.undo_stack.createUndoAction(self, "&Undo")
        undo.setShortcut(QKeySequence.StandardKey.Undo)
        redo = self.undo_stack.createRedoAction(self, "&Redo")
        redo.setShortcuts([QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")])
        edit_menu.addActions([undo, redo])
        edit_menu.addSeparator()
        self.plan_controls = QtPlanControls(self)
        self.ops_action, self.max_drop_box = self.plan_controls.ops_action, self.plan_controls.max_drop_box
        edit_menu.addAction(self.ops_action)
        view_menu = bar.addMenu("&View")
        self._action(view_menu, "&Fit graph (F)", self.graph_view.fit)
        self._action(view_menu, "Zoom &in (Ctrl+=)", lambda: self.graph_view.zoom(1.25))
        self._action(view_menu, "Zoom &out (Ctrl+-)", lambda: self.graph_view.zoom(0.8))
        self._action(view_menu, "F&ind node… (Ctrl+F)", self.graph_view.show_search)
        self.compact_action = self._action(view_menu, "&Layers only (ops folded into the edges)",
                                           self.graph_view.toggle_compact, "Ctrl+L")
        self.compact_action.setCheckable(True)
        self.graph_view.built.connect(lambda: self.compact_action.setChecked(self.graph_view.layers_only))
        colour_menu = view_menu.addMenu("&Colour by")
        for mode, label in MODES.items():
            self._action(colour_menu, label, lambda m=mode: self.graph_view.set_colour_mode(m))
        view_menu.addSeparator()
        self.netron.add_actions(view_menu)
        view_menu.addSeparator()
        view_menu.addAction(self.overview_dock.toggleViewAction())
        view_menu.addAction(self.inspector_dock.toggleViewAction())
        view_menu.addAction(self.legend_dock.toggleViewAction())
        view_menu.addAction(self.results_dock.toggleViewAction())
        view_menu.addAction(self.charts_dock.toggleViewAction())
        jobs_menu = bar.addMenu("&Jobs")
        toolbar = self.addToolBar("Jobs")
        toolbar.setObjectName("toolbar_jobs")
        self.profile_action = self._action(jobs_menu, "&Profile", self.live.profile, "Ctrl+P")
        self.sensitivity_action = self._action(jobs_menu, "&Sensitivity", self.live.sensitivity, "Ctrl+Shift+S")
        self.structural_action = self.plan_controls.structural_action
        jobs_menu.addAction(self.structural_action)
        self.tune_action = self._action(jobs_menu, "&Tune", self.live.tune, "Ctrl+T")
        self.tune_action.setToolTip("Choose a routine per layer within the max drop, build it and measure it")
        self.measure_action = self._action(jobs_menu, "&Measure", self.live.measure, "Ctrl+M")
        toolbar.addActions([self.profile_action, self.sensitivity_action, self.tune_action])
        toolbar.addWidget(self.max_drop_box)
        toolbar.addAction(self.measure_action)
        jobs_menu.addSeparator()
        self.cancel_action = self._action(jobs_menu, "&Cancel running job", self.cancel_job)
        self.targets = QtTargetMenu(self)  # where profiles run: this machine or a remote agent
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

    def open_model(self, path: Path, input_shapes: dict[str, tuple[int, ...]] | None = None,
                   dims: dict[str, int] | None = None, given_by: str = "with --input") -> QtJob:
        """Load ``path`` in a worker process; the session gets the graph when it is ready.

        Dims left open are resolved by ``engine.ir.resolve`` (``dims``, the evaluator, batch 1); any
        still open are asked in the shape dialog, never guessed. ``given_by``: how ``input_shapes``
        were given, for the notes on where the shapes came from (the session keeps them).
        """
        path = Path(path)
        shapes = dict(input_shapes or {})
        evaluator = self.session.evaluator_path if self.session.evaluator_trusted else None
        self.cancel_job(everything=True)  # jobs of the old model have nothing to say about the new one
        return self.run_job(catalogue.OPEN_MODEL,
                            {"path": str(path), "input_shapes": shapes, "dims": dict(dims or {}),
                             "evaluator": str(evaluator) if evaluator is not None else None, "given_by": given_by},
                            f"Loading {path.name}", lambda loaded: self._model_loaded(path, *loaded))

    def _model_loaded(self, path: Path, graph: Any, shapes: dict[str, tuple[int, ...]],
                      notes: list[str] | None = None, missing: dict | None = None) -> None:
        """``notes``: where each shape came from; the session keeps them and the status bar shows them."""
        if graph is None:  # dims nobody gave: ask, then open again at the answer
            self.set_status(f"{path.name}: input dims unknown ({', '.join(missing or {})}); give their sizes")
            self.shape_dialog = ask_shapes(self, path.name, missing or {}, shapes,
                                           lambda answer: self.open_model(path, answer, given_by="in the shape dialog"))
            return
        self.undo_stack.clear()  # edits of the previous model cannot be undone into this one
        self.session.set_model(path, graph, shapes, notes or [])
        self.session.set_plan(Plan())
        # Opening is not an edit: nothing is unsaved yet (Session has no "mark clean" without a path).
        self.session.dirty = False
        self.session.events.dirty.emit(False)
        self._add_recent(path)
        self.set_status(f"{path.name}: {len(graph.nodes)} nodes, {len(graph.layers)} layers; inputs "
                        f"{shapes_label({t.name: t.shape for t in graph.inputs})}" + "".join(f"; {n}" for n in notes or []))
        self.files.offer_model_recovery(path)
        self.live.model_opened()

    def _open_session(self) -> None:
        self.files.open_session()  # read in the background; session_opened follows

    def session_opened(self) -> None:
        """A session file was adopted: profile only what the file did not have."""
        self.live.model_opened()

    def open_evaluator(self, path: Path) -> None:
        """Remember the evaluator; it runs only when a job needs it (and the user agreed)."""
        self.session.set_evaluator(Path(path))
        self.set_status(f"evaluator: {Path(path).name}")

    # --- jobs -----------------------------------------------------------------------------------

    def run_job(self, name: str, kwargs: dict[str, Any], label: str, on_result: Callable[[Any], None],
                kind: str | None = None, on_partial: Callable[[Any], None] | None = None) -> QtJob:
        """Queue catalogue job ``name`` in the window's worker (see ``QtJobRunner.run``)."""
        return self.jobs.run(name, kwargs, label, on_result, kind, on_partial)

    @property
    def job(self) -> QtJob | None:
        """The job that runs now, if any."""
        return self.jobs.worker.current

    def cancel_job(self, everything: bool = False, keep: tuple[str, ...] = ()) -> None:
        """Cancel the running job; with ``everything`` the waiting ones are dropped too, but not jobs of a kind in ``keep``."""
        self.jobs.cancel(everything, keep)

    def busy(self) -> bool:
        """True while a job runs or waits, a file is read or written, or the prediction is computing."""
        return self.jobs.worker.busy() or self.files.busy() or self.live.predicting()

    def _undo_moved(self, _index: int) -> None:
        try:
            edited = self.undo_stack.count() > 0  # clear() (a new model) is not an edit
        except RuntimeError:  # the stack is being destroyed with the window
            return
        if edited:
            self.live.plan_edited()

    def _restore_trial(self, trial: Any) -> None:
        """Put a trial's plan back, as an undoable edit."""
        after = Plan.from_dict(trial.plan, trial.label or "trial")
        self.undo_stack.push(SetPlanCommand(self.session, self.session.plan, after, f"restore {trial.label or 'trial'}"))
        self.live.show_trial(trial)  # already measured: no need to measure it again

    # --- status and errors ---------------------------------------------------------------------

    def set_status(self, text: str) -> None:
        self.status_text.setText(text)

    def show_error(self, message: str, detail: str = "") -> None:
        """One line in the status bar and a (non-blocking) message box; the window carries on."""
        self.last_error = message
        self.set_status(message)
        logger.info("%s", message)  # shown in the window (and by `gui --screenshot`): not a second time in the log
        box = QMessageBox(QMessageBox.Icon.Warning, "LayerLab", message, QMessageBox.StandardButton.Ok, self)
        if detail:
            box.setDetailedText(detail)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()

    def _update_title(self) -> None:
        path = self.session.model_path
        name = path.name if path is not None and self.session.graph is not None else "no model"
        star = "*" if self.session.dirty and self.session.graph is not None else ""
        graph = self.session.graph
        shapes = f" [{shapes_label({t.name: t.shape for t in graph.inputs})}]" if graph is not None else ""
        self.setWindowTitle(f"{name}{shapes}{star} — LayerLab")

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
        self.live.close()
        self.netron.close()
        self.files.close()
        if self.watchdog is not None:
            self.watchdog.stop()
        self.jobs.close()  # do not leave a worker process behind
        self._links.disconnect()
        self.graph_view.close_view()
        self.inspector.close_view()
        self.results.close_view()
        self.shapes.close_view()
        self.charts.close_view()
        super().closeEvent(event)

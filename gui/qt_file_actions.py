"""File menu work: open/save session files, export report, model and CSV, autosave and recovery.

The engine does the work (``engine.io.session_file``, ``engine.report.write``, ``engine.report.export``); this module
asks for paths, turns errors into one-line messages, and copies a loaded session into the window's
session through its setters (the views stay subscribed to that one object).

Nothing slow runs on the GUI thread: the CSV, the plan and session files are written, and session files
read, on a background thread (``gui.qt_background.QtBackground``, which hands the result back on the GUI
thread); the reports (HTML, PDF) and the optimized model are written by engine jobs in worker processes
(``engine.jobs.catalogue.WRITE_REPORT``, ``EXPORT_PLAN``): drawing a PDF holds the GIL for seconds, which
on a thread of this process starved the GUI thread. Reports have a worker of their own, started on the
first report: in the window's worker they waited behind whatever ran (a sweep: minutes) and an open
dropped them. The optimized model, whose int8 calibration is real work, queues in the window's worker
like the other jobs, so it never runs beside a job that times things.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtWidgets import QFileDialog, QMessageBox

from engine.jobs import catalogue
from engine.errors import LayerLabError
from engine.model.session import Session
from engine.io.session_file import ModelMovedError, load_session, save_session
from engine.io.autosave import autosave, autosave_path, find_autosave, recover
from engine.report.export import write_layer_csv, write_plan
from gui.qt_background import QtBackground
from gui.qt_worker import QtJob, QtWorker

__all__ = ["QtFileActions", "AUTOSAVE_MS", "adopt", "EXPORTS"]

logger = logging.getLogger(__name__)

AUTOSAVE_MS = 60_000
_SESSION_FILTER = "LayerLab sessions (*.layerlab.json *.json)"

#: export kind -> (menu label, default file suffix, dialog filter)
EXPORTS: dict[str, tuple[str, str, str]] = {
    "report": ("&HTML report…", ".report.html", "HTML report (*.html)"),
    "pdf": ("&PDF report…", ".report.pdf", "PDF report (*.pdf)"),
    "model": ("Optimized &ONNX model…", ".optimized.onnx", "ONNX model (*.onnx)"),
    "plan": ("Plan &JSON…", ".plan.json", "Plan (*.json)"),
    "csv": ("Per-layer &CSV…", ".layers.csv", "CSV (*.csv)"),
}
_WRITERS: dict[str, Callable[[Session, Path], Path]] = {"plan": write_plan, "csv": write_layer_csv}


def adopt(target: Session, loaded: Session) -> None:
    """Make ``target`` hold what ``loaded`` holds, announcing each field; it ends clean (or dirty, if recovered)."""
    with target.batch():  # each view hears of each field once, with the whole session in place
        target.set_model(loaded.model_path, loaded.graph, loaded.input_shapes, loaded.shape_notes)
        target.set_evaluator(loaded.evaluator_path, trusted=loaded.evaluator_trusted)
        target.set_plan(loaded.plan)
        target.set_profile(loaded.profile)
        target.machine = loaded.machine  # set_profile assumed "measured here"; the file knows better
        target.set_sensitivity(loaded.sensitivity)
        target.set_route(loaded.route)
        target.set_baseline(loaded.baseline)
        for trial in loaded.trials:
            target.add_trial(trial)
        target.set_calibration(loaded.calibration)
        target.set_current(loaded.current)
        target.set_notes(loaded.notes)
    if loaded.path is not None and not loaded.dirty:
        target.mark_saved(loaded.path)
    else:
        target.path = loaded.path


class QtFileActions(QObject):
    """The File menu's actions for ``window``; ``ask(title, question) -> bool`` is replaceable in tests.

    Work runs in the background; ``done(what, result)`` follows each piece on the GUI thread, with the
    written path, True for an opened session, or None when it failed (the window shows why).
    """

    done = Signal(str, object)

    def __init__(self, window: Any) -> None:
        super().__init__(window)
        self.window = window
        self.session = window.session
        self.ask: Callable[[str, str], bool] = self._ask
        self.choose_file: Callable[[str, str, str, bool], str] = self._choose_file
        self.background = QtBackground(self, "layerlab-files")
        self._exports: set[QtJob] = set()  # the export jobs that wait or run in a worker
        self._reports: QtWorker | None = None  # the reports' own worker process, started on the first report
        self._report_paths: dict[QtJob, Path] = {}  # report jobs that wait or run -> the file each writes
        self.timer = QTimer(self)
        self.timer.setInterval(AUTOSAVE_MS)
        self.timer.timeout.connect(self.autosave_now)
        self.timer.start()

    def busy(self) -> bool:
        """True while a file is being read or written in the background (here or in the worker)."""
        return self.background.pending > 0 or bool(self._exports)

    def close(self) -> None:
        """Stop autosaving and let a file being written finish (the window calls this when it closes)."""
        self.timer.stop()
        self.background.shutdown(wait=True)
        if self._reports is not None:
            running = self._reports.current
            if running is not None:  # a report being drawn (a second or two) is finished, not lost
                self._reports.wait(running, timeout=10.0)
            self._reports.close(timeout=2.0)  # the process does not stay

    # --- dialogs (replaced in tests) ------------------------------------------------------------

    def _ask(self, title: str, question: str) -> bool:
        answer = QMessageBox.question(self.window, title, question)
        return answer == QMessageBox.StandardButton.Yes

    def _choose_file(self, title: str, start: str, filter_: str, save: bool) -> str:
        dialog = QFileDialog.getSaveFileName if save else QFileDialog.getOpenFileName
        return dialog(self.window, title, start, filter_)[0]

    def _start_dir(self, suffix: str = "") -> str:
        base = self.session.path or self.session.model_path
        if base is None:
            return str(Path.home())
        return str(Path(base).with_suffix(suffix)) if suffix else str(Path(base).parent)

    def _guard(self, what: str, work: Callable[[], Any]) -> Any:
        try:
            return work()
        except (LayerLabError, OSError) as exc:
            self._fail(what, exc)
            return None

    def _fail(self, what: str, exc: BaseException) -> None:
        if not isinstance(exc, (LayerLabError, OSError)):
            logger.error("%s failed", what, exc_info=exc)
        self.window.show_error(f"{what}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")

    def _in_background(self, what: str, work: Callable[[], Any], then: Callable[[Any], Any]) -> None:
        """Run ``work`` off the GUI thread; ``then(result)`` back on it; ``done(what, …)`` either way."""
        self.window.set_status(f"{what}…")

        def finished(result: Any, error: BaseException | None) -> None:
            if error is not None:
                self._fail(what, error)
                self.done.emit(what, None)
                return
            self.done.emit(what, then(result))

        self.background.submit(work, finished)

    # --- sessions -------------------------------------------------------------------------------

    def open_session(self, path: Path | None = None) -> bool:
        """Start opening a session file (offering its autosave when newer, and to locate a moved model).

        Returns False when no file was chosen; the file is read in the background and ``done("open", …)``
        tells how it went.
        """
        if path is None:
            chosen = self.choose_file("Open session", self._start_dir(), _SESSION_FILTER, False)
            if not chosen:
                return False
            path = Path(chosen)
        path = Path(path)
        if find_autosave(path) is not None and self.ask("Recover", f"{path.name} has unsaved work from an earlier "
                                                         "run. Recover it?"):
            self._in_background("open", lambda: recover(path), lambda loaded: self._opened(path, loaded))
        else:
            self._load(path)
        return True

    def _load(self, path: Path, model_path: Path | None = None) -> None:
        def failed(result: Any, error: BaseException | None) -> None:
            if error is None:
                self.done.emit("open", self._opened(path, result))
            elif isinstance(error, ModelMovedError) and model_path is None and self.ask(
                    "Model moved", f"{error}\nLocate the model?"):
                located = self.choose_file(f"Locate {error.expected_path.name}", str(path.parent),
                                           "ONNX models (*.onnx)", False)
                if located:
                    self._load(path, Path(located))
                    return
                self.done.emit("open", None)
            else:
                self._fail(f"Opening {path.name}", error)
                self.done.emit("open", None)

        self.window.set_status(f"opening {path.name}…")
        current = self.session.graph  # reused when the file is of this very model (no reload, no revalidation)
        self.background.submit(lambda: load_session(path, model_path=model_path, loaded=current), failed)

    def _opened(self, path: Path, loaded: Session) -> bool:
        same_model = loaded.graph is self.session.graph  # load_session kept the loaded graph: same file, shapes
        self.window.cancel_job(everything=True, keep=("layer_facts",) if same_model else ())
        self.window.undo_stack.clear()
        adopt(self.session, loaded)
        self.window.set_status(f"opened session {path.name}")
        self.window.session_opened()
        return True

    def save(self) -> Path | None:
        """Save to the session's file, asking for one the first time."""
        if self.session.path is None:
            return self.save_as()
        return self.save_to(self.session.path)

    def save_as(self) -> Path | None:
        chosen = self.choose_file("Save session", self._start_dir(".layerlab.json"), _SESSION_FILTER, True)
        return self.save_to(Path(chosen)) if chosen else None

    def save_to(self, path: Path) -> Path | None:
        """Start saving to ``path`` in the background; returns the path (``done("save", path)`` when written)."""
        if self.session.graph is None:
            self.window.set_status("Nothing to save: open a model first.")
            return None
        path = Path(path)
        # the file is written off the GUI thread; the session (whose events reach the views) changes on it
        self._in_background("save", lambda: save_session(self.session, path, mark_saved=False), self._saved)
        return path

    def _saved(self, saved: Path) -> Path:
        anchors = (saved, self.session.model_path, self.session.path)
        for sidecar in {autosave_path(a) for a in anchors if a is not None}:  # the saved file supersedes them
            sidecar.unlink(missing_ok=True)
        self.session.mark_saved(saved)
        self.window.set_status(f"saved {saved}")
        return saved

    def autosave_now(self) -> Path | None:
        """Write the autosave sidecar when there is unsaved work (the minute timer calls this); returns its path.

        The file is written in the background (``done("autosave", path)``); the session stays dirty.
        """
        if not self.session.dirty or self.session.graph is None:
            return None
        anchor = self.session.path or self.session.model_path
        if anchor is None:
            return None

        def finished(result: Any, error: BaseException | None) -> None:
            if error is not None:  # autosave is best effort: say it once in the status bar
                self.window.set_status(f"autosave failed: {error}")
            self.done.emit("autosave", None if error is not None else result)

        self.background.submit(lambda: autosave(self.session), finished)
        return autosave_path(anchor)

    def offer_model_recovery(self, model: Path) -> bool:
        """After a model opens: when its autosave exists, offer to load it."""
        if find_autosave(model) is None or not self.ask("Recover", f"{model.name} has unsaved work from an "
                                                        "earlier run. Recover it?"):
            return False
        loaded = self._guard(f"Recovering {model.name}", lambda: recover(model))
        if loaded is None:
            return False
        adopt(self.session, loaded)
        return True

    # --- exports --------------------------------------------------------------------------------

    def export(self, kind: str, path: Path | None = None) -> Path | None:
        """Start an export (``EXPORTS``: report, pdf, model, plan, csv); returns the path it will write.

        ``done(kind, path)`` follows once it is written (None when it failed or was cancelled). The reports
        and the optimized model are written by engine jobs in the worker; the others on a background thread.
        """
        label, suffix, filter_ = EXPORTS[kind]
        if self.session.graph is None:
            self.window.set_status("Open a model first.")
            return None
        if path is None:
            chosen = self.choose_file(f"Export {label.replace('&', '').rstrip('…')}", self.default_name(kind),
                                      filter_, True)
            if not chosen:
                return None
            path = Path(chosen)
        path = Path(path)
        if kind == "model":
            self._export_model(path)
        elif kind in ("report", "pdf"):
            snapshot = catalogue.SessionSnapshot.of(self.session)  # the session as of now, without the graph
            self._report(kind, path, {"snapshot": snapshot, "out_path": str(path)})
        else:
            writer = _WRITERS[kind]
            self._in_background(kind, lambda: writer(self.session, path), self._exported)
        return path

    def default_name(self, kind: str) -> str:
        """``<folder>/<model stem><suffix>``: next to the session file, else next to the model."""
        base = self.session.path or self.session.model_path
        if base is None:
            return str(Path.home() / f"layerlab{EXPORTS[kind][1]}")
        stem = Path(base).name.split(".")[0]
        return str(Path(base).parent / f"{stem}{EXPORTS[kind][1]}")

    def _exported(self, written: Path) -> Path:
        self.window.set_status(f"exported {written}")
        return written

    def _export_model(self, path: Path) -> None:
        session = self.session
        if session.plan is None or session.model_path is None:
            self.window.show_error(f"{path.name}: the session needs a model file and a plan to export")
            self.done.emit("model", None)
            return
        routines = dict(getattr(session.route, "routines", {}) or {})
        self._in_worker("model", path, catalogue.EXPORT_PLAN, {
            "path": str(session.model_path), "input_shapes": dict(session.input_shapes),
            "plan": session.plan.to_dict(), "routines": routines, "out_path": str(path),
            # int8 calibrates as Measure and Tune did: the bytes that were measured
            "evaluator": str(session.evaluator_path) if session.evaluator_path and session.evaluator_trusted else None})

    def _in_worker(self, kind: str, path: Path, name: str, kwargs: dict[str, Any]) -> None:
        """Queue catalogue job ``name``, which writes ``path``, in the window's worker; ``done(kind, path or None)``
        follows. It queues behind the job that runs (jobs run one at a time); a later export to the same
        file replaces it, exports to other files wait their turn."""
        label = f"Exporting {path.name}"
        ahead = self.window.job
        job = self.window.run_job(name, kwargs, label,
                                  lambda written: self.done.emit(kind, self._exported(Path(written))),
                                  kind=f"export {path}")
        self._track(kind, job)
        if ahead is not None and self.window.job is not job:
            self.window.set_status(f"{label}: waits for {ahead.label}")

    def _report(self, kind: str, path: Path, kwargs: dict[str, Any]) -> None:
        """Write a report in the reports' worker: it starts at once, whatever the window's worker is doing."""
        if self._reports is None:
            self._reports = QtWorker(self)
        label = f"Exporting {path.name}"
        for other, written in list(self._report_paths.items()):  # a later report to the same file replaces it
            if written == path:
                other.cancel()
        job = self._reports.submit(catalogue.WRITE_REPORT, kwargs, label)
        self._report_paths[job] = path
        job.ended.connect(lambda: self._report_paths.pop(job, None))
        job.finished.connect(lambda written: self.done.emit(kind, self._exported(Path(written))))
        job.errored.connect(lambda message, detail: self.window.show_error(f"{label} failed: {message}", detail))
        self._track(kind, job)
        self.window.set_status(f"{label}…")

    def _track(self, kind: str, job: QtJob) -> None:
        self._exports.add(job)
        job.errored.connect(lambda *_: self.done.emit(kind, None))  # the error line is shown by whoever ran it
        job.cancelled.connect(lambda *_: self.done.emit(kind, None))
        job.ended.connect(lambda: self._exports.discard(job))

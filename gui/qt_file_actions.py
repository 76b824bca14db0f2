"""File menu work: open/save session files, export report, model and CSV, autosave and recovery.

The engine does the work (``engine.io.session_file``, ``engine.report.write``, ``engine.report.export``); this module
asks for paths, turns errors into one-line messages, and copies a loaded session into the window's
session through its setters (the views stay subscribed to that one object).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

from PySide6.QtCore import QObject, QTimer
from PySide6.QtWidgets import QFileDialog, QMessageBox

from engine.errors import LayerLabError
from engine.model.session import Session
from engine.io.session_file import ModelMovedError, load_session, save_session
from engine.io.autosave import autosave, find_autosave, recover

__all__ = ["QtFileActions", "AUTOSAVE_MS", "adopt"]

logger = logging.getLogger(__name__)

AUTOSAVE_MS = 60_000
_SESSION_FILTER = "LayerLab sessions (*.layerlab.json *.json)"


def adopt(target: Session, loaded: Session) -> None:
    """Make ``target`` hold what ``loaded`` holds, announcing each field; it ends clean (or dirty, if recovered)."""
    target.set_model(loaded.model_path, loaded.graph, loaded.input_shapes)
    target.set_evaluator(loaded.evaluator_path, trusted=loaded.evaluator_trusted)
    target.set_plan(loaded.plan)
    target.set_profile(loaded.profile)
    target.machine = loaded.machine  # set_profile assumed "measured here"; the file knows better
    target.set_sensitivity(loaded.sensitivity)
    target.set_route(loaded.route)
    target.set_baseline(loaded.baseline)
    for trial in loaded.trials:
        target.add_trial(trial)
    target.set_current(loaded.current)
    target.set_notes(loaded.notes)
    if loaded.path is not None and not loaded.dirty:
        target.mark_saved(loaded.path)
    else:
        target.path = loaded.path


class QtFileActions(QObject):
    """The File menu's actions for ``window``; ``ask(title, question) -> bool`` is replaceable in tests."""

    def __init__(self, window: Any) -> None:
        super().__init__(window)
        self.window = window
        self.session = window.session
        self.ask: Callable[[str, str], bool] = self._ask
        self.choose_file: Callable[[str, str, str, bool], str] = self._choose_file
        self.timer = QTimer(self)
        self.timer.setInterval(AUTOSAVE_MS)
        self.timer.timeout.connect(self.autosave_now)
        self.timer.start()

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
            self.window.show_error(f"{what}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
            return None

    # --- sessions -------------------------------------------------------------------------------

    def open_session(self, path: Path | None = None) -> bool:
        """Open a session file (offering its autosave when newer, and to locate a moved model)."""
        if path is None:
            chosen = self.choose_file("Open session", self._start_dir(), _SESSION_FILTER, False)
            if not chosen:
                return False
            path = Path(chosen)
        path = Path(path)
        if find_autosave(path) is not None and self.ask("Recover", f"{path.name} has unsaved work from an earlier "
                                                         "run. Recover it?"):
            loaded = self._guard(f"Recovering {path.name}", lambda: recover(path))
        else:
            loaded = self._load(path)
        if loaded is None:
            return False
        self.window.cancel_job(everything=True)
        self.window.undo_stack.clear()
        adopt(self.session, loaded)
        self.window.set_status(f"opened session {path.name}")
        return True

    def _load(self, path: Path, model_path: Path | None = None) -> Session | None:
        try:
            return load_session(path, model_path=model_path)
        except ModelMovedError as exc:
            if model_path is None and self.ask("Model moved", f"{exc}\nLocate the model?"):
                located = self.choose_file(f"Locate {exc.expected_path.name}", str(path.parent),
                                           "ONNX models (*.onnx)", False)
                if located:
                    return self._load(path, Path(located))
            self.window.show_error(str(exc))
        except (LayerLabError, OSError) as exc:
            self.window.show_error(str(exc).splitlines()[0])
        return None

    def save(self) -> Path | None:
        """Save to the session's file, asking for one the first time."""
        if self.session.path is None:
            return self.save_as()
        return self.save_to(self.session.path)

    def save_as(self) -> Path | None:
        chosen = self.choose_file("Save session", self._start_dir(".layerlab.json"), _SESSION_FILTER, True)
        return self.save_to(Path(chosen)) if chosen else None

    def save_to(self, path: Path) -> Path | None:
        if self.session.graph is None:
            self.window.set_status("Nothing to save: open a model first.")
            return None
        saved = self._guard(f"Saving {Path(path).name}", lambda: save_session(self.session, path))
        if saved is not None:
            self.window.set_status(f"saved {saved}")
        return saved

    def autosave_now(self) -> Path | None:
        """Write the autosave sidecar when there is unsaved work (the minute timer calls this)."""
        if not self.session.dirty or self.session.graph is None:
            return None
        try:
            return autosave(self.session)
        except (LayerLabError, OSError) as exc:  # autosave is best effort: say it once in the status bar
            self.window.set_status(f"autosave failed: {exc}")
            return None

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
        """``kind`` is report (HTML), model (ONNX) or csv (per-layer table)."""
        from engine.report.export import export_model, write_layer_csv
        from engine.report.write import write_report

        writers = {"report": (write_report, ".html", "HTML report (*.html)"),
                   "model": (export_model, ".optimized.onnx", "ONNX model (*.onnx)"),
                   "csv": (write_layer_csv, ".layers.csv", "CSV (*.csv)")}
        writer, suffix, filter_ = writers[kind]
        if self.session.graph is None:
            self.window.set_status("Open a model first.")
            return None
        if path is None:
            chosen = self.choose_file(f"Export {kind}", self._start_dir(suffix), filter_, True)
            if not chosen:
                return None
            path = Path(chosen)
        written = self._guard(f"Export {kind}", lambda: writer(self.session, path))
        if written is not None:
            self.window.set_status(f"exported {written}")
        return written

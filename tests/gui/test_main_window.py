"""The main window: loading through the worker, errors and crashes, title, recent files, layout, drop, cancel."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent

from engine.model.session import Session
from gui.qt_job_status import eta_text
from gui.qt_main_window import QtMainWindow
from engine.progress import Progress
from tests.engine.jobs import toy_jobs as toy



def _new_window(qtbot, settings) -> QtMainWindow:
    w = QtMainWindow(Session(), settings)
    qtbot.addWidget(w)
    w.show()
    return w


def test_open_model_through_the_worker(qtbot, settings, digits_model) -> None:
    w = _new_window(qtbot, settings)
    assert "no model" in w.windowTitle()
    job = w.open_model(digits_model)
    with qtbot.waitSignal(job.ended, timeout=60_000):
        pass
    graph = w.session.graph
    assert graph is not None and len(w.graph_view.items) == len(graph.nodes) == 16
    assert w.windowTitle().startswith("digits.onnx")
    assert w.recent_files() == [str(Path(digits_model).resolve())]
    # Profiling starts by itself. The layer options job may run before it or after it (both are queued
    # when the model lands; which goes first is not a promise), so it is looked for among all the jobs.
    jobs = [j for j in [w.job, *w.jobs.worker.waiting()] if j is not None]
    assert w.session.plan is not None and "Profiling" in [j.label for j in jobs], [j.label for j in jobs]
    w.cancel_job(everything=True)


def test_a_bad_file_is_a_message_and_the_window_survives(qtbot, settings, tmp_path, caplog) -> None:
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"not a model")
    w = _new_window(qtbot, settings)
    job = w.open_model(bad)
    with caplog.at_level("WARNING"), qtbot.waitSignal(job.ended, timeout=60_000):
        pass
    assert "broken.onnx" in w.last_error and "not an ONNX model" in w.last_error
    # `gui --screenshot` prints last_error itself: a WARNING record too would print it twice
    assert not [r for r in caplog.records if r.levelname == "WARNING" and "broken.onnx" in r.getMessage()]
    assert w.session.graph is None and w.isVisible()


def test_a_crashing_job_is_reported_and_the_window_survives(window, qtbot) -> None:
    job = window.run_job(toy.SEGFAULT, {}, "Crashing", lambda result: None)
    with qtbot.waitSignal(job.ended, timeout=60_000):
        pass
    assert window.last_error.startswith("Crashing failed: worker crashed (exit code -11")
    assert window.isVisible() and len(window.graph_view.items) == 16  # nothing already done is lost


def test_cancel_stops_a_long_job_and_hides_the_progress(window, qtbot) -> None:
    results = []
    job = window.run_job(toy.SLOW, {}, "Slow", results.append)
    qtbot.waitUntil(lambda: job.last_progress is not None, timeout=60_000)
    assert window.job_status.isVisible() and window.job_status.bar.maximum() == 1000
    with qtbot.waitSignal(job.cancelled, timeout=5_000):
        window.job_status.cancel_button.click()
    assert results == [] and "cancelled" in window.status_text.text()
    assert not window.job_status.isVisible() and not window.busy()


def test_title_marks_unsaved_changes(window) -> None:
    window.session.mark_saved(Path("/tmp/x.layerlab.json"))
    assert window.windowTitle() == "digits.onnx [input=1x1x8x8] — LayerLab"  # the shapes it is measured at
    window.session.set_notes("changed")
    assert window.windowTitle() == "digits.onnx [input=1x1x8x8]* — LayerLab"


def test_dropping_an_onnx_file_opens_it(qtbot, settings, digits_model) -> None:
    w = _new_window(qtbot, settings)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(digits_model))])
    event = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)
    w.dropEvent(event)
    assert w.job is not None
    with qtbot.waitSignal(w.job.ended, timeout=60_000):
        pass
    assert w.session.model_path == Path(digits_model)


def test_dock_layout_is_kept_in_settings(qtbot, settings, session) -> None:
    w = QtMainWindow(session, settings)
    qtbot.addWidget(w)
    w.show()
    w.legend_dock.hide()
    w.close()
    assert settings.value("window/state") is not None
    again = QtMainWindow(Session(), settings)
    qtbot.addWidget(again)
    again.show()
    assert not again.legend_dock.isVisible() and again.inspector_dock.isVisible()


def test_eta_text() -> None:
    assert eta_text(Progress(0, 10), 5.0) == ""
    assert eta_text(Progress(5, 10), 5.0) == "ETA 5 s"
    assert eta_text(Progress(1, 100), 60.0) == "ETA 99 min"


def test_ops_int8_is_an_undoable_plan_edit_kept_in_sync_with_the_menu(window) -> None:
    assert not window.ops_action.isChecked()
    window.ops_action.trigger()  # checks it
    assert window.session.plan.ops == "int8" and window.undo_stack.count() == 1
    assert any("ops in int8" in n for n in window.live.predict_now().notes)
    window.undo_stack.undo()
    assert window.session.plan.ops == "fp32" and not window.ops_action.isChecked()
    window.undo_stack.redo()
    assert window.ops_action.isChecked()


def test_target_menu_lists_named_targets_and_shows_the_choice(window, tmp_path, monkeypatch) -> None:
    import json

    monkeypatch.setenv("LAYERLAB_CONFIG", str(tmp_path))
    (tmp_path / "targets.json").write_text(json.dumps({"targets": {"jetson": {"address": "127.0.0.1:9", "token_file": "t"}}}))
    menu = window.targets
    menu.rebuild()
    names = [a.text() for a in menu.menu.actions() if a.isCheckable()]
    assert names == ["This machine", "jetson"] and menu.menu.actions()[0].isChecked()
    assert menu.label.text() == "Numbers from: this machine · CPU"
    started = []
    monkeypatch.setattr(window.live, "profile", lambda: started.append(window.live.target))
    menu.menu.actions()[1].trigger()
    assert menu.label.text() == "Numbers from: jetson · CPU" and started == ["jetson"]

"""File menu: save and reopen a session, exports, autosave and recovery, errors as one-line messages.

Files are read and written in the background: each step waits for the ``done`` signal.
"""

from __future__ import annotations

import json
from pathlib import Path

from engine.model.plan import Plan
from engine.model.session import Session
from gui.qt_file_actions import EXPORTS
from gui.qt_main_window import QtMainWindow

_WAIT_MS = 60_000


def _finish(qtbot, files, start):
    """Run ``start()`` and wait for the matching ``done``; returns (start's value, done's result)."""
    with qtbot.waitSignal(files.done, timeout=_WAIT_MS) as blocker:
        value = start()
    return value, blocker.args[1]


def test_save_then_open_session_round_trips(window, qtbot, settings, tmp_path) -> None:
    name = window.session.graph.layers[0].name
    window.session.set_plan(Plan.from_dict({"layers": {name: {"precision": "int8"}}}))
    path, saved = _finish(qtbot, window.files, lambda: window.files.save_to(tmp_path / "s.layerlab.json"))
    assert saved == path and path.is_file() and not window.session.dirty
    other = QtMainWindow(Session(), settings)
    qtbot.addWidget(other)
    other.live.profile = lambda: None  # the file has no profile; profiling is tested elsewhere
    other.files.ask = lambda *_: False
    started, opened = _finish(qtbot, other.files, lambda: other.files.open_session(path))
    assert started and opened
    assert other.session.plan.settings_for(name).precision == "int8" and not other.session.dirty
    qtbot.waitUntil(lambda: len(other.graph_view.items) == len(window.graph_view.items), timeout=_WAIT_MS)


def test_every_export_writes_its_file(window, qtbot, tmp_path) -> None:
    for kind in EXPORTS:
        target = tmp_path / f"out{EXPORTS[kind][1]}"
        path, written = _finish(qtbot, window.files, lambda: window.files.export(kind, target))
        assert path == target and written == target and target.stat().st_size > 0, kind
    assert (tmp_path / "out.layers.csv").read_text().count("\n") >= 7
    assert (tmp_path / "out.report.pdf").read_bytes().startswith(b"%PDF")
    assert Plan.from_dict(json.loads((tmp_path / "out.plan.json").read_text())).to_dict() == window.session.plan.to_dict()


def test_export_names_default_to_the_model(window) -> None:
    model = Path(window.session.model_path)
    assert window.files.default_name("pdf") == str(model.parent / f"{model.name.split('.')[0]}.report.pdf")
    assert window.files.default_name("model").endswith(".optimized.onnx")


def test_autosave_in_the_background(window, qtbot, tmp_path) -> None:
    window.session.mark_saved(tmp_path / "a.layerlab.json")
    assert window.files.autosave_now() is None  # nothing unsaved
    window.session.set_notes("x")
    sidecar, written = _finish(qtbot, window.files, window.files.autosave_now)
    assert sidecar is not None and written == sidecar and sidecar.exists() and window.session.dirty


def test_a_bad_session_file_is_one_line(window, qtbot, tmp_path) -> None:
    bad = tmp_path / "bad.layerlab.json"
    bad.write_text("{not json")
    _, opened = _finish(qtbot, window.files, lambda: window.files.open_session(bad))
    assert opened is None
    assert "bad.layerlab.json" in window.last_error and "\n" not in window.last_error


def test_a_report_that_cannot_be_written_is_one_line(window, qtbot, tmp_path) -> None:
    target = tmp_path / "missing" / "r.report.pdf"
    path, written = _finish(qtbot, window.files, lambda: window.files.export("pdf", target))
    assert path == target and written is None and not window.files.busy()
    assert window.last_error.startswith("Exporting r.report.pdf failed: ") and "does not exist" in window.last_error
    assert "\n" not in window.last_error


def test_reports_are_written_by_the_worker_with_the_session_as_asked(window, qtbot, tmp_path) -> None:
    window.session.set_notes("before the export")
    with qtbot.waitSignal(window.files.done, timeout=_WAIT_MS) as blocker:
        window.files.export("report", tmp_path / "r.html")
        assert window.files.busy()
        window.session.set_notes("after the export was asked for")  # not in the report: it was asked before
    assert blocker.args == ["report", tmp_path / "r.html"] and not window.files.busy()
    text = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "before the export" in text and "after the export" not in text


def test_a_report_does_not_wait_for_the_running_job_nor_die_with_an_open(window, qtbot, tmp_path) -> None:
    """Reports have their own worker: one asked for during a long job (a sweep takes minutes) is written
    while that job runs, and cancelling everything (what opening a model does) does not drop it."""
    from tests.engine.jobs import toy_jobs as toy

    long_job = window.run_job(toy.SLOW, {"steps": 2000, "pause": 0.05}, "Sweep", lambda _: None)
    qtbot.waitUntil(lambda: long_job.running, timeout=_WAIT_MS)
    try:
        with qtbot.waitSignal(window.files.done, timeout=_WAIT_MS) as blocker:
            window.files.export("pdf", tmp_path / "r.pdf")
            window.jobs.cancel(everything=True)
        assert blocker.args == ["pdf", tmp_path / "r.pdf"] and (tmp_path / "r.pdf").read_bytes()[:5] == b"%PDF-"
    finally:
        long_job.cancel()

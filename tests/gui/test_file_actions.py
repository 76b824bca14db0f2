"""File menu: save and reopen a session, exports, autosave and recovery, errors as one-line messages."""

from __future__ import annotations

from engine.model.plan import Plan
from engine.model.session import Session
from gui.qt_main_window import QtMainWindow


def test_save_then_open_session_round_trips(window, qtbot, settings, tmp_path) -> None:
    name = window.session.graph.layers[0].name
    window.session.set_plan(Plan.from_dict({"layers": {name: {"precision": "int8"}}}))
    path = window.files.save_to(tmp_path / "s.layerlab.json")
    assert path is not None and not window.session.dirty
    other = QtMainWindow(Session(), settings)
    qtbot.addWidget(other)
    other.live.profile = lambda: None  # the file has no profile; profiling is tested elsewhere
    other.files.ask = lambda *_: False
    assert other.files.open_session(path)
    assert other.session.plan.settings_for(name).precision == "int8" and not other.session.dirty
    assert len(other.graph_view.items) == len(window.graph_view.items)


def test_exports_and_autosave(window, tmp_path) -> None:
    assert window.files.export("csv", tmp_path / "l.csv").read_text().count("\n") >= 7
    assert window.files.export("report", tmp_path / "r.html").stat().st_size > 0
    assert window.files.export("model", tmp_path / "m.onnx").stat().st_size > 0
    window.session.mark_saved(tmp_path / "a.layerlab.json")
    assert window.files.autosave_now() is None  # nothing unsaved
    window.session.set_notes("x")
    sidecar = window.files.autosave_now()
    assert sidecar is not None and sidecar.exists()


def test_a_bad_session_file_is_one_line(window, tmp_path) -> None:
    bad = tmp_path / "bad.layerlab.json"
    bad.write_text("{not json")
    assert not window.files.open_session(bad)
    assert "bad.layerlab.json" in window.last_error and "\n" not in window.last_error

"""Opening a model with open dims: the evaluator's shape through the open job, else the shape dialog."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from engine.jobs.catalogue import open_model
from engine.model.session import Session
from gui.qt_main_window import QtMainWindow
from gui.qt_shape_dialog import QtShapeDialog, parse_shape, prefill
from tests import builders
from tests.engine.cli.test_shapes_cli import EVALUATOR


@pytest.fixture()
def dynamic_cnn(tmp_path: Path) -> tuple[Path, Path]:
    model, evaluator = tmp_path / "dyn.onnx", tmp_path / "widths.py"
    onnx.save(builders.dynamic_width_cnn(), model)
    evaluator.write_text(EVALUATOR)
    return model, evaluator


def _window(qtbot, settings) -> QtMainWindow:
    w = QtMainWindow(Session(), settings)
    qtbot.addWidget(w)
    w.show()
    return w


def test_open_job_uses_the_evaluators_shape_and_never_sets_unknown_dims(dynamic_cnn) -> None:
    model, evaluator = dynamic_cnn
    graph, shapes, notes, missing = open_model(model, evaluator=evaluator)
    assert shapes == {"x": (1, 3, 16, 24)} and graph.inputs[0].shape == (1, 3, 16, 24) and not missing
    assert any("vary" in n for n in notes)
    graph, shapes, notes, missing = open_model(model)  # nothing says the width: asked, not guessed
    assert graph is None and shapes == {} and missing == {"x": (1, 3, 16, "width")}
    graph, shapes, _, _ = open_model(model, dims={"width": 20})
    assert shapes == {"x": (1, 3, 16, 20)} and graph.node("conv_a").macs == 8 * 16 * 20 * 27


def test_window_opens_at_the_evaluators_shape(qtbot, settings, dynamic_cnn) -> None:
    model, evaluator = dynamic_cnn
    w = _window(qtbot, settings)
    w.open_evaluator(evaluator)
    job = w.open_model(model)
    qtbot.waitUntil(lambda: w.session.graph is not None, timeout=60_000)
    assert w.session.input_shapes == {"x": (1, 3, 16, 24)}
    assert "x=1x3x16x24" in w.windowTitle()
    w.cancel_job(everything=True)
    del job


def test_window_asks_for_open_dims(qtbot, settings, dynamic_cnn) -> None:
    model, _ = dynamic_cnn
    w = _window(qtbot, settings)
    w.open_model(model)
    qtbot.waitUntil(lambda: getattr(w, "shape_dialog", None) is not None and w.shape_dialog.isVisible(), timeout=60_000)
    dialog = w.shape_dialog
    field = dialog.fields["x"]
    assert field.text() == "1x3x16xwidth" and w.session.graph is None  # prefilled: batch 1, width by name
    ok = dialog.buttons.button(dialog.buttons.StandardButton.Ok)
    assert not ok.isEnabled() and "x" in dialog.problem.text()
    field.setText("1x3x16x36")
    assert ok.isEnabled()
    dialog.grab().save(str(Path(settings.fileName()).with_name("shape_dialog.png")))
    ok.click()
    qtbot.waitUntil(lambda: w.session.graph is not None, timeout=60_000)
    assert w.session.input_shapes == {"x": (1, 3, 16, 36)} and w.session.graph.inputs[0].shape == (1, 3, 16, 36)
    assert w.shapes.text() == "inputs x=1x3x16x36 — x: 1x3x16x36 given in the shape dialog"
    assert w.session.shape_notes == ["x: 1x3x16x36 given in the shape dialog"]
    w.cancel_job(everything=True)


def test_the_shapes_and_where_they_came_from_stay_in_the_status_bar(qtbot, settings, dynamic_cnn) -> None:
    model, evaluator = dynamic_cnn
    w = _window(qtbot, settings)
    assert w.shapes.text() == ""  # no model
    w.open_evaluator(evaluator)
    w.open_model(model)
    qtbot.waitUntil(lambda: w.session.graph is not None, timeout=60_000)
    expected = ("inputs x=1x3x16x24 — x: the evaluator's samples vary (2 shapes: 1x3x16x24 x3, 1x3x16x40 x1); "
                "using the most frequent, 1x3x16x24 (3 of 4)")
    assert w.shapes.text() == expected
    for message in ("Profiling", "Measured. Timed on evaluator sample 0", "evaluator: widths.py"):  # later messages
        w.set_status(message)
        assert w.status_text.text() == message and w.shapes.text() == expected
    assert w.shapes.isVisible() and w.shapes.parent() is not None
    assert "x=1x3x16x24" in w.shapes.toolTip()
    w.cancel_job(everything=True)
    w.open_model(model, dims={"width": 20})  # another opening: its own provenance, none of the old
    qtbot.waitUntil(lambda: w.session.input_shapes == {"x": (1, 3, 16, 20)}, timeout=60_000)
    expected = "inputs x=1x3x16x20 — width=20 given with --dim; batch dim of x (batch) set to 1"
    assert w.shapes.text() == expected
    w.set_status("Measured.")
    assert w.shapes.text() == expected
    w.cancel_job(everything=True)


def test_a_model_from_elsewhere_shows_its_shapes_without_stale_notes(qtbot, window, digits_graph, digits_model) -> None:
    assert window.shapes.text() == "inputs input=1x1x8x8"  # a model set without notes: nothing to explain
    window.session.set_model(digits_model, digits_graph, {"input": (1, 1, 8, 8)},
                             ["batch dim of input set to 1 (give --input or --dim to change it)"])
    assert window.shapes.text() == "inputs input=1x1x8x8 — batch dim of input set to 1"
    window.session.set_model(digits_model, digits_graph, {"input": (1, 1, 8, 8)})  # another opening: its own notes
    assert window.shapes.text() == "inputs input=1x1x8x8"


def test_a_reopened_session_shows_where_its_shapes_came_from(qtbot, window, digits_graph, digits_model,
                                                              tmp_path, monkeypatch) -> None:
    from engine.io.session_file import load_session, save_session
    from gui.qt_file_actions import adopt

    monkeypatch.setenv("LAYERLAB_CACHE", str(tmp_path / "cache"))
    notes = ["input: 1x1x8x8 from the evaluator's 36 sample(s)", "batch dim of input set to 1 (give --input or --dim to change it)"]
    window.session.set_model(digits_model, digits_graph, {"input": (1, 1, 8, 8)}, notes)
    save_session(window.session, tmp_path / "s.layerlab.json")
    window.session.set_model(digits_model, digits_graph, {"input": (1, 1, 8, 8)})  # forgotten by the window
    assert window.shapes.text() == "inputs input=1x1x8x8"
    adopt(window.session, load_session(tmp_path / "s.layerlab.json"))
    assert window.session.shape_notes == notes
    assert window.shapes.text() == ("inputs input=1x1x8x8 — input: 1x1x8x8 from the evaluator's 36 sample(s); "
                                    "batch dim of input set to 1")


def test_dialog_parsing(qtbot) -> None:
    assert prefill((1, None, "seq")) == "1x?xseq"
    assert parse_shape("1x3x16x36") == (1, 3, 16, 36) and parse_shape("scalar") == ()
    assert parse_shape("1x3xwidth") is None and parse_shape("0x3") is None
    d = QtShapeDialog("m.onnx", {"ids": (1, "seq"), "sr": ()}, {"known": (2,)})
    qtbot.addWidget(d)
    d.fields["ids"].setText("1x128")
    d.fields["sr"].setText("scalar")
    assert d.shapes() == {"known": (2,), "ids": (1, 128), "sr": ()}

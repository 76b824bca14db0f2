"""The inspector: facts, disabled settings with reasons, undoable edits on one or many layers."""

from __future__ import annotations

from types import SimpleNamespace

from PySide6.QtCore import Qt

from gui.layer_options import PRECISION_ORDER


def _choose(combo, value: str) -> None:
    index = combo.findData(value)
    combo.setCurrentIndex(index)
    combo.activated.emit(index)


def test_select_a_layer_change_precision_undo_redo(window) -> None:
    session, inspector, stack = window.session, window.inspector, window.undo_stack
    window.graph_view.select(["/conv2/Conv"])
    assert "/conv2/Conv" in inspector.title.text() and "params: 4,640" in inspector.facts.text()
    assert inspector.controls.isEnabled() and inspector.precision.currentData() == "fp32"
    _choose(inspector.precision, "int8")
    assert session.plan.settings_for("/conv2/Conv").precision == "int8"
    assert session.plan.settings_for("/conv1/Conv").precision == "fp32"
    assert stack.undoText() == "Set precision int8 of /conv2/Conv"
    stack.undo()
    assert session.plan.settings_for("/conv2/Conv").precision == "fp32"
    assert inspector.precision.currentData() == "fp32"  # the control repaints from the session
    stack.redo()
    assert session.plan.settings_for("/conv2/Conv").precision == "int8"


def test_shortcuts_undo_and_redo(window, qtbot) -> None:
    window.graph_view.select(["/conv2/Conv"])
    _choose(window.inspector.precision, "fp16")
    qtbot.keyClick(window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert window.session.plan.settings_for("/conv2/Conv").precision == "fp32"
    qtbot.keyClick(window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert window.session.plan.settings_for("/conv2/Conv").precision == "fp16"


def test_impossible_settings_are_disabled_with_a_reason(window) -> None:
    inspector = window.inspector
    window.graph_view.select(["/conv2/Conv"])
    item = inspector.precision.model().item(PRECISION_ORDER.index("int8_dynamic"))
    assert not item.isEnabled() and "MatMul/Gemm only" in item.toolTip()
    assert "int8_dynamic" in inspector.reasons.text()
    window.graph_view.select(["/fc1/Gemm"])
    assert inspector.precision.model().item(PRECISION_ORDER.index("int8_dynamic")).isEnabled()
    window.graph_view.select(["/relu/Relu"])
    assert not inspector.controls.isEnabled() and "op (not tunable)" in inspector.title.text()


def test_prune_and_rank_are_undoable_and_exclusive(window) -> None:
    session, inspector = window.session, window.inspector
    window.graph_view.select(["/fc1/Gemm"])
    inspector.prune.setValue(50)  # not dragging: commits at once
    assert session.plan.settings_for("/fc1/Gemm").prune.ratio == 0.5
    assert not inspector.rank_on.isEnabled() and "not both" in inspector.rank_on.toolTip()
    window.undo_stack.undo()
    assert session.plan.settings_for("/fc1/Gemm").prune is None
    assert inspector.rank_on.isEnabled() and inspector.energy_plot.isVisible()
    inspector.rank_on.click()
    rank = session.plan.settings_for("/fc1/Gemm").rank
    assert rank is not None and 1 <= rank <= inspector.rank.maximum()
    assert not inspector.prune.isEnabled()
    inspector.rank.setValue(3)
    assert session.plan.settings_for("/fc1/Gemm").rank == 3


def test_multi_selection_edits_every_layer(window) -> None:
    session, inspector = window.session, window.inspector
    session.set_selection(("/conv1/Conv", "/relu/Relu", "/fc1/Gemm"))
    assert "3 nodes selected" in inspector.title.text() and inspector.layers == ["/conv1/Conv", "/fc1/Gemm"]
    assert "one layer at a time" in inspector.rank_on.toolTip()
    _choose(inspector.precision, "int8")
    assert {n for n, s in session.plan.layers.items() if s.precision == "int8"} == {"/conv1/Conv", "/fc1/Gemm"}
    window.undo_stack.undo()
    assert session.plan.layers == {}


def test_profile_and_drops_show_as_bars(window) -> None:
    session, inspector = window.session, window.inspector
    window.graph_view.select(["/fc1/Gemm"])
    assert not inspector.latency_plot.isVisible() and "not profiled yet" in inspector.results_note.text()
    routines = {"fp32": 0.2, "int8": 0.05}
    session.set_profile(SimpleNamespace(layers={"/fc1/Gemm": SimpleNamespace(ms=0.2, routines=routines)}))
    session.set_sensitivity(SimpleNamespace(layers={"/fc1/Gemm": SimpleNamespace(drops={"int8": 0.01}, sqnr_db=31.0)}))
    assert inspector.latency_plot.isVisible() and inspector.drop_plot.isVisible()
    bars = [i for i in inspector.latency_plot.getPlotItem().items if type(i).__name__ == "BarGraphItem"]
    assert len(bars) == 1 and list(bars[0].opts["height"]) == [0.2, 0.05]
    assert "SQNR 31.0 dB" in inspector.results_note.text()


def test_layer_options_come_from_the_worker_once_per_model(qtbot, settings, tmp_path) -> None:
    """Prune checks and SVD energy are computed by a worker job after opening, not on the first click."""
    import onnx

    from engine.model.session import Session
    from gui.layer_options import PENDING, facts_for
    from gui.qt_main_window import QtMainWindow
    from tests.builders import conv_stack

    path = tmp_path / "stack.onnx"
    onnx.save(conv_stack(3, channels=8, size=8, seed=7), str(path))
    window = QtMainWindow(Session(), settings)
    qtbot.addWidget(window)
    window.live.model_opened = lambda: None  # profiling is tested elsewhere
    window.open_model(path)
    qtbot.waitUntil(lambda: window.session.graph is not None, timeout=60_000)
    window.graph_view.select(["conv_1"])
    if facts_for(window.session.graph) is None:  # the first click does not wait: it says so
        assert PENDING in window.inspector.rank_on.toolTip()
    qtbot.waitUntil(lambda: facts_for(window.session.graph) is not None, timeout=60_000)
    facts = facts_for(window.session.graph)
    assert facts.complete and set(facts.rank) == {"conv_0", "conv_1", "conv_2"}
    assert facts.rank["conv_1"].max_rank == facts.rank["conv_1"].break_even - 1
    assert abs(facts.rank["conv_1"].energy[-1] - 1.0) < 1e-9 and facts.prune["conv_1"] is None
    qtbot.waitUntil(lambda: window.inspector.rank_on.isEnabled(), timeout=5000)
    assert not window.inspector.energy_plot.isHidden()


def test_facts_name_the_int8_methods_of_the_plan(window) -> None:
    from engine.model.plan import LayerSettings, Plan

    session, inspector = window.session, window.inspector
    session.set_plan(Plan(layers={"/conv2/Conv": LayerSettings("int8", calibration="entropy", cle=True, bias_correction=True,
                                                                           symmetric=True)}))
    window.graph_view.select(["/conv2/Conv"])
    facts = inspector.facts.text()
    assert "int8 calibration: entropy" in facts and "cross-layer equalization" in facts and "bias correction" in facts
    assert "activations: symmetric ranges (uint8, zero point 128)" in facts
    window.graph_view.select(["/conv1/Conv"])
    assert "bias correction" not in inspector.facts.text() and "SmoothQuant" not in inspector.facts.text()
    session.set_plan(Plan(layers={"/fc1/Gemm": LayerSettings("int8", smoothquant=0.5)}))
    window.graph_view.select(["/fc1/Gemm"])
    facts = inspector.facts.text()
    assert "SmoothQuant: alpha 0.5" in facts and "int8 calibration: minmax" in facts and "cross-layer" not in facts


def test_the_header_names_the_model_file_with_its_full_path_as_tooltip(window) -> None:
    window.session.set_selection(())
    window.inspector.refresh()
    graph = window.session.graph
    title = window.inspector.title
    assert graph.path.name in title.text() and str(graph.path.parent) not in title.text()
    assert title.toolTip() == str(graph.path)


def test_the_inspector_offers_int8_exactly_where_apply_accepts_it() -> None:
    """One rule (engine.ir.routines): a layer whose input shape only a run can tell is int8 once shapes are concrete."""
    from engine.ir.graph import build_graph
    from engine.ir.routines import routine_problem
    from gui.layer_options import layer_options
    from tests import builders

    model = builders.run_time_reshape_head()
    open_dims = build_graph(model)
    blocked = layer_options(open_dims, ["fc"]).precision_blocked
    assert blocked["int8"] == f"fc: {routine_problem(open_dims, open_dims.node('fc'), 'int8')}"
    assert "shapes unknown" in blocked["int8"] and "int8_dynamic" not in blocked
    assert layer_options(build_graph(model, {"x": (1, 3, 6, 5)}), ["fc"]).precision_blocked == {}
    assert "int8_dynamic" in layer_options(open_dims, ["conv"]).precision_blocked  # a Conv has no dynamic int8

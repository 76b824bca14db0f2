"""The graph view: items for every node, selection sync both ways, search, keys, colour modes and the legend."""

from __future__ import annotations

from types import SimpleNamespace

from onnx import TensorProto, helper
from PySide6.QtCore import Qt

from engine.ir.graph import build_graph
from engine.model.session import Session
from gui.graph_items import NodeItem
from gui.qt_graph_view import QtGraphView


def _profile(ms: dict[str, float]):
    layers = {n: SimpleNamespace(ms=v, routines={"fp32": v, "int8": v / 3}, unsupported=()) for n, v in ms.items()}
    return SimpleNamespace(layers=layers, end_to_end=(sum(ms.values()), 0, 0), coverage=1.0)


def _settle(qtbot, window) -> None:
    """Results reach the view's boxes on the next event-loop turn (a burst repaints once)."""
    qtbot.waitUntil(lambda: not window.graph_view.pending, timeout=5_000)


def test_every_node_has_an_item_and_layers_are_distinct(window, digits_graph) -> None:
    view = window.graph_view
    assert set(view.items) == {n.name for n in digits_graph.nodes}
    assert sum(item.tunable for item in view.items.values()) == len(digits_graph.layers) == 7
    layer, op = view.items["/conv1/Conv"], view.items["/relu/Relu"]
    assert layer.boundingRect().width() > op.boundingRect().width()
    assert layer.cacheMode() == NodeItem.CacheMode.DeviceCoordinateCache


def test_selection_syncs_both_ways(window) -> None:
    view, session = window.graph_view, window.session
    view.items["/fc1/Gemm"].setSelected(True)
    assert session.selection == ("/fc1/Gemm",)
    session.set_selection(("/conv2/Conv", "/conv3/Conv"))
    assert {n for n, item in view.items.items() if item.isSelected()} == {"/conv2/Conv", "/conv3/Conv"}


def test_search_selects_matches(window) -> None:
    view = window.graph_view
    assert view.search("fc1") == ["/fc1/Gemm"]
    assert window.session.selection == ("/fc1/Gemm",)
    assert len(view.search("gemm")) == 2  # op types match too, case-insensitive
    assert view.search("no such thing") == [] and window.session.selection == ()


def test_arrow_keys_walk_the_edges(window, qtbot) -> None:
    view = window.graph_view
    view.select(["/conv1/Conv"])
    view.setFocus()
    qtbot.keyClick(view, Qt.Key.Key_Down)
    assert window.session.selection == ("/relu/Relu",)
    qtbot.keyClick(view, Qt.Key.Key_Down)
    qtbot.keyClick(view, Qt.Key.Key_Up)
    assert window.session.selection == ("/relu/Relu",)
    view.select(["/relu_1/Relu"])
    assert view.step(Qt.Key.Key_Down) == "/res/conv_a/Conv"  # the straight edge, not the skip connection


def test_colour_modes_paint_from_the_session(window, qtbot) -> None:
    view, legend, session = window.graph_view, window.legend, window.session
    before = view.items["/conv1/Conv"].fill.name()
    view.set_colour_mode("macs")
    assert view.items["/conv1/Conv"].fill.name() != before
    assert view.items["/fc2/Gemm"].fill != view.items["/conv2/Conv"].fill  # 640 vs 147k MACs
    assert "MACs" in legend.text.text() and legend.combo.currentData() == "macs"

    legend.set_mode("latency")
    assert view.colour_mode == "latency" and legend.text.text() == "not profiled yet"
    session.set_profile(_profile({"/conv1/Conv": 0.1, "/conv2/Conv": 0.9}))
    _settle(qtbot, window)
    assert view.items["/conv1/Conv"].fill != view.items["/conv2/Conv"].fill
    assert "90.0% of total" in view.items["/conv2/Conv"].tooltip()
    assert "2 nodes" in legend.text.text()

    session.set_route(SimpleNamespace(routines={"/conv1/Conv": "int8", "/conv2/Conv": "fp32", "/conv3/Conv": "int8"}))
    _settle(qtbot, window)
    view.set_colour_mode("routine")
    items = view.items
    assert items["/conv1/Conv"].fill == items["/conv3/Conv"].fill != items["/conv2/Conv"].fill

    session.set_sensitivity(SimpleNamespace(layers={"/fc2/Gemm": SimpleNamespace(drops={"int8": 0.02}, sqnr_db=30.0)}))
    _settle(qtbot, window)
    view.set_colour_mode("sensitivity")
    assert "drop (int8): 0.0200" in items["/fc2/Gemm"].tooltip()


def test_plan_edits_show_as_badges(window, qtbot) -> None:
    from engine.model.plan import LayerSettings, Plan

    window.session.set_plan(Plan(layers={"/conv2/Conv": LayerSettings(precision="int8", rank=4)}))
    _settle(qtbot, window)
    assert window.graph_view.items["/conv2/Conv"].badge == "int8 r4"
    assert window.graph_view.items["/conv1/Conv"].badge == ""


def _chain_graph(n: int):
    nodes = [helper.make_node("Relu", [f"t{i}"], [f"t{i + 1}"], name=f"relu_{i}") for i in range(n)]
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("t0", TensorProto.FLOAT, [1, 8])],
                              [helper.make_tensor_value_info(f"t{n}", TensorProto.FLOAT, [1, 8])])
    return build_graph(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]))


def test_a_thousand_nodes_build_and_zoom(qtbot) -> None:
    session = Session()
    view = QtGraphView(session)
    qtbot.addWidget(view)
    view.resize(800, 600)
    view.show()
    with qtbot.waitSignal(view.built, timeout=30_000):  # large graphs are laid out in the background
        session.set_model("chain.onnx", _chain_graph(1200))
    assert len(view.items) == 1200
    view.fit()
    # the chain is wrapped into columns for the view's shape: fitted it is far out, but not a sliver
    assert len(view.columns) > 10
    assert 0.05 < view.transform().m11() < 0.45  # boxes only, no text (level of detail)
    view.grab()  # paints every visible item once without error
    view.zoom(100.0)
    assert view.transform().m11() <= 4.0
    view.close_view()
    assert len(session.events.model) == 0


def test_a_tall_chain_is_wrapped_for_the_view_and_wrapped_anew_when_its_shape_changes(qtbot) -> None:
    session = Session()
    view = QtGraphView(session)
    qtbot.addWidget(view)
    view.resize(1000, 600)
    view.show()
    with qtbot.waitSignal(view.built, timeout=30_000):
        session.set_model("chain.onnx", _chain_graph(60))
    wide = view.columns
    assert len(wide) >= 4
    xs = [view.items[f"relu_{i}"].pos().x() + view.items[f"relu_{i}"].boundingRect().center().x() for i in range(60)]
    assert xs[0] < xs[-1]  # later nodes stand in columns further right
    with qtbot.waitSignal(view.built, timeout=30_000):
        view.resize(400, 1200)  # a portrait view: fewer columns
    assert 1 <= len(view.columns) < len(wide)
    view.close_view()


def test_the_fill_follows_the_results_and_layers_carry_latency_bars(window, qtbot) -> None:
    view, session, legend = window.graph_view, window.session, window.legend
    assert view.colour_mode == "kind" and not view.mode_chosen
    session.set_profile(_profile({"/conv1/Conv": 0.2, "/conv2/Conv": 0.8}))
    _settle(qtbot, window)
    assert view.colour_mode == "latency"
    assert view.items["/conv2/Conv"].latency == (0.8, 1.0) and view.items["/conv1/Conv"].latency == (0.2, 0.25)
    assert view.items["/relu/Relu"].latency is None  # ops carry no bar
    session.set_sensitivity(SimpleNamespace(layers={"/conv1/Conv": SimpleNamespace(drops={"int8": 0.05}, sqnr_db=None),
                                                    "/conv2/Conv": SimpleNamespace(drops={"int8": 0.01}, sqnr_db=None)}))
    _settle(qtbot, window)
    assert view.colour_mode == "sensitivity"  # drop fills, latency stays as bars
    assert view.items["/conv2/Conv"].latency == (0.8, 1.0)
    assert "latency: 0.800 ms" in view.items["/conv2/Conv"].tooltip()
    assert "slowest layer, 0.8 ms" in legend.latency_text.text()
    view.set_colour_mode("macs")
    session.set_profile(_profile({"/conv1/Conv": 0.3}))
    _settle(qtbot, window)
    assert view.colour_mode == "macs"  # the user's choice sticks


def test_selecting_a_layer_outlines_its_neighbouring_layers(window) -> None:
    view = window.graph_view
    view.select(["/conv2/Conv"])
    marked = {n for n, item in view.items.items() if item.mark == "neighbour"}
    assert marked == {"/conv1/Conv", "/res/conv_a/Conv"}  # through the ops between them; conv3 is further on
    assert view.items["/conv1/Conv"].mark_text == "[fp32]"
    view.select([])
    assert not any(item.mark for item in view.items.values())


def test_layers_only_folds_the_ops_into_edges(window, digits_graph) -> None:
    view = window.graph_view
    assert not view.layers_only  # a small model shows every node
    view.toggle_compact()
    assert view.layers_only and set(view.items) == {n.name for n in digits_graph.layers}
    assert view.succs["/conv1/Conv"] == ["/conv2/Conv"]
    view.toggle_compact()
    assert set(view.items) == {n.name for n in digits_graph.nodes}


def test_the_routine_legend_lists_each_routine_once(window, qtbot) -> None:
    from PySide6.QtWidgets import QLabel

    view, legend, session = window.graph_view, window.legend, window.session
    view.set_colour_mode("routine")
    for routes in ({"/conv1/Conv": "fp32", "/conv2/Conv": "int8"}, {"/conv1/Conv": "int8", "/conv2/Conv": "fp32"}):
        session.set_route(SimpleNamespace(routines=routes))
        _settle(qtbot, window)
    qtbot.wait(20)  # Qt shows widgets added to a visible layout on the next event-loop turn
    shown = [w.text() for w in legend._swatches.findChildren(QLabel) if w.isVisible() and w.text()]
    assert sorted(shown) == ["fp32", "int8"]


def test_selecting_a_layer_outlines_its_prune_group(window) -> None:
    """conv2 and the residual block's conv_b feed one Add: their channels shrink together (engine prune_group)."""
    view = window.graph_view
    view.select(["/conv2/Conv"])
    assert view.items["/res/conv_b/Conv"].mark == "group"
    assert view.items["/conv1/Conv"].mark == "neighbour"


def test_a_cancelled_sweep_hatches_the_layers_it_did_not_reach(window, qtbot) -> None:
    from engine.evaluate.sensitivity import LayerSensitivity, Sensitivity

    view, session, legend = window.graph_view, window.session, window.legend
    layers = [n.name for n in session.graph.layers]
    done = layers[:3]
    session.set_sensitivity(Sensitivity(0.9, "accuracy", {n: LayerSensitivity(n, {"int8": 0.01}) for n in done},
                                        complete=False))
    _settle(qtbot, window)
    assert view.colour_mode == "sensitivity"
    assert {n for n, item in view.items.items() if item.unmeasured} == set(layers[3:])
    missing = view.items[layers[-1]]
    assert "not measured (the sweep was cancelled before it)" in missing.tooltip()
    assert f"{len(layers) - 3} layer(s) not measured" in legend.text.text()
    session.set_sensitivity(Sensitivity(0.9, "accuracy", {n: LayerSensitivity(n, {"int8": 0.01}) for n in layers},
                                        complete=True))
    _settle(qtbot, window)
    assert not any(item.unmeasured for item in view.items.values()) and "not measured" not in legend.text.text()
    view.set_colour_mode("kind")  # a mode without a table: nothing is hatched
    assert not any(item.unmeasured for item in view.items.values())


def test_the_same_model_again_keeps_its_boxes(window, qtbot, digits_model) -> None:
    """A reopened session of the drawn model swaps the nodes behind the boxes instead of rebuilding the scene."""
    from engine.ir.graph import load_model

    view, session = window.graph_view, window.session
    boxes = dict(view.items)
    again = load_model(digits_model, {"input": (1, 1, 8, 8)})  # what reading a session file gives: a new graph object
    assert again is not session.graph
    with qtbot.waitSignal(view.built, timeout=10_000):
        session.set_model(digits_model, again, {"input": (1, 1, 8, 8)})
    assert set(view.items) == set(boxes) and all(view.items[n] is boxes[n] for n in boxes)
    assert all(view.items[n.name].node is n for n in again.nodes)
    with qtbot.waitSignal(view.built, timeout=10_000):
        session.set_model(digits_model, again, {"input": (1, 1, 8, 8)})  # the very same graph object
    assert all(view.items[n] is boxes[n] for n in boxes)
    view.toggle_compact()  # another layout: new boxes
    qtbot.waitUntil(lambda: not view.building, timeout=10_000)
    assert not any(view.items[n] is boxes[n] for n in view.items)

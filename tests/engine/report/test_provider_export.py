"""A mixed-provider plan exported for ONNX Runtime: layer_ann on every node, the layer assignment setting,
the plan and the report saying where each layer runs."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from engine.errors import SettingsError
from engine.ir.graph import build_graph
from engine.ir.feeds import random_feeds
from engine.model.plan import LayerSettings, Plan
from engine.optimize.plans import route_plan
from engine.passes.precision import PrecisionPass
from engine.report.provider_export import LAYER_ANN, annotate, assignment_settings, plan_providers
from tests import builders

_OV = "OpenVINOExecutionProvider"


def _ann(model) -> dict[str, str]:
    return {n.name: next(p.value for p in n.metadata_props if p.key == LAYER_ANN) for n in model.graph.node}


def test_every_node_says_where_it_runs_and_converter_nodes_go_with_the_layer_they_feed() -> None:
    graph = build_graph(builders.conv_stack(n=3, channels=8, size=8))
    feeds = random_feeds(graph, 0)
    variant = PrecisionPass(calibration=[feeds, feeds], int8=["conv_1"])(graph.model).model
    ann = _ann(annotate(variant, graph, {"conv_1": _OV}))
    assert {k: v for k, v in ann.items() if k in {n.name for n in graph.nodes}} == {
        "conv_0": "ep_CPU", "conv_0_relu": "ep_CPU", "conv_1": "ep_OpenVINO", "conv_1_relu": "ep_OpenVINO",
        "conv_2": "ep_CPU", "conv_2_relu": "ep_CPU"}
    added = [n for n in variant.graph.node if n.name not in {g.name for g in graph.nodes}]
    assert added and all(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in added)
    # conv_1's input Q/DQ and weight DQ feed it: OpenVINO; the pair on its output feeds its Relu: OpenVINO too
    assert {ann[n.name] for n in added} == {"ep_OpenVINO"}


def test_the_annotated_model_runs_with_the_setting_and_computes_the_same() -> None:
    graph = build_graph(builders.residual_net(blocks=1, channels=8, size=8))
    feeds = random_feeds(graph, 0)
    layer = graph.layers[1].name
    model = annotate(graph.model, graph, {layer: _OV})
    text, _ = assignment_settings({layer: _OV})
    so = ort.SessionOptions()
    so.add_session_config_entry("session.layer_assignment_settings", text)
    got = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, feeds)
    want = ort.InferenceSession(graph.model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    np.testing.assert_array_equal(got[0], want[0])


def test_the_setting_names_devices_and_says_what_it_cannot_separate() -> None:
    text, notes = assignment_settings({"a": _OV})
    assert text == "cpu(=ep_CPU, =ep_OpenVINO)"
    assert len(notes) == 1 and "CPUExecutionProvider and OpenVINOExecutionProvider are both on device 'cpu'" in notes[0]
    assert assignment_settings({"a": "CUDAExecutionProvider", "b": "QNNExecutionProvider"}) == (
        "cpu(=ep_CPU); gpu(=ep_CUDA); npu(=ep_QNN)", [])
    text, notes = assignment_settings({"a": "NewExecutionProvider"})
    assert text == "cpu(=ep_CPU)" and "NewExecutionProvider: no known device designator" in notes[0]


def test_a_route_with_provider_routines_becomes_a_plan_that_keeps_them() -> None:
    graph = build_graph(builders.conv_stack(n=3, channels=4, size=8))
    plan = route_plan(graph, {"conv_0": "int8@OpenVINO", "conv_1": "fp32@OpenVINO", "conv_2": "int8"})
    assert plan.layers["conv_0"] == LayerSettings("int8", provider=_OV)
    assert plan.layers["conv_1"] == LayerSettings("fp32", provider=_OV)
    assert plan.layers["conv_2"] == LayerSettings("int8")
    again = Plan.from_dict(plan.to_dict(), "plan")
    assert plan_providers(graph, again) == {"conv_0": _OV, "conv_1": _OV}
    with pytest.raises(SettingsError, match="provider 'OpenVINO': must name an ONNX Runtime execution provider"):
        Plan.from_dict({"layers": {"conv_0": {"provider": "OpenVINO"}}}, "plan")


def test_rows_and_report_say_which_provider_each_layer_uses(tmp_path) -> None:
    from engine.report.document import Paragraph, Table, build_report
    from engine.report.export import layer_rows
    from tests.engine.io.test_session_file import make_session

    s = make_session(tmp_path)
    first, second = (n.name for n in s.graph.layers[:2])
    s.set_plan(Plan(layers={first: LayerSettings("int8", provider=_OV)}))
    rows = {r.name: r for r in layer_rows(s)}
    assert rows[first].provider == _OV and rows[second].provider == ""
    blocks = build_report(s).blocks
    table = next(b for b in blocks if isinstance(b, Table) and b.header[0] == "layer")
    assert table.header[5:7] == ("routine", "provider")
    by_name = {row[0]: row for row in table.rows}
    assert by_name[first][6] == "OpenVINO" and by_name[second][6] == "CPU"
    text = " ".join(b.text for b in blocks if isinstance(b, Paragraph))
    assert "1 on OpenVINO" in text and 'session.layer_assignment_settings = "cpu(=ep_CPU, =ep_OpenVINO)"' in text


def test_the_session_file_keeps_each_layers_provider(tmp_path) -> None:
    from engine.io.session_file import load_session, save_session
    from tests.engine.io.test_session_file import make_session

    s = make_session(tmp_path)
    first = s.graph.layers[0].name
    s.set_plan(Plan(layers={first: LayerSettings("fp32", provider=_OV)}))
    back = load_session(save_session(s, tmp_path / "s.json"))
    assert back.plan.settings_for(first).provider == _OV


def test_apply_writes_layer_ann_and_prints_the_setting(tmp_path, capsys) -> None:
    import json

    import onnx

    from engine.cli.main import main

    graph = build_graph(builders.conv_stack(n=3, channels=4, size=8))
    src, plan, out = tmp_path / "m.onnx", tmp_path / "plan.json", tmp_path / "out.onnx"
    onnx.save(graph.model, src)
    plan.write_text(json.dumps({"layers": {"conv_1": {"precision": "fp32", "provider": _OV}}}))
    assert main(["apply", str(src), str(plan), "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert 'session.layer_assignment_settings = "cpu(=ep_CPU, =ep_OpenVINO)"' in text
    assert "are both on device 'cpu'" in text
    ann = _ann(onnx.load(out))
    assert ann == {"conv_0": "ep_CPU", "conv_0_relu": "ep_CPU", "conv_1": "ep_OpenVINO", "conv_1_relu": "ep_OpenVINO",
                   "conv_2": "ep_CPU", "conv_2_relu": "ep_CPU"}

"""Tests for engine.ir.graph: loading, validation, shapes, MACs and the bad-input errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from engine.errors import ModelError, SettingsError
from engine.ir.graph import build_graph, load_model, parse_input_shape, upgrade_opset
from tests import builders


def _save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.save(model, str(path))
    return path


def _single(op: str, x_shape: list, w: np.ndarray, out_shape: list, extra: list | None = None, **attrs) -> onnx.ModelProto:
    inits = [numpy_helper.from_array(w, "w")] + (extra or [])
    node = helper.make_node(op, ["x", "w"] + [t.name for t in extra or []], ["y"], name="layer", **attrs)
    graph = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
        initializer=inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_conv_macs_by_hand() -> None:
    w = np.zeros((8, 3, 3, 3), np.float32)
    g = build_graph(_single("Conv", [1, 3, 10, 10], w, [1, 8, 8, 8]))
    node = g.node("layer")
    # 8x8x8 outputs, each 3 in-channels x 3x3 kernel
    assert node.macs == 8 * 8 * 8 * 3 * 3 * 3
    assert node.params == 8 * 3 * 3 * 3 and node.weight_bytes == 4 * node.params
    assert node.out_shapes == ((1, 8, 8, 8),) and node.out_bytes == 4 * 512
    assert node.tunable


def test_grouped_conv_macs() -> None:
    w = np.zeros((8, 1, 3, 3), np.float32)
    g = build_graph(_single("Conv", [1, 8, 10, 10], w, [1, 8, 8, 8], group=8))
    assert g.node("layer").macs == 8 * 8 * 8 * 1 * 3 * 3


def test_gemm_macs_by_hand() -> None:
    w = np.zeros((20, 50), np.float32)
    g = build_graph(_single("Gemm", [4, 50], w, [4, 20], transB=1))
    assert g.node("layer").macs == 4 * 20 * 50


def test_matmul_macs_batched() -> None:
    w = np.zeros((32, 64), np.float32)
    g = build_graph(_single("MatMul", [2, 16, 32], w, [2, 16, 64]))
    assert g.node("layer").macs == 2 * 16 * 64 * 32
    assert g.node("layer").tunable


def test_matmul_of_two_activations_is_not_a_layer() -> None:
    g = build_graph(builders.transformer_block())
    assert not g.node("scores").tunable and not g.node("context").tunable
    assert g.node("q").tunable and g.node("mlp_up").tunable


def test_symbolic_dims_stay_symbolic_and_input_shapes_make_them_concrete() -> None:
    w = np.zeros((8, 3, 3, 3), np.float32)
    model = _single("Conv", ["batch", 3, "h", "w"], w, ["batch", 8, None, None], pads=[1, 1, 1, 1])
    g = build_graph(model)
    assert g.inputs[0].shape == ("batch", 3, "h", "w")
    assert g.node("layer").macs is None and g.total_macs is None
    g = build_graph(model, {"x": (2, 3, 5, 7)})
    assert g.node("layer").out_shapes == ((2, 8, 5, 7),)
    assert g.node("layer").macs == 2 * 8 * 5 * 7 * 27


def test_wrong_input_shape_is_a_settings_error() -> None:
    model = builders.conv_stack()
    with pytest.raises(SettingsError, match="no input named 'y'"):
        build_graph(model, {"y": (1, 16, 16, 16)})
    with pytest.raises(SettingsError, match="rank"):
        build_graph(model, {"x": (1, 16, 16)})
    with pytest.raises(SettingsError, match="fixed at 16"):
        build_graph(model, {"x": (1, 16, 16, 8)})


def test_parse_input_shape() -> None:
    assert parse_input_shape("x=1x3x48x320") == ("x", (1, 3, 48, 320))
    assert parse_input_shape("sr=scalar") == ("sr", ()) == parse_input_shape("sr=")  # rank 0 (silero-vad's sr)
    for bad in ("x", "=1x3", "x=1xa", "x=0x3"):
        with pytest.raises(SettingsError):
            parse_input_shape(bad)


def test_nodes_are_sorted_and_unnamed_nodes_get_stable_names() -> None:
    model = builders.conv_stack(2)
    nodes = list(model.graph.node)
    for n in nodes:
        n.name = ""
    del model.graph.node[:]
    model.graph.node.extend(reversed(nodes))
    g = build_graph(model)
    assert [n.op_type for n in g.nodes] == ["Conv", "Relu", "Conv", "Relu"]
    assert len({n.name for n in g.nodes}) == 4
    assert [e.src for e in g.edges] == [g.nodes[0].name, g.nodes[1].name, g.nodes[2].name]
    assert build_graph(model).nodes == g.nodes  # deterministic


def test_constant_weights_become_initializers() -> None:
    model = builders.conv_stack(1)
    w = model.graph.initializer[0]
    const = helper.make_node("Constant", [], [w.name], name="const_w", value=w)
    del model.graph.initializer[0]
    model.graph.node.insert(0, const)
    g = build_graph(model)
    assert [n.op_type for n in g.nodes] == ["Conv", "Relu"]
    assert g.node("conv_0").tunable and g.node("conv_0").params > 0


def test_original_model_is_not_modified() -> None:
    model = builders.conv_stack(2)
    before = model.SerializeToString()
    build_graph(model, {"x": (1, 16, 16, 16)})
    assert model.SerializeToString() == before


def test_residual_edges() -> None:
    g = build_graph(builders.residual_net(1))
    srcs = {e.src for e in g.edges if e.dst == "block0_add"}
    assert srcs == {"stem_relu", "block0_b"}


def test_upgrade_opset() -> None:
    model = builders.conv_stack(1)
    model.opset_import[0].version = 11
    upgraded = upgrade_opset(model, 13)
    assert upgraded.opset_import[0].version == 13
    assert upgrade_opset(upgraded, 13) is upgraded


# --- bad input: one clear error naming the file --------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="missing.onnx: no such file"):
        load_model(tmp_path / "missing.onnx")


def test_not_onnx(tmp_path: Path) -> None:
    path = tmp_path / "junk.onnx"
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ModelError, match="junk.onnx: not an ONNX model"):
        load_model(path)


def test_text_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.onnx"
    path.write_text("this is not a model\n")
    with pytest.raises(ModelError, match="notes.onnx"):
        load_model(path)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.onnx"
    path.write_bytes(b"")
    with pytest.raises(ModelError, match="empty.onnx: file is empty"):
        load_model(path)


def test_truncated(tmp_path: Path) -> None:
    data = builders.residual_net().SerializeToString()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="cut.onnx"):
        load_model(path)


def test_cycle(tmp_path: Path) -> None:
    a = helper.make_node("Add", ["x", "b_out"], ["a_out"], name="a")
    b = helper.make_node("Relu", ["a_out"], ["b_out"], name="b")
    graph = helper.make_graph(
        [a, b], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("b_out", TensorProto.FLOAT, [1])],
    )
    path = _save(helper.make_model(graph), tmp_path / "cycle.onnx")
    with pytest.raises(ModelError, match="cycle.onnx: the graph has a cycle"):
        load_model(path)


def test_no_nodes(tmp_path: Path) -> None:
    graph = helper.make_graph([], "g", [], [])
    path = _save(helper.make_model(graph), tmp_path / "nodes.onnx")
    with pytest.raises(ModelError, match="nodes.onnx: the graph has no nodes"):
        load_model(path)


def test_external_data_missing(tmp_path: Path) -> None:
    model = builders.conv_stack(1, channels=32)
    path = tmp_path / "ext.onnx"
    onnx.save(model, str(path), save_as_external_data=True, location="ext.bin", size_threshold=0)
    assert load_model(path).node("conv_0").params > 0  # external data next to the file loads
    (tmp_path / "ext.bin").unlink()
    with pytest.raises(ModelError, match="ext.onnx: external data"):
        load_model(path)


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="is a directory"):
        load_model(tmp_path)


def test_model_keeps_dynamic_inputs_when_shapes_are_given() -> None:
    w = np.zeros((8, 3, 3, 3), np.float32)
    model = _single("Conv", ["batch", 3, 10, 10], w, ["batch", 8, 8, 8])
    g = build_graph(model, {"x": (4, 3, 10, 10)})
    assert g.inputs[0].shape == (4, 3, 10, 10)  # described concretely
    dims = g.model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch"  # the model transforms start from stays dynamic

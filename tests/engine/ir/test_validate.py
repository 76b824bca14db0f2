"""Validation at load: models ONNX Runtime cannot run are refused with the reason; valid ones are not."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from engine.errors import ModelError, SettingsError
from engine.ir.graph import load_model, parse_input_shape
from engine.ir.shapes import infer_shapes
from engine.ir.validate import one_line
from tests.engine.fuzz.models import base_model


def _save(model: onnx.ModelProto, tmp_path: Path, name: str = "m.onnx") -> Path:
    path = tmp_path / name
    onnx.save(model, path)
    return path


def _if_model() -> onnx.ModelProto:
    """y = x + 1 if cond else x - 1: a boolean graph input steering an If."""
    one = numpy_helper.from_array(np.ones(4, np.float32), "one")
    then_g = helper.make_graph([helper.make_node("Add", ["x", "one"], ["t"])], "then", [],
                               [helper.make_tensor_value_info("t", TensorProto.FLOAT, [4])])
    else_g = helper.make_graph([helper.make_node("Sub", ["x", "one"], ["e"])], "else", [],
                               [helper.make_tensor_value_info("e", TensorProto.FLOAT, [4])])
    graph = helper.make_graph(
        [helper.make_node("If", ["cond"], ["y"], name="branch", then_branch=then_g, else_branch=else_g)], "if",
        [helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
         helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])], initializer=[one])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_valid_base_model_loads(tmp_path: Path) -> None:
    graph = load_model(_save(base_model(), tmp_path))
    assert [n.op_type for n in graph.nodes] == ["Conv", "Relu"]


def test_boolean_input_model_loads(tmp_path: Path) -> None:
    graph = load_model(_save(_if_model(), tmp_path))
    assert {t.name: t.dtype for t in graph.inputs} == {"cond": "bool", "x": "float32"}


@pytest.mark.parametrize(
    ("attrs", "reason"),
    [
        ({"strides": [0, 0]}, "strides must only contain positive values"),
        ({"pads": [-100] * 4}, "pads must not contain negative values"),
        ({"group": 0}, "group: 0"),
        ({"kernel_shape": [10**9, 10**9]}, "kernel_shape [1000000000, 1000000000] does not match"),
    ],
)
def test_conv_attributes_ort_refuses_are_refused(tmp_path: Path, attrs: dict, reason: str) -> None:
    model = base_model({"pads": [1, 1, 1, 1], "kernel_shape": [3, 3], **attrs})
    path = _save(model, tmp_path)
    with pytest.raises(ModelError) as info:
        load_model(path)
    assert str(path) in str(info.value) and reason in str(info.value)
    assert "\n" not in str(info.value)


def test_wrong_weight_dtype_opset_and_domain_are_refused(tmp_path: Path) -> None:
    bad = base_model(weight=np.zeros((4, 3, 3, 3), np.float64))
    with pytest.raises(ModelError, match="tensor\\(double\\)"):
        load_model(_save(bad, tmp_path, "dtype.onnx"))
    with pytest.raises(ModelError, match="99"):
        load_model(_save(base_model(opset=99), tmp_path, "opset.onnx"))
    model = base_model()
    model.graph.node.append(helper.make_node("Mystery", ["y"], ["z"], domain="com.example"))
    model.graph.output[0].name = "z"
    model.opset_import.append(helper.make_opsetid("com.example", 1))
    with pytest.raises(ModelError, match="com.example:Mystery"):
        load_model(_save(model, tmp_path, "domain.onnx"))


def test_no_outputs_and_nan_weights_are_refused(tmp_path: Path) -> None:
    model = base_model()
    del model.graph.output[:]
    with pytest.raises(ModelError, match="no outputs"):
        load_model(_save(model, tmp_path, "noout.onnx"))
    nan = base_model(weight=np.full((4, 3, 3, 3), np.nan, np.float32))
    with pytest.raises(ModelError, match="108 NaN values"):
        load_model(_save(nan, tmp_path, "nan.onnx"))


def test_external_data_outside_the_folder_is_never_read(tmp_path: Path) -> None:
    secret = tmp_path / "secret.bin"
    secret.write_bytes(bytes(432))
    (tmp_path / "sub").mkdir()
    model = base_model()
    w = model.graph.initializer[0]
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    w.external_data.add(key="location", value="../secret.bin")
    with pytest.raises(ModelError, match="outside the model's folder"):
        load_model(_save(model, tmp_path / "sub"))
    w.external_data[0].value = "weights.bin"
    (tmp_path / "sub" / "weights.bin").write_bytes(bytes(432))
    w.external_data.add(key="offset", value="400")
    with pytest.raises(ModelError, match="32 bytes at offset 400 of .weights.bin., the tensor needs 432"):
        load_model(_save(model, tmp_path / "sub"))


def test_dims_beyond_int64_are_settings_errors(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="beyond"):
        parse_input_shape("x=1x" + "9" * 30)
    with pytest.raises(SettingsError, match="beyond"):
        load_model(_save(base_model(), tmp_path), {"x": (1, 3, 8, 2**70)})


def test_symbolic_inference_leaves_no_file_in_the_working_folder(tmp_path: Path, monkeypatch) -> None:
    # ORT's symbolic inference cannot finish CenterCropPad into an undeclared output and used to
    # save sym_shape_infer_temp.onnx into the working folder.
    graph = helper.make_graph(
        [helper.make_node("CenterCropPad", ["x", "s"], ["y"], name="crop")], "crop",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 4]),
         helper.make_tensor_value_info("s", TensorProto.INT64, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])  # CenterCropPad is opset 18: unknown here
    model.ir_version = 8
    monkeypatch.chdir(tmp_path)
    _, tensors = infer_shapes(model, "crop")
    assert tensors["x"].shape == (4, 4)
    assert os.listdir(tmp_path) == []


def test_one_line_escapes_control_characters() -> None:
    assert one_line("a\x1b[31mb\nsecond") == "a\\x1b[31mb"
    assert len(one_line("x" * 1000)) == 300


def test_an_input_too_big_to_allocate_is_refused(tmp_path: Path, capfd) -> None:
    from engine.cli.main import main

    model = base_model()
    model.graph.input[0].type.tensor_type.shape.dim[3].dim_param = "w"  # a dynamic width
    path = _save(model, tmp_path)
    with pytest.raises(SettingsError, match="would hold 5.15e\\+10 elements"):
        load_model(path, {"x": (1, 3, 8, 2**31 - 1)})
    capfd.readouterr()
    assert main(["profile", str(path), "--input", "x=1x3x8x2147483647", "--repeats", "3"]) == 2
    err = capfd.readouterr().err
    assert len(err.splitlines()) == 1 and str(path) in err and "Traceback" not in err

"""A layer quantized alone and spliced back computes what ORT's whole-model quantizer builds for it, bit for bit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from engine.ir.graph import build_graph, load_model
from engine.passes.layer_variants import VariantBuilder, applicable
from engine.passes.base import clone
from engine.passes.int8_splice import SingleLayerInt8
from engine.passes.precision import PrecisionPass, prepare, random_calibration
from tests import builders


def _outputs(model: onnx.ModelProto, feeds: list[dict[str, np.ndarray]]) -> list[list[np.ndarray]]:
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    so.intra_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return [session.run(None, f) for f in feeds]


def _check_every_layer(model: onnx.ModelProto) -> int:
    """Every int8 layer's variant against PrecisionPass on the whole model; the number spliced."""
    graph = build_graph(model)
    calib = random_calibration(graph.model, 4)
    feeds = random_calibration(graph.model, 3, seed=7)
    spliced = 0
    with VariantBuilder(graph.model, calib) as builder:
        for layer in [n.name for n in graph.layers if applicable(graph, n, "int8")]:
            built = builder.build([layer], "int8")
            whole = PrecisionPass(calibration=calib, int8=[layer])(graph.model).model
            onnx.checker.check_model(built)
            assert {n.name for n in graph.model.graph.node} <= {n.name for n in built.graph.node}, layer
            got, want = _outputs(built, feeds), _outputs(whole, feeds)
            assert all(np.array_equal(a, b) for ga, gb in zip(got, want) for a, b in zip(ga, gb)), layer
            spliced += built.SerializeToString() != whole.SerializeToString()
    return spliced


@pytest.mark.parametrize("name", ["conv_stack", "residual_net", "concat_net", "gemm_mlp", "transformer_block"])
def test_spliced_layers_compute_what_the_whole_model_quantizer_builds(name: str) -> None:
    model = getattr(builders, name)()
    graph = build_graph(model)
    layers = [n for n in graph.layers if applicable(graph, n, "int8")]
    # The first build calibrates through the whole-model path; every later one is spliced.
    assert _check_every_layer(model) == len(layers) - 1


def test_digits_layers_spliced_bit_for_bit(digits_model: Path) -> None:
    model = load_model(digits_model, {"input": (1, 1, 8, 8)}).model
    assert _check_every_layer(model) >= 5


def _shared_weight_model() -> onnx.ModelProto:
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((8, 8)).astype(np.float32), "w")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["a"], name="mm_a"), helper.make_node("MatMul", ["a", "w"], ["y"], name="mm_b")]
    graph = helper.make_graph(nodes, "shared", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 8])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_a_shared_weight_or_an_input_that_is_a_graph_output_is_not_spliced() -> None:
    shared = SingleLayerInt8(prepare(clone(_shared_weight_model())))
    assert shared.one_node_model("mm_a") is None
    model = builders.conv_stack(2)
    model.graph.output.append(helper.make_tensor_value_info("conv_0_relu_out", TensorProto.FLOAT, None))
    splicer = SingleLayerInt8(prepare(clone(model)))
    assert splicer.one_node_model("conv_1") is None  # it reads conv_0_relu_out, now a graph output
    assert splicer.one_node_model("conv_0") is not None
    assert splicer.one_node_model("no such layer") is None
    # The builder then quantizes the whole model: still correct.
    assert _check_every_layer(_shared_weight_model()) == 0

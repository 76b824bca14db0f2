"""Cross-layer equalization keeps fp32 outputs and narrows the spread of per-channel weight ranges."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from engine.passes.cle import CLEPass, find_pairs


def _net(activation: str, norm: bool, depthwise_second: bool) -> onnx.ModelProto:
    """x -> Conv A (channel scales spanning 1e-2..1e2) -> [BN] -> act -> Conv B (full or depthwise) -> Conv C."""
    rng = np.random.default_rng(0)
    c = 8
    spread = np.logspace(-2, 2, c).astype(np.float32)
    inits = [numpy_helper.from_array((rng.standard_normal((c, 3, 3, 3)) * spread[:, None, None, None]).astype(np.float32), "wa"),
             numpy_helper.from_array(rng.standard_normal(c).astype(np.float32), "ba")]
    nodes = [helper.make_node("Conv", ["x", "wa", "ba"], ["a"], name="A", pads=[1] * 4)]
    t = "a"
    if norm:
        for name, value in (("g", rng.uniform(0.5, 2, c)), ("beta", rng.standard_normal(c)), ("mean", rng.standard_normal(c)),
                            ("var", rng.uniform(0.5, 2, c))):
            inits.append(numpy_helper.from_array(value.astype(np.float32), name))
        nodes.append(helper.make_node("BatchNormalization", [t, "g", "beta", "mean", "var"], ["n"], name="BN", epsilon=1e-3))
        t = "n"
    if activation == "PRelu":
        inits.append(numpy_helper.from_array(rng.uniform(0, 0.3, (c, 1, 1)).astype(np.float32), "slope"))
        nodes.append(helper.make_node("PRelu", [t, "slope"], ["r"], name="act"))
        t = "r"
    elif activation == "Clip":
        inits += [numpy_helper.from_array(np.array(0, np.float32), "lo"), numpy_helper.from_array(np.array(6, np.float32), "hi")]
        nodes.append(helper.make_node("Clip", [t, "lo", "hi"], ["r"], name="act"))
        t = "r"
    elif activation:
        nodes.append(helper.make_node(activation, [t], ["r"], name="act"))
        t = "r"
    shape_b = (c, 1, 3, 3) if depthwise_second else (c, c, 1, 1)
    inits.append(numpy_helper.from_array(rng.standard_normal(shape_b).astype(np.float32), "wb"))
    nodes.append(helper.make_node("Conv", [t, "wb"], ["b"], name="B", group=c if depthwise_second else 1, pads=[1] * 4 if depthwise_second else [0] * 4))
    inits.append(numpy_helper.from_array(rng.standard_normal((4, c, 1, 1)).astype(np.float32), "wc"))
    nodes.append(helper.make_node("Conv", ["b", "wc"], ["y"], name="C"))
    graph = helper.make_graph(nodes, "cle", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def _spread(model: onnx.ModelProto, node: str) -> float:
    """max/min over output channels of the effective weight range (BN folded in when present)."""
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    w = inits[next(n for n in model.graph.node if n.name == node).input[1]]
    r = np.abs(w).reshape(w.shape[0], -1).max(axis=1)
    if "g" in inits:
        r = r * np.abs(inits["g"]) / np.sqrt(inits["var"] + 1e-3)
    return float(r.max() / r.min())


@pytest.mark.parametrize("activation", ["Relu", "PRelu", "LeakyRelu", ""])
@pytest.mark.parametrize("norm", [True, False])
@pytest.mark.parametrize("depthwise", [True, False])
def test_equalized_model_computes_the_same_and_ranges_narrow(activation: str, norm: bool, depthwise: bool) -> None:
    model = _net(activation, norm, depthwise)
    assert [(p.first, p.second) for p in find_pairs(model)] == [("A", "B"), ("B", "C")]
    result = CLEPass()(model)
    assert result.modified
    x = np.random.default_rng(1).standard_normal((1, 3, 8, 8)).astype(np.float32)
    before, after = _run(model, x), _run(result.model, x)
    np.testing.assert_allclose(after, before, rtol=1e-4, atol=1e-4 * np.abs(before).max())
    assert _spread(result.model, "A") < _spread(model, "A") / 10  # 1e4 -> about 1e2 or less


def test_relu6_only_with_the_stated_approximation() -> None:
    model = _net("Clip", False, False)
    assert [(p.first, p.second) for p in find_pairs(model)] == [("B", "C")]  # exact pairs only
    result = CLEPass(approximate=True)(model)
    assert ("A", "B") in [(p.first, p.second) for p in find_pairs(model, approximate=True)]
    assert any("ReLU6 replaced by ReLU" in n for n in result.notes)
    clip = next(n for n in result.model.graph.node if n.name == "act")
    assert list(clip.input) == ["a", "lo"]  # no upper bound left


def test_shared_weights_and_second_readers_block_a_pair() -> None:
    model = _net("Relu", False, False)
    model.graph.output.append(helper.make_tensor_value_info("r", TensorProto.FLOAT, None))  # the activation is also an output
    assert ("A", "B") not in [(p.first, p.second) for p in find_pairs(model)]
    assert not CLEPass(layers={"B"})(model).modified  # layers name the pair's second conv

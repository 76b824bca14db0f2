"""CLE across hard-swish and swish (exact, through a Mul on the gate) and ReLU6 in opset-10 form (approximate)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from engine.passes.cle import CLEPass, find_pairs

C = 8


def _gated(form: str, opset: int = 14) -> onnx.ModelProto:
    """x -> Conv A (channel scales 1e-2..1e2, bias) -> BN -> gated activation -> Conv B (1x1) -> y."""
    rng = np.random.default_rng(0)
    spread = np.logspace(-2, 2, C)
    inits = [numpy_helper.from_array((rng.standard_normal((C, 3, 3, 3)) * spread[:, None, None, None]).astype(np.float32), "wa"),
             numpy_helper.from_array(rng.standard_normal(C).astype(np.float32), "ba"),
             numpy_helper.from_array(rng.standard_normal((4, C, 1, 1)).astype(np.float32), "wb")]
    for name, value in (("g", rng.uniform(0.5, 2, C)), ("beta", rng.standard_normal(C)), ("mean", np.zeros(C)), ("var", np.ones(C))):
        inits.append(numpy_helper.from_array(value.astype(np.float32), name))
    for name, value in (("three", 3.0), ("zero", 0.0), ("six", 6.0)):
        inits.append(numpy_helper.from_array(np.array(value, np.float32), name))
    nodes = [helper.make_node("Conv", ["x", "wa", "ba"], ["a"], name="A", pads=[1] * 4),
             helper.make_node("BatchNormalization", ["a", "g", "beta", "mean", "var"], ["n"], name="BN")]
    if form == "HardSwish":
        nodes.append(helper.make_node("HardSwish", ["n"], ["h"], name="act"))
    elif form == "hardsigmoid":
        nodes += [helper.make_node("HardSigmoid", ["n"], ["gate"], name="gate", alpha=1 / 6, beta=0.5),
                  helper.make_node("Mul", ["n", "gate"], ["h"], name="act")]
    elif form == "clip":  # paddle's export: x * Clip(x + 3, 0, 6) / 6
        nodes += [helper.make_node("Add", ["n", "three"], ["p"], name="gate"),
                  helper.make_node("Clip", ["p", "zero", "six"], ["q"], name="clip"),
                  helper.make_node("Mul", ["n", "q"], ["m"], name="act"),
                  helper.make_node("Div", ["m", "six"], ["h"], name="div")]
    else:  # swish / SiLU
        nodes += [helper.make_node("Sigmoid", ["n"], ["gate"], name="gate"), helper.make_node("Mul", ["gate", "n"], ["h"], name="act")]
    nodes.append(helper.make_node("Conv", ["h", "wb"], ["y"], name="B"))
    graph = helper.make_graph(nodes, "gated", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _outputs(model: onnx.ModelProto, x: np.ndarray, extra: str | None = None) -> list[np.ndarray]:
    if extra:
        model = onnx.ModelProto.FromString(model.SerializeToString())
        model.graph.output.append(onnx.ValueInfoProto(name=extra))
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})


@pytest.mark.parametrize("form", ["HardSwish", "hardsigmoid", "clip", "swish"])
def test_gated_activations_equalize_exactly(form: str) -> None:
    model = _gated(form)
    pairs = find_pairs(model)
    assert [(p.first, p.second, p.kind) for p in pairs] == [("A", "B", "gated")]
    result = CLEPass()(model)
    assert result.modified and any("per-channel Mul" in n for n in result.notes)
    x = np.random.default_rng(1).standard_normal((1, 3, 8, 8)).astype(np.float32) * 2
    before, inner_before = _outputs(model, x, "h")
    after, inner_after = _outputs(result.model, x, "h")
    np.testing.assert_allclose(after, before, rtol=1e-4, atol=1e-4 * np.abs(before).max())

    def spread(v: np.ndarray) -> float:  # max/min of the per-channel ranges of B's input
        r = np.abs(v).reshape(C, -1).max(axis=1)
        return float(r.max() / r.min())

    assert spread(inner_after[0]) < spread(inner_before[0]) / 10
    assert not any("high-bias" in n for n in result.notes)  # not linear above 0: nothing absorbed


def test_a_gate_with_a_second_reader_is_not_a_pair() -> None:
    model = _gated("hardsigmoid")
    model.graph.output.append(helper.make_tensor_value_info("gate", TensorProto.FLOAT, None))
    assert find_pairs(model) == []


def test_relu6_as_attributes_before_opset_11() -> None:
    rng = np.random.default_rng(2)
    inits = [numpy_helper.from_array((rng.standard_normal((C, 3, 1, 1)) * np.logspace(-1, 1, C)[:, None, None, None]).astype(np.float32), "wa"),
             numpy_helper.from_array(rng.standard_normal((4, C, 1, 1)).astype(np.float32), "wb")]
    nodes = [helper.make_node("Conv", ["x", "wa"], ["a"], name="A"),
             helper.make_node("Clip", ["a"], ["r"], name="act", min=0.0, max=6.0),
             helper.make_node("Conv", ["r", "wb"], ["y"], name="B")]
    graph = helper.make_graph(nodes, "r6", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 4, 4])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 10)])
    model.ir_version = 6
    assert find_pairs(model) == []
    assert [p.kind for p in find_pairs(model, approximate=True)] == ["relu6"]
    result = CLEPass(approximate=True)(model)
    clip = next(n for n in result.model.graph.node if n.name == "act")
    assert [a.name for a in clip.attribute] == ["min"]
    assert any("ReLU6 replaced by ReLU (upper bound 6 dropped)" in n for n in result.notes)
    x = rng.uniform(0, 0.05, (1, 3, 4, 4)).astype(np.float32)  # small inputs: nothing reaches 6, so no change
    np.testing.assert_allclose(_outputs(result.model, x)[0], _outputs(model, x)[0], rtol=1e-4, atol=1e-5)


def test_the_cle_variant_sits_on_the_pairs_second_conv() -> None:
    """With a BatchNormalization between, CLE scales the normalization: the first conv's int8 is unchanged,
    the second's (its input activation and weight columns evened out) is what CLE changes."""
    from engine.passes.layer_variants import VariantBuilder

    model = _gated("swish")
    x = np.random.default_rng(3).standard_normal((1, 3, 8, 8)).astype(np.float32)
    builder = VariantBuilder(model, [{"x": np.random.default_rng(s).standard_normal((1, 3, 8, 8)).astype(np.float32)}
                                     for s in range(4)])
    assert [name for name, _ in builder.int8_variants("A", "minmax", ("cle",))] == ["minmax"]
    second = dict(builder.int8_variants("B", "minmax", ("cle",)))
    assert set(second) == {"minmax", "minmax+cle"}
    reference = _outputs(model, x)[0]
    plain, equalized = (_outputs(second[k], x)[0] for k in ("minmax", "minmax+cle"))
    error = lambda out: float(np.abs(out - reference).mean())
    assert error(equalized) != pytest.approx(error(plain), rel=1e-3)  # a different int8 model, not a copy

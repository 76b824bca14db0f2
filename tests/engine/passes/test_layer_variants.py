"""The sensitivity sweep's variant builder: a thin caller of PrecisionPass sharing one calibration."""

from __future__ import annotations

import onnx
import pytest

from engine.errors import LayerLabError
from engine.ir.graph import build_graph
from engine.passes.layer_variants import VariantBuilder, applicable
from engine.passes.precision import PrecisionPass, random_calibration
from tests import builders


@pytest.mark.parametrize("routine", ["int8", "int8_dynamic", "fp16"])
def test_variants_are_the_precision_pass(routine: str) -> None:
    graph = build_graph(builders.gemm_mlp((64, 128, 32, 10)))
    calib = random_calibration(graph.model, 4)
    with VariantBuilder(graph.model, calib) as builder:
        for layers in (["fc1"], ["fc0", "fc2"]):
            built = builder.build(layers, routine)
            direct = PrecisionPass(calibration=calib, **{routine: layers})(graph.model).model
            assert built.SerializeToString() == direct.SerializeToString(), (routine, layers)
            assert {n.name for n in graph.model.graph.node} <= {n.name for n in built.graph.node}
    onnx.checker.check_model(built)


def test_applicable_and_unknown_routines() -> None:
    convs, mlp = build_graph(builders.conv_stack()), build_graph(builders.gemm_mlp())
    conv, fc = convs.layers[0], mlp.node("fc0")
    assert applicable(convs, conv, "int8") and applicable(convs, conv, "fp16") and not applicable(convs, conv, "int8_dynamic")
    assert applicable(mlp, fc, "int8_dynamic") and applicable(mlp, fc, "int8")
    with pytest.raises(LayerLabError, match="int4"):
        applicable(convs, conv, "int4")
    with VariantBuilder(builders.conv_stack(), []) as builder, pytest.raises(LayerLabError, match="int4"):
        builder.build(["conv_0"], "int4")

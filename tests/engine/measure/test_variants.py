"""The profiler's whole-model routine variants: built by PrecisionPass, with reasons for unconverted layers."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from engine.errors import LayerLabError
from engine.ir.graph import build_graph
from engine.measure.variants import build_variant, int8_variant, random_feeds
from engine.passes.precision import PrecisionPass, unconverted
from tests import builders


def _run(model, feeds):  # type: ignore[no-untyped-def]
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)[0]


@pytest.mark.parametrize("routine", ["int8", "fp16"])
def test_every_layer_converted_and_close_to_fp32(routine: str) -> None:
    graph = build_graph(builders.conv_stack())
    feeds = random_feeds(graph)
    variant, reasons = build_variant(graph, routine, feeds)
    assert reasons == {} and unconverted(variant, [n.name for n in graph.layers], routine) == []
    ref = _run(graph.model, feeds)
    assert np.abs(_run(variant, feeds) - ref).max() < 0.1 * np.abs(ref).max()


def test_int8_dynamic_applies_to_matmul_and_gemm_only() -> None:
    convs = build_graph(builders.conv_stack())
    variant, reasons = build_variant(convs, "int8_dynamic", random_feeds(convs))
    assert variant is convs.model and set(reasons) == {n.name for n in convs.layers}
    assert all("MatMul/Gemm" in why for why in reasons.values())
    mlp = build_graph(builders.gemm_mlp((64, 128, 32, 10)))
    variant, reasons = build_variant(mlp, "int8_dynamic", random_feeds(mlp))
    assert reasons == {}
    assert {n.name: n.op_type for n in variant.graph.node if n.name in ("fc0", "fc1", "fc2")} == dict.fromkeys(("fc0", "fc1", "fc2"), "MatMulInteger")


def test_fp32_unknown_routine_and_int8_variant() -> None:
    graph = build_graph(builders.conv_stack())
    feeds = random_feeds(graph)
    assert build_variant(graph, "fp32", feeds) == (graph.model, {})
    with pytest.raises(LayerLabError, match="unknown routine 'int4'"):
        build_variant(graph, "int4", feeds)
    assert int8_variant(graph, [], feeds) is graph.model
    mixed = int8_variant(graph, ["conv_1"], feeds)
    direct = PrecisionPass(int8=["conv_1"], calibration=[feeds, feeds])(graph.model).model
    assert mixed.SerializeToString() == direct.SerializeToString()
    assert unconverted(mixed, ["conv_0", "conv_1"], "int8") == ["conv_0"]

"""Least-squares reconstruction of the consumers ConvTranspose, grouped Conv and auto_pad Conv.

The producer's strong channels are copies (x2, through a ReLU) of its weak ones, so pruning the weak ones
loses nothing a refit cannot recover: a right im2col refits the consumer to the unpruned outputs; a
wrong one cannot. Plain pruning (no refit) loses a lot on the same model."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper

from engine.model.plan import PruneSettings
from engine.passes.prune import PrunePass
from tests import builders


def _doubled_producer(b: builders._Builder, pairs: list[tuple[int, int]], channels: int) -> str:
    """conv c1 (3 -> channels) + ReLU whose channel ``strong`` is 2x channel ``weak`` for each pair."""
    w = b.rng.standard_normal((channels, 3, 3, 3)).astype(np.float32) * 0.3
    bias = b.rng.standard_normal(channels).astype(np.float32) * 0.1
    for weak, strong in pairs:
        w[strong], bias[strong] = 2 * w[weak], 2 * bias[weak]
    b.inits += [numpy_helper.from_array(w, "c1.w"), numpy_helper.from_array(bias, "c1.b")]
    return b.node("Relu", [b.node("Conv", ["x", "c1.w", "c1.b"], name="c1", pads=[1, 1, 1, 1])], name="c1_relu")


def _model(kind: str) -> onnx.ModelProto:
    b = builders._Builder(6)
    if kind == "grouped":  # 2 groups of 4: pairs inside each group, so dropping a column keeps its copy
        y = _doubled_producer(b, [(0, 1), (2, 3), (4, 5), (6, 7)], 8)
        out, shape = b.conv(y, 8, 6, name="consumer", group=2, relu=False), [1, 6, 8, 8]
    elif kind == "auto_pad":
        y = _doubled_producer(b, [(0, 4), (1, 5), (2, 6), (3, 7)], 8)
        w = b.weight("consumer.w", (5, 8, 3, 3))
        out = b.node("Conv", [y, w, b.weight("consumer.b", (5,))], name="consumer", auto_pad="SAME_LOWER", strides=[2, 2])
        shape = [1, 5, 4, 4]
    else:  # ConvTranspose, stride 2 with output_padding
        y = _doubled_producer(b, [(0, 4), (1, 5), (2, 6), (3, 7)], 8)
        w = b.weight("consumer.w", (8, 5, 3, 3))
        out = b.node("ConvTranspose", [y, w, b.weight("consumer.b", (5,))], name="consumer", strides=[2, 2],
                     pads=[1, 1, 1, 1], output_padding=[1, 1])
        shape = [1, 5, 16, 16]
    return builders.make_model(b, [1, 3, 8, 8], out, shape)


def _run(model: onnx.ModelProto, xs: list[np.ndarray]) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(None, {"x": x})[0] for x in xs])


@pytest.mark.parametrize("kind", ["convtranspose", "grouped", "auto_pad"])
def test_refit_recovers_what_plain_pruning_loses(kind: str) -> None:
    model = _model(kind)
    rng = np.random.default_rng(7)
    calibration = [{"x": rng.standard_normal((1, 3, 8, 8)).astype(np.float32)} for _ in range(32)]
    held_out = [rng.standard_normal((1, 3, 8, 8)).astype(np.float32) for _ in range(4)]
    base = _run(model, held_out)
    error = {}
    for refit in (False, True):
        result = PrunePass({"c1": PruneSettings(0.5, "structured", reconstruct=refit)}, calibration)(model)
        pruned = numpy_helper.to_array(next(t for t in result.model.graph.initializer if t.name == "c1.w"))
        assert pruned.shape[0] == 4  # the weak half went (l1): what is left can stand in for it
        error[refit] = float(np.linalg.norm(_run(result.model, held_out) - base) / np.linalg.norm(base))
        assert any("refitted 1 layer" in n for n in result.notes) == refit, result.notes
    assert error[False] > 0.2 and error[True] < 1e-3, error


def test_what_the_fit_does_not_cover_is_named_in_the_notes() -> None:
    model = _model("convtranspose")
    node = next(n for n in model.graph.node if n.name == "consumer")
    node.attribute.append(helper.make_attribute("output_shape", [16, 16]))
    del node.attribute[[a.name for a in node.attribute].index("output_padding")]
    calibration = [{"x": np.ones((1, 3, 8, 8), np.float32)}]
    notes = PrunePass({"c1": PruneSettings(0.5, "structured")}, calibration)(model).notes
    assert any("reconstruction skipped consumer (a grouped ConvTranspose or one with output_shape: pruned without a refit)"
               in n for n in notes), notes


def test_data_aware_importance_of_a_grouped_consumer_pairs_each_input_with_its_groups_weights() -> None:
    from engine.ir.graph import build_graph
    from engine.passes.prune import prune_group
    from engine.passes.reconstruct import activation_importance, capture
    from tests.engine.passes.test_prune_layouts import _grouped

    model = _grouped(8, 6, 2)  # c1 (8) -> g: 2 groups of 4 inputs, 3 outputs
    rng = np.random.default_rng(3)
    calibration = [{"x": rng.standard_normal((1, 3, 6, 6)).astype(np.float32)} for _ in range(3)]
    group = prune_group(build_graph(model), "c1")
    assert group.consumers == ["g"] and group.channels == 4
    x = np.concatenate(capture(model, ["c1_relu_out"], calibration)["c1_relu_out"])
    energy = (x.astype(np.float64) ** 2).mean(axis=(0, 2, 3))  # per input channel
    w = numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == "g.w")).astype(np.float64)
    meets = np.array([(w[(c // 4) * 3:(c // 4 + 1) * 3, c % 4] ** 2).sum() for c in range(8)])  # its group's rows only
    score = energy * meets
    expected = np.array([score[k] + score[k + 4] for k in range(4)]) / score.mean()
    np.testing.assert_allclose(activation_importance(model, group, calibration), expected, rtol=1e-6)

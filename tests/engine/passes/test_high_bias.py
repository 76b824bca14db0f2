"""High-bias absorption after CLE: fp32 outputs unchanged where it is exact, activation ranges narrower."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from engine.passes.cle import CLEPass
from engine.passes.cle_pairs import find_pairs
from engine.passes.high_bias import absorb_high_biases

C = 6


def _run(model: onnx.ModelProto, x: np.ndarray, *extra: str) -> list[np.ndarray]:
    model = onnx.ModelProto.FromString(model.SerializeToString())
    model.graph.output.extend(onnx.ValueInfoProto(name=t) for t in extra)
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})


def _net(norm: bool, pad_b: bool = False, x: np.ndarray | None = None, depthwise: bool = False) -> onnx.ModelProto:
    """x -> Conv A -> [BN] -> Relu -> Conv B (3x3) -> y; channels 0..2 sit far above 0 (high bias), the widest
    of them is channel 0. With ``norm``, BN's statistics are those of A's output on ``x``, scaled so every
    value stays within 2.5 standard deviations (so beta - 3 |gamma| is below every value: exact)."""
    rng = np.random.default_rng(0)
    wa = rng.standard_normal((C, 3, 1, 1)).astype(np.float32)
    high = np.array([40.0, 20.0, 10.0, 0.0, 0.0, 0.0])
    inits = [numpy_helper.from_array(wa, "wa"), numpy_helper.from_array(rng.standard_normal((C, 1, 3, 3) if depthwise else (4, C, 3, 3)).astype(np.float32), "wb"),
             numpy_helper.from_array(rng.standard_normal(C if depthwise else 4).astype(np.float32), "bb")]
    nodes = [helper.make_node("Conv", ["x", "wa"] + ([] if norm else ["ba"]), ["a"], name="A")]
    t = "a"
    if norm:
        a = np.einsum("oc,nchw->nohw", wa[:, :, 0, 0], x)
        mean = a.mean(axis=(0, 2, 3))
        dev = np.abs(a - mean[None, :, None, None]).max(axis=(0, 2, 3))
        gamma = rng.uniform(0.5, 2, C) * np.array([4, 2, 1, 1, 1, 1])
        for name, value in (("g", gamma), ("beta", high + rng.uniform(-0.1, 0.1, C)), ("mean", mean), ("var", (dev / 2.5) ** 2)):
            inits.append(numpy_helper.from_array(value.astype(np.float32), name))
        nodes.append(helper.make_node("BatchNormalization", ["a", "g", "beta", "mean", "var"], ["n"], name="BN", epsilon=0.0))
        t = "n"
    else:
        inits.append(numpy_helper.from_array(high.astype(np.float32), "ba"))
    nodes += [helper.make_node("Relu", [t], ["r"], name="act"),
              helper.make_node("Conv", ["r", "wb", "bb"], ["y"], name="B", pads=[1] * 4 if pad_b else [0] * 4,
                               group=C if depthwise else 1)]
    out = 4 if not pad_b else 6
    graph = helper.make_graph(nodes, "hb", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 6, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, C if depthwise else 4, out, out])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _x(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (1, 3, 6, 6)).astype(np.float32)


@pytest.mark.parametrize("depthwise", [False, True])
def test_batchnorm_statistics_absorb_exactly_and_narrow_the_activation(depthwise: bool) -> None:
    x = _x(1)
    model = _net(norm=True, x=x, depthwise=depthwise)
    result = CLEPass()(model)
    notes = [n for n in result.notes if n.startswith("high-bias absorption")]
    assert notes == ["high-bias absorption: 3 channel(s) of A moved into B's bias (from BatchNormalization statistics; "
                     "exact where the pre-activation stays above the amount moved)"]
    (before, r_before), (after, r_after) = _run(model, x, "r"), _run(result.model, x, "r")
    np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-4 * np.abs(before).max())
    # the per-tensor quantization range of the activation is set by its largest channel: it shrinks
    without = CLEPass(high_bias=False)(model).model
    r_cle = _run(without, x, "r")[1]
    assert r_after.max() < 0.7 * r_cle.max()  # 22.3 -> 12.1 here
    assert r_after.min() >= 0


def test_calibration_statistics_absorb_when_batchnorm_is_folded() -> None:
    model = _net(norm=False)
    samples = [{"x": _x(s)} for s in range(4)]
    pairs = find_pairs(model)
    plain = onnx.ModelProto.FromString(model.SerializeToString())
    notes = absorb_high_biases(plain, pairs, samples)
    assert notes and "from statistics of 4 calibration sample(s)" in notes[0] and notes[0].startswith("high-bias absorption: 3 channel")
    for sample in samples + [{"x": _x(9) * 0.5}]:  # exact on the calibration samples and on values within their range
        (before, r_before), (after, r_after) = _run(model, sample["x"], "r"), _run(plain, sample["x"], "r")
        np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-4 * np.abs(before).max())
        assert r_after.max() < r_before.max() - 5  # channel 0 sat above ~35: most of it moved into B
    assert absorb_high_biases(onnx.ModelProto.FromString(model.SerializeToString()), pairs, []) == []  # no samples, no stats


def test_padded_second_conv_absorbs_nothing() -> None:
    x = _x(1)
    model = _net(norm=True, pad_b=True, x=x)
    result = CLEPass()(model)
    assert not any(n.startswith("high-bias") for n in result.notes)
    np.testing.assert_allclose(_run(result.model, x)[0], _run(model, x)[0], rtol=1e-4, atol=1e-3)

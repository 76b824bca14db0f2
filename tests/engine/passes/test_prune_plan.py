"""Structured pruning from plans: a default that prunes every layer it can, per-layer overrides, and
data-aware reconstruction measured on the digits example."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from engine.ir.graph import build_graph, load_model
from engine.model.plan import Plan, PruneSettings
from engine.passes.manager import apply_plan, check_plan
from engine.passes.prune import PrunePass
from tests import builders


def _logits(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(None, {"input": x[i : i + 1]})[0] for i in range(len(x))])


@pytest.fixture(scope="module")
def digits(digits_model, digits_eval):  # type: ignore[no-untyped-def]
    data = np.load(digits_eval)
    x, labels = data["input:input"], data["labels"]
    calibration = [{"input": x[i : i + 16]} for i in range(0, 128, 16)]
    return load_model(digits_model, {"input": (1, 1, 8, 8)}), calibration, x[128:], labels[128:]


def test_default_prunes_every_layer_it_can_and_lists_the_rest(digits) -> None:  # type: ignore[no-untyped-def]
    graph, calibration, x, labels = digits
    plan = Plan.from_dict({"default": {"prune": {"ratio": 0.5, "mode": "structured"}}})
    assert check_plan(plan, graph) == []
    result = apply_plan(graph, plan, calibration)
    after = build_graph(result.model, {"input": (1, 1, 8, 8)})
    assert after.total_macs < 0.45 * graph.total_macs
    text = "\n".join(result.notes)
    assert "skipped 1 layer(s): /fc2/Gemm (tensor 'logits' is a graph output" in text
    assert "/conv2/Conv: kept 16 of 32 channels, with /res/conv_b/Conv" in text
    assert np.mean(_logits(result.model, x).argmax(1) == labels) > 0.8  # half of every layer, refitted


def test_layer_entry_overrides_the_default(digits) -> None:  # type: ignore[no-untyped-def]
    graph, _, _, _ = digits
    plan = Plan.from_dict({
        "default": {"prune": {"ratio": 0.5, "mode": "structured"}},
        "layers": {"/conv1/Conv": {"prune": None}, "/fc1/Gemm": {"prune": {"ratio": 0.25, "mode": "structured"}}},
    })
    notes = apply_plan(graph, plan).notes
    assert not any(n.startswith("/conv1/Conv") for n in notes)
    assert "/fc1/Gemm: kept 48 of 64 channels" in notes
    explicit = Plan.from_dict({"layers": {"/fc2/Gemm": {"prune": {"ratio": 0.5, "mode": "structured"}}}})
    assert any("graph output" in p for p in check_plan(explicit, graph))


def test_reconstruction_beats_plain_pruning_on_digits(digits) -> None:  # type: ignore[no-untyped-def]
    graph, calibration, x, labels = digits
    base = _logits(graph.model, x)
    errors, accuracy = {}, {}
    for reconstruct in (False, True):
        settings = {"/conv1/Conv": PruneSettings(0.5, "structured", reconstruct=reconstruct)}
        result = PrunePass(settings, calibration=calibration)(graph.model)
        out = _logits(result.model, x)
        errors[reconstruct] = float(np.mean((out - base) ** 2))
        accuracy[reconstruct] = float(np.mean(out.argmax(1) == labels))
        assert any("refitted" in n for n in result.notes) == reconstruct
    assert errors[True] < 0.2 * errors[False]
    assert accuracy[True] > accuracy[False] + 0.2 and accuracy[True] > 0.95


def test_data_aware_ranking_uses_the_calibration(digits) -> None:  # type: ignore[no-untyped-def]
    graph, calibration, x, labels = digits
    base = _logits(graph.model, x)
    err = {}
    for criterion in ("l1", "data"):
        settings = {"/conv2/Conv": PruneSettings(0.5, "structured", criterion, reconstruct=False)}
        err[criterion] = float(np.mean((_logits(PrunePass(settings, calibration)(graph.model).model, x) - base) ** 2))
    assert err["data"] < err["l1"]


def test_reconstruction_refits_a_gemm_exactly_when_it_can() -> None:
    # fc0's outputs 16..31 are 10x copies of 0..15: pruning the weak half and refitting fc1 loses nothing.
    model = builders.gemm_mlp((16, 32, 8), batch=64)
    w = onnx.numpy_helper.to_array(model.graph.initializer[0])
    model.graph.initializer[0].CopyFrom(onnx.numpy_helper.from_array(np.vstack([w[:16], 10 * w[:16]]), model.graph.initializer[0].name))
    b = onnx.numpy_helper.to_array(model.graph.initializer[1])
    model.graph.initializer[1].CopyFrom(onnx.numpy_helper.from_array(np.concatenate([b[:16], 10 * b[:16]]), model.graph.initializer[1].name))
    rng = np.random.default_rng(0)
    feeds = [{"x": rng.standard_normal((64, 16)).astype(np.float32)} for _ in range(2)]
    pruned = PrunePass({"fc0": PruneSettings(0.5, "structured")}, calibration=feeds)(model).model
    x = rng.standard_normal((64, 16)).astype(np.float32)

    def run(m: onnx.ModelProto) -> np.ndarray:
        return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]

    np.testing.assert_allclose(run(pruned), run(model), rtol=1e-3, atol=1e-2)

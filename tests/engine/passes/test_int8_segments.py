"""int8 window by window (huge graphs) computes what the one-piece quantizer computes."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from engine.passes import precision
from engine.passes.calibration import collect_ranges
from engine.passes.int8_segments import cuttable, segmented_int8
from engine.passes.precision import PrecisionPass, _static_int8, prepare, random_calibration, unconverted
from engine.progress import run
from tests import builders


def _outputs(model: onnx.ModelProto, feeds: list[dict[str, np.ndarray]]) -> list[np.ndarray]:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # the Q/DQ nodes as written
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return [session.run(None, f)[0] for f in feeds]


@pytest.mark.parametrize("build", [builders.residual_net, builders.concat_net, builders.transformer_block, builders.gemm_mlp])
@pytest.mark.parametrize("window", [1, 3, 7])
def test_windows_compute_the_one_piece_result(build, window: int) -> None:  # type: ignore[no-untyped-def]
    model = onnx.shape_inference.infer_shapes(prepare(build()))
    calib = random_calibration(model, 4)
    ranges = collect_ranges(model, calib).pick()
    whole = _static_int8(model, None, calib, ranges)
    pieces = run(segmented_int8(model, None, ranges, window=window))
    onnx.checker.check_model(pieces)
    layers = [n.name for n in model.graph.node if n.op_type in ("Conv", "MatMul", "Gemm")]
    assert unconverted(pieces, layers, "int8") == unconverted(whole, layers, "int8")
    feeds = random_calibration(model, 3, seed=9)
    for a, b in zip(_outputs(whole, feeds), _outputs(pieces, feeds)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_chosen_layers_only_and_large_models_go_in_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    model = builders.conv_stack(6)
    calib = random_calibration(model, 2)
    one = PrecisionPass(int8=["conv_1", "conv_4"], calibration=calib)(model).model
    monkeypatch.setattr(precision, "SEGMENT_ABOVE", 2)
    calls = []
    real = precision.segmented_int8
    monkeypatch.setattr(precision, "segmented_int8", lambda *a, **k: calls.append(1) or real(*a, **k))
    cut = PrecisionPass(int8=["conv_1", "conv_4"], calibration=calib)(model).model
    assert calls
    names = [n.name for n in model.graph.node if n.op_type == "Conv"]
    assert unconverted(cut, names, "int8") == ["conv_0", "conv_2", "conv_3", "conv_5"] == unconverted(one, names, "int8")
    feeds = random_calibration(model, 2, seed=5)
    for a, b in zip(_outputs(one, feeds), _outputs(cut, feeds)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_subgraphs_are_not_cut() -> None:
    model = prepare(builders.conv_stack(2))
    assert cuttable(onnx.shape_inference.infer_shapes(model))
    branch = onnx.helper.make_graph([], "b", [], [])
    model.graph.node.append(onnx.helper.make_node("If", ["c"], [], then_branch=branch, else_branch=branch))
    assert not cuttable(model)


def test_windowed_int8_reports_progress_to_apply_and_to_jobs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The calibration pass and every window report through engine.progress: apply's line and a job see them."""
    from engine.progress import Progress, forwarding, in_thread

    model = builders.conv_stack(40, channels=4, size=4)  # 80 nodes: 3 windows of 32
    calib = random_calibration(model, 2)
    monkeypatch.setattr(precision, "SEGMENT_ABOVE", 2)
    seen: list[Progress] = []
    with forwarding(seen.append):
        direct = PrecisionPass(int8=["conv_1", "conv_34"], calibration=calib)(model).model
    windows = [p for p in seen if p.message.startswith("int8: window")]
    assert [(p.done, p.total) for p in windows] == [(0, 3), (1, 3), (2, 3)]
    relayed: list[Progress] = []
    job = in_thread(lambda: PrecisionPass(int8=["conv_1", "conv_34"], calibration=calib)(model).model)
    threaded = run(job, relayed.append)
    # a heartbeat repeats the last report: the windows in order, each at least once
    assert list(dict.fromkeys(p.message for p in relayed if p.message.startswith("int8: window"))) == [p.message for p in windows]
    assert threaded.SerializeToString() == direct.SerializeToString()
    with pytest.raises(ValueError, match="boom"):
        run(in_thread(lambda: (_ for _ in ()).throw(ValueError("boom"))))

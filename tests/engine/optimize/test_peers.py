"""Peers in bench: NNCF rows beside LayerLab's, the validation adapter, clear refusals (skips without nncf)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from engine.errors import SettingsError
from engine.evaluate.evaluator import evaluate, load_evaluator
from engine.ir.graph import load_model
from engine.optimize.peers import check_peers, validation_fn
from engine.progress import run


@pytest.fixture(scope="module")
def digits(digits_model: Path):
    return load_model(digits_model, {"input": (1, 1, 8, 8)})


def test_unknown_and_missing_peers_are_refused_in_one_line(monkeypatch) -> None:
    with pytest.raises(SettingsError, match="choose from nncf"):
        check_peers(["openvino"])
    monkeypatch.setitem(sys.modules, "nncf", None)  # import nncf raises ImportError
    with pytest.raises(SettingsError, match=r"nncf is not installed \(pip install 'layerlab\[peers\]'\)"):
        check_peers(["nncf"])


def test_cli_refuses_accuracy_control_without_the_peer(digits_eval: Path, capsys: pytest.CaptureFixture) -> None:
    from engine.cli.main import main

    assert main(["bench", "digits", "--eval", str(digits_eval), "--nncf-accuracy-control"]) == 2
    assert "--nncf-accuracy-control needs --peers nncf" in capsys.readouterr().err


def test_validation_fn_scores_items_with_the_evaluators_metric(digits, digits_eval: Path) -> None:
    from engine.passes.precision import quantize_whole_model

    evaluator = load_evaluator(digits_eval)
    model = quantize_whole_model(digits.model, evaluator.calibration())
    validate = validation_fn(evaluator, threads=1)
    n = len(evaluator.samples())
    metric, per_item = validate(model, range(n))
    assert metric == evaluate(model, evaluator, threads=1).metric
    assert len(per_item) == n and set(per_item) <= {0.0, 1.0}
    assert np.mean(per_item) == pytest.approx(metric)  # accuracy: the mean of per-sample hits
    wrong = [i for i, v in enumerate(per_item) if v == 0.0]
    assert wrong and validate(model, wrong[:3]) == (0.0, [0.0] * len(wrong[:3]))  # items are sample indices


def test_bench_adds_nncf_rows_scored_and_timed_in_the_same_run(digits, digits_eval: Path) -> None:
    pytest.importorskip("nncf")
    from engine.optimize.bench import bench_job
    from engine.optimize.peers import nncf_quantize

    evaluator = load_evaluator(digits_eval)
    result = run(bench_job(digits, evaluator, repeats=4, threads=1, route_model=digits.model,
                           routines={n.name: "fp32" for n in digits.layers}, peers=("nncf",), accuracy_control=True))
    assert [r.name for r in result.rows] == ["ort-fp32", "ort-int8", "layerlab", "nncf", "nncf-ac"]
    quantized = nncf_quantize(digits.model, evaluator.calibration())
    assert sum(n.op_type == "QuantizeLinear" for n in quantized.graph.node) >= 5
    nncf_row, fp32_row = result.row("nncf"), result.row("ort-fp32")
    assert nncf_row.metric == evaluate(quantized, evaluator).metric  # NNCF is deterministic on the same samples
    assert nncf_row.drop == pytest.approx(fp32_row.metric - nncf_row.metric)
    assert nncf_row.bytes == quantized.ByteSize() and nncf_row.bytes < fp32_row.bytes / 2  # int8 weights
    for row in (nncf_row, result.row("nncf-ac")):
        assert 0 < row.ms.p10 <= row.ms.median <= row.ms.p90
        assert row.speedup == pytest.approx(fp32_row.ms.median / row.ms.median)
    assert fp32_row.metric - result.row("nncf-ac").metric <= 0.01  # the accuracy control's max drop held


def test_for_nncf_folds_casts_of_constants_and_keeps_the_outputs() -> None:
    """NNCF 3.4 fails on a Cast that reads an initializer: the model it gets has the cast value instead."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from engine.optimize.peers import for_nncf

    shift = numpy_helper.from_array(np.arange(4, dtype=np.int64), "shift")
    nodes = [helper.make_node("Cast", ["shift"], ["shift_f"], name="cast", to=TensorProto.FLOAT),
             helper.make_node("Add", ["x", "shift_f"], ["y"], name="add")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])], [shift])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    model.ir_version = 7
    prepared = for_nncf(model)
    assert [n.op_type for n in prepared.graph.node] == ["Add"] and prepared.opset_import[0].version >= 13
    assert [t.name for t in prepared.graph.initializer] == ["shift_f"]
    x = np.random.default_rng(0).random((2, 4), dtype=np.float32)
    run_ = lambda m: ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_array_equal(run_(prepared), run_(model))
    assert [n.op_type for n in model.graph.node] == ["Cast", "Add"]  # the caller's model is not changed


def test_nncf_progress_stays_off_stdout(digits, digits_eval: Path, capfd: pytest.CaptureFixture) -> None:
    """bench --json prints its JSON on stdout: NNCF's progress bars must go to stderr."""
    pytest.importorskip("nncf")
    from engine.optimize.peers import nncf_quantize

    capfd.readouterr()
    nncf_quantize(digits.model, load_evaluator(digits_eval).calibration())
    captured = capfd.readouterr()
    assert captured.out == "" and "Statistics collection" in captured.err

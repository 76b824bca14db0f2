"""Evaluators: the .py contract, .npz with labels, fidelity mode, and clear errors for broken evaluators."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from engine.errors import LayerLabError
from engine.evaluate.contract import split_indices
from engine.evaluate.evaluator import CALIBRATION_DEFAULT, ensure_reference, evaluate, evaluate_job, fidelity_scores, load_evaluator
from engine.ir.graph import load_model
from engine.progress import Progress


def _doubler() -> onnx.ModelProto:
    """y = 2 x for x of any length: samples of different shapes."""
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "two"], ["y"], name="mul")],
        "doubler",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, "n"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, "n"])],
        [helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _script(tmp_path: Path, body: str, name: str = "my_eval.py") -> Path:
    path = tmp_path / name
    path.write_text("import numpy as np\n" + textwrap.dedent(body))
    return path


_GOOD = """
    def samples():
        for n in range(1, 7):
            yield {"x": np.full((1, n), float(n), dtype=np.float32)}, 2.0 * n

    def metric(outputs, labels):
        return float(np.mean([out[0].mean() == label for out, label in zip(outputs, labels)]))
"""


def test_script_evaluator_with_varying_shapes(tmp_path: Path) -> None:
    evaluator = load_evaluator(_script(tmp_path, _GOOD))
    assert evaluator.name == "my_eval" and evaluator.metric_name == "metric"
    result = evaluate(_doubler(), evaluator, keep_outputs=True)
    # No calibration(): one sample in four is split off to calibrate, and is not scored.
    assert result.metric == 1.0 and result.n == 5
    assert [o[0].shape for o in result.outputs] == [(1, n) for n in (1, 2, 3, 5, 6)]
    assert len(evaluator.calibration()) == 1 and evaluator.calibration()[0]["x"].shape == (1, 4)
    assert "1 samples split off" in evaluator.calibration_source


def test_script_calibration_and_float64_inputs_are_cast(tmp_path: Path) -> None:
    path = _script(tmp_path, _GOOD.replace("dtype=np.float32", "dtype=np.float64") + """
    def calibration():
        return [{"x": np.zeros((1, 4), dtype=np.float32)}]
    """)
    evaluator = load_evaluator(path)
    assert evaluate(_doubler(), evaluator).metric == 1.0
    assert len(evaluator.calibration()) == 1


def test_npz_with_labels_is_top1_accuracy(digits_model: Path, digits_eval: Path) -> None:
    evaluator = load_evaluator(digits_eval)
    assert evaluator.metric_name == "top1_accuracy" and not evaluator.fidelity
    graph = load_model(digits_model)
    result = evaluate(graph.model, evaluator)
    # CALIBRATION_DEFAULT evenly spaced samples calibrate int8 and are never scored.
    held = split_indices(540)
    assert len(held) == CALIBRATION_DEFAULT and held[0] > 0 and held[-1] > 500
    assert result.n == 540 - CALIBRATION_DEFAULT and result.metric > 0.95
    data = np.load(digits_eval)
    calib = np.concatenate([c["input"] for c in evaluator.calibration()])
    assert np.array_equal(calib, data["input:input"][held])
    scored = np.concatenate([inputs["input"] for inputs, _ in evaluator.samples()])
    assert not any((scored == c).all(axis=(1, 2, 3)).any() for c in calib)
    # Scoring by hand gives the same number.
    labels = np.delete(data["labels"], held)
    outputs = evaluate(graph.model, evaluator, keep_outputs=True).outputs
    assert result.metric == pytest.approx(np.mean([o[0].argmax() == y for o, y in zip(outputs, labels)]))


def test_npz_without_labels_is_fidelity(digits_model: Path, digits_eval: Path, tmp_path: Path) -> None:
    inputs = np.load(digits_eval)["input:input"][:50]
    path = tmp_path / "unlabelled.npz"
    np.savez(path, **{"input:input": inputs})
    graph = load_model(digits_model)
    evaluator = load_evaluator(path)
    assert evaluator.fidelity and evaluator.needs_reference
    with pytest.raises(LayerLabError, match="unlabelled.npz.*fidelity"):
        evaluate(graph.model, evaluator)
    ensure_reference(evaluator, graph.model)
    result = evaluate(graph.model, evaluator)
    assert result.metric == 1.0 and result.details["top1_agreement"] == 1.0
    assert result.details["cosine"] == pytest.approx(1.0)
    cosine = load_evaluator(path, fidelity="cosine")
    ensure_reference(cosine, graph.model)
    assert evaluate(graph.model, cosine).metric == pytest.approx(1.0)


def test_fidelity_scores_measure_disagreement() -> None:
    ref = [[np.array([[0.0, 1.0, 0.0]])], [np.array([[1.0, 0.0, 0.0]])]]
    out = [[np.array([[0.0, 1.0, 0.0]])], [np.array([[0.0, 1.0, 0.0]])]]
    scores = fidelity_scores(out, ref)
    assert scores["top1_agreement"] == 0.5 and scores["cosine"] == pytest.approx(0.5)
    assert scores["sqnr_db"] == pytest.approx(10 * np.log10(2 / 2))


def test_fidelity_scores_the_first_float_output_not_an_integer_copy_of_an_input() -> None:
    """minilm-l3 outputs Identity(input_ids) first: scored, every variant would agree perfectly."""
    ids = np.array([[101, 7, 102]], np.int64)
    ref = [[ids, np.array([[0.0, 1.0, 0.0]])], [ids, np.array([[1.0, 0.0, 0.0]])]]
    out = [[ids, np.array([[0.0, 1.0, 0.0]])], [ids, np.array([[0.0, 1.0, 0.0]])]]
    scores = fidelity_scores(out, ref)
    assert scores["top1_agreement"] == 0.5 and scores["cosine"] == pytest.approx(0.5)


def test_evaluate_is_a_job(tmp_path: Path) -> None:
    job = evaluate_job(_doubler(), load_evaluator(_script(tmp_path, _GOOD)))
    progress = []
    while True:
        try:
            progress.append(next(job))
        except StopIteration as stop:
            result = stop.value
            break
    assert all(isinstance(p, Progress) for p in progress) and result.metric == 1.0


_BROKEN = {
    "samples_raises": ("""
        def samples():
            for i in range(10):
                if i == 3:
                    raise ValueError("bad image")
                yield {"x": np.ones((1, 2), np.float32)}, 2.0
        def metric(outputs, labels):
            return 1.0
    """, r"my_eval.py: samples\(\) raised ValueError: bad image at sample 3"),
    "wrong_sample_type": ("""
        def samples():
            yield {"x": np.ones((1, 2), np.float32)}, 2.0
            yield {"x": np.ones((1, 2), np.float32)}, 2.0
            yield 42
        def metric(outputs, labels):
            return 1.0
    """, r"my_eval.py: sample 2: expected \(inputs"),
    "metric_raises_on_one_sample": ("""
        def samples():
            for i in range(8):
                yield {"x": np.full((1, 2), float(i), np.float32)}, i
        def metric(outputs, labels):
            for out, label in zip(outputs, labels):
                if label == 4:
                    raise KeyError("label 4 unknown")
            return 1.0
    """, r"my_eval.py: metric\(\) raised KeyError.*first failing sample: 4"),
    "metric_nan": ("""
        def samples():
            for i in range(8):
                yield {"x": np.full((1, 2), float(i), np.float32)}, i
        def metric(outputs, labels):
            return float(np.mean([np.nan if label == 5 else 1.0 for label in labels]))
    """, r"my_eval.py: metric\(\) returned nan \(first failing sample: 5\)"),
    "metric_wrong_type": ("""
        def samples():
            yield {"x": np.ones((1, 2), np.float32)}, 2.0
        def metric(outputs, labels):
            return "great"
    """, r"my_eval.py: metric\(\) must return a number, got str"),
    "wrong_input_name": ("""
        def samples():
            yield {"image": np.ones((1, 2), np.float32)}, 2.0
        def metric(outputs, labels):
            return 1.0
    """, r"my_eval.py: sample 0: no value for model input 'x'"),
    "model_rejects_input": ("""
        def samples():
            yield {"x": np.ones((1, 2), np.float32)}, 2.0
            yield {"x": np.ones((2, 2, 2), np.float32)}, 2.0
        def metric(outputs, labels):
            return 1.0
    """, r"my_eval.py: sample 1: the model rejected the inputs"),
    "no_samples": ("""
        def samples():
            return []
        def metric(outputs, labels):
            return 1.0
    """, r"my_eval.py: samples\(\) yielded no samples"),
}


@pytest.mark.parametrize("case", sorted(_BROKEN))
def test_broken_evaluator_names_file_and_sample(case: str, tmp_path: Path) -> None:
    body, message = _BROKEN[case]
    evaluator = load_evaluator(_script(tmp_path, body))
    with pytest.raises(LayerLabError, match=message):
        evaluate(_doubler(), evaluator)


def test_unloadable_evaluators(tmp_path: Path) -> None:
    with pytest.raises(LayerLabError, match=r"my_eval.py: the evaluator has no metric\(\) function"):
        load_evaluator(_script(tmp_path, "def samples():\n    return []\n"))
    with pytest.raises(LayerLabError, match=r"my_eval.py: syntax error at line 2"):
        load_evaluator(_script(tmp_path, "def samples(:\n    pass\n"))
    with pytest.raises(LayerLabError, match=r"my_eval.py: running the evaluator failed \(ZeroDivisionError"):
        load_evaluator(_script(tmp_path, "x = 1 / 0\n"))
    with pytest.raises(LayerLabError, match="no such evaluator"):
        load_evaluator(tmp_path / "missing.py")
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(LayerLabError, match=r"notes.txt: an evaluator is a .py file or an .npz"):
        load_evaluator(tmp_path / "notes.txt")
    np.savez(tmp_path / "empty.npz", labels=np.zeros(3))
    with pytest.raises(LayerLabError, match=r"empty.npz: no arrays named input:<name>"):
        load_evaluator(tmp_path / "empty.npz")


def test_cli_evaluate_prints_metric_json(digits_model: Path, digits_eval: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from engine.cli.main import main

    assert main(["evaluate", str(digits_model), "--eval", str(digits_eval), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n"] == 540 - CALIBRATION_DEFAULT and out["metric"] > 0.95

"""Tests for the ppocr-rec evaluator: rendering, CTC decoding, the metric, and a real fp32 run."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from engine.io import examples


@pytest.fixture(scope="module")
def ev() -> ModuleType:
    path = examples.get_example("ppocr-rec").eval
    assert path is not None
    spec = importlib.util.spec_from_file_location("ppocr_rec_evaluator_under_test", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def tiny_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An Identity model whose 'character' metadata is a, b, c; LAYERLAB_MODEL points at it."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 5])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 5])
    model = helper.make_model(helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y]))
    helper.set_model_props(model, {"character": "a\nb\nc"})
    path = tmp_path / "tiny.onnx"
    onnx.save(model, path)
    monkeypatch.setenv("LAYERLAB_MODEL", str(path))
    return path


def _one_hot(indices: list[int], classes: int = 5) -> np.ndarray:
    logits = np.zeros((1, len(indices), classes), dtype=np.float32)
    logits[0, np.arange(len(indices)), indices] = 1.0
    return logits


def test_samples_shape_range_and_determinism(ev: ModuleType) -> None:
    first = list(ev.samples(12))
    second = list(ev.samples(12))
    assert [label for _, label in first] == [label for _, label in second]
    widths = set()
    for (inputs, label), (again, _) in zip(first, second):
        assert set(inputs) == {"x"} and isinstance(label, str)
        image = inputs["x"]
        assert image.dtype == np.float32 and image.shape[:3] == (1, 3, 48)
        assert image.shape[3] % 8 == 0 and 64 <= image.shape[3] <= 320
        assert image.min() >= -1.0 and image.max() <= 1.0
        assert np.array_equal(image, again["x"])
        widths.add(image.shape[3])
    assert len(widths) > 1  # widths follow the word length


def test_mixed_alternates_clean_and_degraded(ev: ModuleType) -> None:
    mixed = list(ev.samples(6))
    clean = list(ev.samples(3, variant="clean"))
    degraded = list(ev.samples(3, variant="degraded"))
    assert [w for _, w in mixed] == [ev.WORDS[0], ev.WORDS[0], ev.WORDS[1], ev.WORDS[1], ev.WORDS[2], ev.WORDS[2]]
    for i in range(3):
        assert np.array_equal(mixed[2 * i][0]["x"], clean[i][0]["x"])
        assert np.array_equal(mixed[2 * i + 1][0]["x"], degraded[i][0]["x"])
        assert not np.array_equal(clean[i][0]["x"], degraded[i][0]["x"])
    with pytest.raises(ValueError, match="variant"):
        next(ev.samples(1, variant="blurry"))


def test_sample_count_default_and_env(ev: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LAYERLAB_PPOCR_SAMPLES", raising=False)
    assert ev._count() == 200
    monkeypatch.setenv("LAYERLAB_PPOCR_SAMPLES", "5")
    assert len(list(ev.samples())) == 5


def test_calibration_words_are_not_evaluated(ev: ModuleType) -> None:
    assert not set(ev.CALIBRATION_WORDS) & set(ev.WORDS)
    batches = list(ev.calibration(4))
    assert len(batches) == 4 and all(set(b) == {"x"} for b in batches)


def test_characters_blank_first_space_last(ev: ModuleType, tiny_model: Path) -> None:
    assert ev.characters() == ["blank", "a", "b", "c", " "]
    assert ev.characters(str(tiny_model)) == ["blank", "a", "b", "c", " "]


def test_decode_collapses_repeats_and_drops_blanks(ev: ModuleType) -> None:
    table = ["blank", "a", "b", "c", " "]
    assert ev.decode(_one_hot([1, 1, 0, 1, 2, 2, 0, 0, 4, 3]), table) == "aab c"
    assert ev.decode(_one_hot([0, 0, 0]), table) == ""
    assert ev.decode(_one_hot([3, 3, 3])[0], table) == "c"  # (T, C) works too


def test_metric_is_exact_match_fraction(ev: ModuleType, tiny_model: Path) -> None:
    outputs = [[_one_hot([1, 0, 1])], [_one_hot([2, 3])], [_one_hot([1, 4])]]
    assert ev.metric(outputs, ["aa", "bc", "a"]) == pytest.approx(2 / 3)  # "a " is not "a"
    assert ev.metric(outputs, ["aa", "bc", "a "]) == 1.0
    assert ev.metric([], []) == 0.0
    with pytest.raises(ValueError):
        ev.metric(outputs, ["aa"])


def test_characters_without_metadata_is_an_error(ev: ModuleType, tiny_model: Path, tmp_path: Path) -> None:
    model = onnx.load(tiny_model)
    del model.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(model, bare)
    with pytest.raises(ValueError, match="character"):
        ev.characters(str(bare))


@pytest.mark.slow
def test_ppocr_model_fp32(ev: ModuleType, ppocr_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import onnxruntime as ort

    monkeypatch.setenv("LAYERLAB_MODEL", str(ppocr_model))
    table = ev.characters()
    assert len(table) == 6625 and table[0] == "blank" and table[-1] == " "
    missing = {ch for word in ev.WORDS + ev.CALIBRATION_WORDS for ch in word} - set(table)
    assert not missing

    session = ort.InferenceSession(str(ppocr_model), providers=["CPUExecutionProvider"])
    mixed = list(ev.samples(4))
    outputs = [session.run(None, inputs) for inputs, _ in mixed]
    assert outputs[0][0].shape[-1] == len(table)
    assert all(isinstance(ev.decode(out[0]), str) for out in outputs)
    assert 0.0 <= ev.metric(outputs, [w for _, w in mixed]) <= 1.0

    clean = list(ev.samples(20, variant="clean"))
    outputs = [session.run(None, inputs) for inputs, _ in clean]
    assert ev.metric(outputs, [w for _, w in clean]) >= 0.8

"""Shapes on the command line: --dim, the evaluator's shape, Paddle's -1 batch, and shapes in the output."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest

from engine.cli.main import main
from tests import builders

EVALUATOR = '''
import numpy as np

def samples():
    rng = np.random.default_rng(0)
    for width in (24, 24, 24, 40):
        yield {"x": rng.random((1, 3, 16, width)).astype(np.float32)}, 0

def metric(outputs, labels):
    return 1.0

def calibration():  # its own calibration: every sample above is scored (none split off)
    yield {"x": np.zeros((1, 3, 16, 24), np.float32)}
'''


@pytest.fixture()
def dynamic_cnn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    monkeypatch.setenv("LAYERLAB_CACHE", str(tmp_path / "cache"))
    model, evaluator = tmp_path / "dyn.onnx", tmp_path / "widths.py"
    onnx.save(builders.dynamic_width_cnn(), model)
    evaluator.write_text(EVALUATOR)
    return model, evaluator


def test_profile_at_the_evaluators_shape(dynamic_cnn, capsys: pytest.CaptureFixture[str]) -> None:
    model, evaluator = dynamic_cnn
    assert main(["profile", str(model), "--eval", str(evaluator), "--json", "--repeats", "5"]) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert out["inputs"] == {"x": [1, 3, 16, 24]}  # the most frequent of the samples' shapes
    assert "vary (2 shapes: 1x3x16x24 x3, 1x3x16x40 x1)" in captured.err


def test_profile_without_shapes_names_the_dims_and_both_flags(dynamic_cnn, capsys) -> None:
    model, _ = dynamic_cnn
    assert main(["profile", str(model)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'width'" in err and "--dim width=N" in err and "--input x=1x3x16xN" in err


def test_dim_flag_and_batch_note_in_inspect(dynamic_cnn, capsys) -> None:
    model, _ = dynamic_cnn
    assert main(["inspect", str(model), "--dim", "width=32", "--json"]) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert out["inputs"][0]["shape"] == [1, 3, 16, 32] and "batch dim of x (batch) set to 1" in captured.err
    conv = next(n for n in out["layers"] if n["name"] == "conv_a")
    assert conv["macs"] == 8 * 16 * 32 * 3 * 9


def test_paddle_minus_one_batch(tmp_path: Path, capsys) -> None:
    model = tmp_path / "paddle.onnx"
    onnx.save(builders.dynamic_width_cnn(batch=-1), model)
    assert main(["inspect", str(model), "--input", "x=1x3x16x48", "--json"]) == 0  # was "dim 0 is fixed at -1"
    out = json.loads(capsys.readouterr().out)
    assert out["inputs"][0]["shape"] == [1, 3, 16, 48] and out["totals"]["macs"] > 0
    assert main(["inspect", str(model), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert all(n["macs"] is None or n["macs"] >= 0 for n in out["layers"])  # unknown, never negative

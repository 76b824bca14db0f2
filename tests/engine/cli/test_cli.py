"""Tests for the `layerlab` command: inspect on both examples, examples listing, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine.cli.main import main
from tests import builders


def _json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> dict:
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_inspect_digits_json(capsys: pytest.CaptureFixture[str], digits_model: Path) -> None:
    out = _json(capsys, ["inspect", str(digits_model), "--input", "input=1x1x8x8", "--json"])
    assert set(out) == {"model", "opset", "inputs", "layers", "totals"}
    assert out["opset"] == 17
    layers = [n for n in out["layers"] if n["tunable"]]
    assert [n["op"] for n in layers] == ["Conv"] * 5 + ["Gemm"] * 2
    assert all(set(n) == {"name", "op", "tunable", "macs", "params", "out_shape"} for n in out["layers"])
    first = layers[0]  # Conv 1->16, 3x3, pad 1 on 8x8
    assert first["macs"] == 16 * 8 * 8 * 1 * 9 and first["out_shape"] == [1, 16, 8, 8]
    assert out["totals"]["params"] == sum(n["params"] for n in out["layers"])
    assert out["totals"]["macs"] == sum(n["macs"] for n in out["layers"])


def test_inspect_example_name_uses_its_shapes(capsys: pytest.CaptureFixture[str]) -> None:
    out = _json(capsys, ["inspect", "digits", "--json"])
    assert out["inputs"][0]["shape"] == [1, 1, 8, 8] and out["totals"]["macs"] is not None


def test_inspect_symbolic_shows_unknown(capsys: pytest.CaptureFixture[str], digits_model: Path) -> None:
    out = _json(capsys, ["inspect", str(digits_model), "--json"])
    assert out["inputs"][0]["shape"] == ["batch", 1, 8, 8]
    assert out["totals"]["macs"] is None and any(n["macs"] is None for n in out["layers"])
    assert main(["inspect", str(digits_model)]) == 0
    assert "MACs unknown" in capsys.readouterr().out


def test_inspect_table(capsys: pytest.CaptureFixture[str], digits_model: Path) -> None:
    assert main(["inspect", str(digits_model), "--input", "input=1x1x8x8"]) == 0
    text = capsys.readouterr().out
    assert "/conv1/Conv" in text and "Relu" not in text and "total:" in text
    assert main(["inspect", str(digits_model), "--all"]) == 0
    assert "Relu" in capsys.readouterr().out


@pytest.mark.slow
def test_inspect_ppocr(capsys: pytest.CaptureFixture[str], ppocr_model: Path) -> None:
    out = _json(capsys, ["inspect", str(ppocr_model), "--input", "x=1x3x48x320", "--json"])
    layers = [n for n in out["layers"] if n["tunable"]]
    assert len(layers) == 47 and {n["op"] for n in layers} == {"Conv", "MatMul"}
    assert out["totals"]["macs"] > 5e8 and out["totals"]["params"] > 2e6
    assert not any(n["op"] == "Constant" for n in out["layers"])


def test_examples_lists_both(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["examples"]) == 0
    text = capsys.readouterr().out
    assert "digits" in text and "ppocr-rec" in text


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "no such file"),
        (b"", "file is empty"),
        (b"\x08\x07garbage that is not protobuf" * 3, "not an ONNX model"),
        ("truncated", "not an ONNX model or truncated"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes | str | None, message: str
) -> None:
    path = tmp_path / "model.onnx"
    if content == "truncated":
        data = builders.residual_net().SerializeToString()
        path.write_bytes(data[: len(data) // 3])
    elif content is not None:
        path.write_bytes(content)
    assert main(["inspect", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err and message in err and "Traceback" not in err


def test_bad_shape_argument(capsys: pytest.CaptureFixture[str], digits_model: Path) -> None:
    assert main(["inspect", str(digits_model), "--input", "input=1xZ"]) == 2
    assert "whole numbers" in capsys.readouterr().err


def test_unknown_example_name(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", "no-such-example"]) == 2
    assert "known examples" in capsys.readouterr().err


def test_console_script_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "engine.cli.main", "inspect", "/nonexistent/model.onnx"], capture_output=True, text=True
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == "layerlab inspect: error: /nonexistent/model.onnx: no such file"

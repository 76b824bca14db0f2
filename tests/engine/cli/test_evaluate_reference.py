"""``layerlab evaluate`` with a label-less .npz: a converted model is scored against the fp32 original."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from engine.cli.main import main
from tests import builders


def test_a_converted_model_is_scored_against_its_original(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LAYERLAB_CACHE", str(tmp_path / "cache"))
    original, plan, npz, out = (tmp_path / n for n in ("m.onnx", "plan.json", "set.npz", "int8.onnx"))
    onnx.save(builders.gemm_mlp((16, 32, 8), batch=1), original)
    plan.write_text('{"default": {"precision": "int8"}}')
    rng = np.random.default_rng(0)
    np.savez(npz, **{"input:x": rng.standard_normal((16, 16)).astype(np.float32)})
    assert main(["apply", str(original), str(plan), "--eval", str(npz), "-o", str(out)]) == 0
    capsys.readouterr()

    # against its own outputs a converted model would read a perfect 1: refused, with what to do
    assert main(["evaluate", str(out), "--eval", str(npz)]) == 2
    err = capsys.readouterr().err
    assert "fidelity to its own outputs is 1 by definition" in err and "--reference" in err and err.count("\n") == 1

    assert main(["evaluate", str(out), "--eval", str(npz), "--reference", str(original), "--json"]) == 0
    written = json.loads(capsys.readouterr().out)
    assert main(["evaluate", str(original), "--eval", str(npz), "--plan", str(plan), "--json"]) == 0
    planned = json.loads(capsys.readouterr().out)
    assert written == planned  # the written variant scores what the plan's variant scores
    assert written["cosine"] < 1.0 and written["sqnr_db"] < 80  # really compared with the fp32 outputs
    assert main(["evaluate", str(original), "--eval", str(npz), "--json"]) == 0  # fp32: its own reference
    assert json.loads(capsys.readouterr().out)["cosine"] == pytest.approx(1.0)

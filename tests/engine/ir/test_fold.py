"""Constant folding on load: computed weights and initializers listed as inputs become layers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from engine.ir.fold import fold_constants, foldable_nodes
from engine.ir.graph import build_graph
from tests import builders


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def test_classic_cnn_layers_are_recognised() -> None:
    model = builders.classic_cnn()
    graph = build_graph(model, {"x": (1, 3, 16, 16)})
    assert [n.name for n in graph.layers] == ["conv1", "fc"]
    assert [i.name for i in graph.inputs] == ["x"]  # the listed initializers are constants, not inputs
    assert graph.node("conv1").macs == 8 * 16 * 16 * 3 * 9 and graph.node("fc").macs == 4 * 8 * 16 * 16
    assert graph.node("conv1").weights == ("w1", "b1") and graph.node("conv1").params == 8 * 27 + 8
    ops = [n.op_type for n in graph.nodes]
    assert "BatchNormalization" in ops and not {"Identity", "Cast", "ConstantOfShape", "Transpose"} & set(ops)
    x = np.random.default_rng(0).random((1, 3, 16, 16)).astype(np.float32)
    np.testing.assert_allclose(_run(graph.model, x), _run(model, x), rtol=1e-5, atol=1e-6)  # same numbers


def test_fold_only_when_a_weight_needs_it() -> None:
    model = builders.conv_stack(2)
    folded, notes = fold_constants(onnx.ModelProto.FromString(model.SerializeToString()))
    assert notes == [] and folded.SerializeToString() == model.SerializeToString()
    classic = builders.classic_cnn()
    assert foldable_nodes(classic) == ["b1_fill"]  # before: the listed weights look like inputs
    folded, notes = fold_constants(classic)
    assert notes[0] == "6 initializer(s) listed as graph inputs treated as constants"
    assert notes[1].startswith("4 node(s) computing constants folded")


def test_classic_cnn_profile_covers_end_to_end(tmp_path: Path, capsys, monkeypatch) -> None:
    from engine.cli.main import main

    monkeypatch.setenv("LAYERLAB_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "classic.onnx"
    onnx.save(builders.classic_cnn(), path)
    coverages = []
    for _ in range(3):  # a loaded machine can preempt one run's kernels; a real gap (unfolded weights: ~0.5) repeats
        assert main(["profile", str(path), "--json", "--repeats", "10", "--threads", "1", "--no-cache"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["inputs"] == {"x": [1, 3, 16, 16]}
        tunable = [layer["name"] for layer in out["layers"] if layer["tunable"]]
        assert tunable == ["conv1", "fc"] and all("int8" in layer["routines"] for layer in out["layers"] if layer["tunable"])
        coverages.append(out["coverage"])
        if 0.9 <= coverages[-1] <= 1.1:
            break
    assert 0.9 <= coverages[-1] <= 1.1, coverages

"""A layer whose input shape only a run can tell (a Reshape target computed at run time, as Paddle
exports it): once the input shapes are concrete the graph knows it, the sweep offers int8 there, and
apply builds exactly the variant the sweep measured."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from engine.cli.main import main
from engine.evaluate.sensitivity import SweepSettings
from engine.evaluate.sensitivity import _plan as sweep_pairs  # the (layer, routine) pairs a sweep measures
from engine.ir.graph import build_graph
from engine.model.plan import Plan
from engine.ir.routines import routine_problem
from engine.passes.layer_variants import VariantBuilder, applicable
from engine.passes.manager import apply_plan, check_plan
from tests import builders

SHAPES = {"x": (1, 3, 6, 5)}  # the npz calibration of apply --calib keeps a batch of 1


def _samples(count: int, seed: int) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{"x": rng.standard_normal(SHAPES["x"]).astype(np.float32)} for _ in range(count)]


def _run(model: onnx.ModelProto, feeds: list[dict[str, np.ndarray]]) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return [session.run(None, f)[0] for f in feeds]


def test_the_run_gives_the_shape_inference_cannot() -> None:
    model = builders.run_time_reshape_head(channels=8, classes=4)
    graph = build_graph(model, SHAPES)
    assert graph.tensors["reshape_out"].shape == (1, 8)
    assert graph.tensors["fc_out"].shape == (1, 4)
    assert graph.node("fc").macs == 8 * 4
    # without concrete input shapes nothing runs: the shape stays unknown, never guessed
    assert build_graph(model).tensors["reshape_out"].shape is None


def test_sweep_and_apply_agree_on_what_int8_can_do() -> None:
    model = builders.run_time_reshape_head()
    plan = Plan.from_dict({"layers": {"fc": {"precision": "int8"}}}, "plan")
    open_graph = build_graph(model)
    fc = open_graph.node("fc")
    assert not applicable(open_graph, fc, "int8")
    assert routine_problem(open_graph, fc, "int8") in check_plan(plan, open_graph)[0]
    assert ("fc", "int8") not in sweep_pairs(open_graph, SweepSettings(routines=("int8",)))
    graph = build_graph(model, SHAPES)
    assert applicable(graph, graph.node("fc"), "int8") and check_plan(plan, graph) == []
    assert ("fc", "int8") in sweep_pairs(graph, SweepSettings(routines=("int8",)))


def test_apply_builds_the_int8_variant_the_sweep_measured() -> None:
    graph = build_graph(builders.run_time_reshape_head(), SHAPES)
    calib, feeds = _samples(4, 0), _samples(3, 7)
    plan = Plan.from_dict({"layers": {"fc": {"precision": "int8"}}}, "plan")
    applied = apply_plan(graph, plan, calib).model
    with VariantBuilder(graph.model, calib) as builder:
        swept = builder.build(["fc"], "int8")
    ops = [n.op_type for n in applied.graph.node]
    assert ops.count("QuantizeLinear") >= 1 and ops.count("DequantizeLinear") >= 2
    got, want, fp32 = _run(applied, feeds), _run(swept, feeds), _run(graph.model, feeds)
    assert all(np.array_equal(a, b) for a, b in zip(got, want))
    assert any(not np.array_equal(a, b) for a, b in zip(got, fp32))  # int8 really changed the layer
    assert all(np.allclose(a, b, atol=0.05) for a, b in zip(got, fp32))


def test_cli_apply_int8_at_a_run_time_reshape(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LAYERLAB_CACHE", str(tmp_path / "cache"))
    model_path, plan_path, calib_path, out = (tmp_path / n for n in ("m.onnx", "p.json", "c.npz", "out.onnx"))
    onnx.save(builders.run_time_reshape_head(), model_path)
    plan_path.write_text('{"layers": {"fc": {"precision": "int8"}}}')
    calib = _samples(4, 0)
    np.savez(calib_path, **{"input:x": np.concatenate([c["x"] for c in calib])})
    code = main(["apply", str(model_path), str(plan_path), "--input", "x=1x3x6x5", "--calib", str(calib_path), "-o", str(out)])
    assert code == 0, capsys.readouterr().err
    graph = build_graph(onnx.load(model_path), SHAPES)
    with VariantBuilder(graph.model, calib) as builder:
        swept = builder.build(["fc"], "int8")
    feeds = _samples(2, 3)
    assert all(np.array_equal(a, b) for a, b in zip(_run(onnx.load(out), feeds), _run(swept, feeds)))

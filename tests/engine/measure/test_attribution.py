"""Attribution of ORT kernels to model nodes: hand-built optimized graphs, and real ORT traces."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from engine.measure.attribution import attribute, read_trace
from engine.ir.graph import build_graph
from engine.measure.timing import make_session
from tests import builders


def _model(nodes: list[onnx.NodeProto]) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])], [])
    return helper.make_model(graph)


def test_name_rules_nchwc_fused_token_and_fusion_suffix() -> None:
    model = _model([
        helper.make_node("Conv", ["x", "w"], ["c_out"], name="conv"),
        helper.make_node("Relu", ["c_out"], ["r_out"], name="relu"),
        helper.make_node("Gemm", ["r_out", "w2"], ["g_out"], name="fc"),
        helper.make_node("MatMul", ["g_out", "w3"], ["m_out"], name="q"),
        helper.make_node("Conv", ["m_out", "w4"], ["k_out"], name="conv2"),
    ])
    optimized = _model([
        helper.make_node("Conv", ["x", "w"], ["tok0"], name="r_out_nchwc", domain="com.microsoft.nchwc"),
        helper.make_node("ReorderOutput", ["tok0"], ["r_out"], name="ReorderOutput", domain="com.microsoft.nchwc"),
        helper.make_node("FusedGemm", ["r_out", "w2"], ["g_out"], name="fused fc", domain="com.microsoft"),
        helper.make_node("Reshape", ["g_out", "s"], ["a0"], name="gemm_input_reshape"),
        helper.make_node("Gemm", ["a0", "w3"], ["a1"], name="q/MatMulAddFusion"),
        helper.make_node("Reshape", ["a1", "s2"], ["m_out"], name="gemm_output_reshape"),
        helper.make_node("QLinearConv", ["m_out", "w4"], ["k_out"], name="conv2_token_3", domain=""),
    ])
    kernels = {n.name: 1.0 for n in optimized.graph.node}
    att = attribute(model, optimized, kernels)
    # The NCHWc kernel is named after the Relu's output; its time belongs to the Conv layer.
    assert att.node_ms["conv"] == 1.0 and att.node_ms["relu"] == 0.0
    assert att.node_ms["fc"] == 1.0
    assert att.node_ms["q"] == 3.0  # the Gemm and the two Reshapes ORT put around it
    assert att.node_ms["conv2"] == 1.0
    assert att.adapts == {("r_out", "reorder"): 1.0}
    assert sum(att.node_ms.values()) + sum(att.adapts.values()) == pytest.approx(sum(kernels.values()))


def test_output_tensor_rule_and_unknown_kernels_still_counted() -> None:
    model = _model([helper.make_node("LayerNormalization", ["x", "g"], ["ln_out"], name="ln")])
    optimized = _model([helper.make_node("SkipLayerNormalization", ["x", "y", "g"], ["ln_out"], name="SkipLayerNormalization")])
    att = attribute(model, optimized, {"SkipLayerNormalization": 2.0, "mystery": 0.5})
    assert att.node_ms["ln"] == 2.0
    assert att.adapts[("mystery", "other")] == 0.5  # no graph: kept as time, not lost


@pytest.mark.parametrize("name", ["conv_stack", "residual_net", "concat_net", "gemm_mlp", "transformer_block"])
def test_real_traces_every_kernel_lands_on_a_node_or_known_adapt(name: str, tmp_path) -> None:
    graph = build_graph(getattr(builders, name)())
    x = graph.inputs[0]
    feeds = {x.name: np.random.default_rng(0).random(x.shape).astype(np.float32)}
    session = make_session(graph.model, 2, name, str(tmp_path / "p"), str(tmp_path / "opt.onnx"))
    for _ in range(4):
        session.run(None, feeds)
    kernels = read_trace(session.end_profiling(), skip_runs=1)
    assert kernels.runs == 3
    times = {k: kernels.time(k) for k in kernels.samples}
    att = attribute(graph.model, onnx.load(tmp_path / "opt.onnx"), times, kernels.ops)
    assert all(kind in ("reorder", "transpose", "cast") for _, kind in att.adapts), att.targets
    assert sum(att.node_ms.values()) + sum(att.adapts.values()) == pytest.approx(sum(times.values()))
    for layer in graph.layers:  # every layer got a kernel: none was lost in a fusion
        assert att.node_ms[layer.name] > 0, (layer.name, att.targets)


def test_read_trace_skips_warmup_runs(tmp_path) -> None:
    events = [
        {"cat": "Session", "name": "model_run", "ts": 0, "dur": 10},
        {"cat": "Node", "name": "a_kernel_time", "ts": 1, "dur": 1000, "args": {"op_name": "Conv"}},
        {"cat": "Session", "name": "model_run", "ts": 100, "dur": 10},
        {"cat": "Node", "name": "a_kernel_time", "ts": 101, "dur": 2000, "args": {"op_name": "Conv", "thread_scheduling_stats": {"sub_threads": {"1": {"num_run": 3}}}}},
    ]
    path = tmp_path / "t.json"
    path.write_text(json.dumps(events))
    kernels = read_trace(path, skip_runs=1)
    assert kernels.samples == {"a": [(2.0, True)]} and kernels.ops == {"a": "Conv"}
    assert kernels.time("a") == pytest.approx(2.0)


@pytest.mark.parametrize("name", ["residual_net", "transformer_block"])
def test_known_kernel_times_all_land_in_the_profile(name: str, tmp_path) -> None:
    """A real ORT trace whose durations are rewritten to known values: every microsecond written
    must come out as node or adapt time, so a kernel lost anywhere (trace reading, name rules,
    attribution) shows; the end-to-end fit in the profiler would hide it."""
    graph = build_graph(getattr(builders, name)())
    x = graph.inputs[0]
    feeds = {x.name: np.random.default_rng(0).random(x.shape).astype(np.float32)}
    session = make_session(graph.model, 1, name, str(tmp_path / "p"), str(tmp_path / "opt.onnx"))
    for _ in range(3):
        session.run(None, feeds)
    trace = session.end_profiling()
    events = json.loads(open(trace).read())
    known: dict[str, float] = {}
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            kernel = e["name"][: -len("_kernel_time")]
            known.setdefault(kernel, 7.0 + 3.0 * len(known))  # µs, distinct per kernel, the same every run
            e["dur"] = known[kernel]
    with open(trace, "w") as f:
        json.dump(events, f)
    assert len(known) >= 8
    kernels = read_trace(trace, skip_runs=1)
    times = {k: kernels.time(k) for k in kernels.samples}
    for kernel, us in known.items():
        assert times.get(kernel) == pytest.approx(us / 1000.0), kernel
    att = attribute(graph.model, onnx.load(tmp_path / "opt.onnx"), times, kernels.ops)
    total = sum(att.node_ms.values()) + sum(att.adapts.values())
    assert total == pytest.approx(sum(known.values()) / 1000.0, rel=1e-9)
    assert set(att.targets) == set(known)
    for layer in graph.layers:
        assert att.node_ms[layer.name] >= min(known.values()) / 1000.0, (layer.name, att.targets)


def test_subgraph_kernels_are_not_counted_twice() -> None:
    model = _model([helper.make_node("Relu", ["x"], ["c"], name="cond"),
                    helper.make_node("If", ["c"], ["y"], name="If_0"),
                    helper.make_node("Relu", ["y"], ["z"], name="after")])
    kernels = {"cond": 0.1, "If_0": 3.0, "If_0_then_branch__Inline_0__/rnn/LSTM": 0.5,
               "If_0_then_branch__Inline_0__/dec/If_1": 0.2, "after": 0.1}
    att = attribute(model, None, kernels)
    # the If holds its subgraph: its inside kernels' sum (0.7 ms, profiler cost taken off) wins over 3.0
    assert att.node_ms == {"cond": 0.1, "If_0": pytest.approx(0.7), "after": 0.1}
    assert att.adapts == {} and att.targets["If_0_then_branch__Inline_0__/rnn/LSTM"] == "inside:If_0"
    assert sum(att.node_ms.values()) == pytest.approx(0.9)

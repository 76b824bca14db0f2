"""The profiler: coverage of the attribution, routines, cache, cancel, errors, prediction, CLI.

These check behaviour, not speed. Times are noisy on a shared 2-core machine: the prediction test
compares medians and allows up to three attempts.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from engine.measure import profiler
from engine.errors import LayerLabError
from engine.ir.graph import build_graph, load_model
from engine.progress import Cancelled, run
from engine.measure.variants import int8_variant, random_feeds
from engine.passes.precision import PrecisionPass
from engine.measure.profiler import (
    Profile,
    ProfileOptions,
    measure_latency,
    predict_ms,
    profile,
    profile_job,
)
from tests import builders

FAST = {"warmup": 3, "repeats": 20, "profile_runs": 10}


def _options(tmp_path: Path, **kw: object) -> ProfileOptions:
    return ProfileOptions(cache_dir=tmp_path, **{**FAST, **kw})  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def digits_graph(digits_model: Path):
    return load_model(digits_model, {"input": (1, 1, 8, 8)})


# About a millisecond a run on one thread, so that the profiler's fitted per-kernel cost (at most a few
# microseconds on each of a handful of kernels) can hide no kernel counted twice or lost: on 0.1 ms
# models that cost reached 15 % of the run. One thread: on this shared 2-core machine a 2-thread run is
# bimodal under load (the pool's second thread descheduled: ~2x slower, p90 10-20x), and the profiled
# runs and the timed ones caught different modes (coverage 1.74, raw 2.08, reproduced at load 8).
_COVERAGE_MODELS = {
    "conv_stack": lambda: builders.conv_stack(n=4, channels=64, size=32),
    "residual_net": lambda: builders.residual_net(channels=64, size=32),
    "transformer_block": lambda: builders.transformer_block(tokens=128, dim=128),
}


@pytest.mark.parametrize("name", list(_COVERAGE_MODELS))
def test_coverage_within_ten_percent_on_synthetic_graphs(name: str, tmp_path: Path) -> None:
    graph = build_graph(_COVERAGE_MODELS[name]())
    p = profile(graph, _options(tmp_path, routines=("fp32",), adapts=False, threads=1))
    if not 0.9 <= p.coverage <= 1.1:  # load drift between timing and profiling: measure once more
        p = profile(graph, _options(tmp_path / "again", routines=("fp32",), adapts=False, threads=1))
    assert 0.9 <= p.coverage <= 1.1, (p.coverage, p.raw_coverage)
    assert [lp.name for lp in p.layers] == [n.name for n in graph.nodes]  # every node, in order
    # Tiny layers may round to 0 once the profiler's own cost is removed; convs never do.
    assert all(lp.ms >= 0 for lp in p.layers) and all(lp.ms > 0 for lp in p.layers if lp.op == "Conv")
    assert p.end_to_end.p10 <= p.end_to_end.median <= p.end_to_end.p90


def test_digits_routines_unsupported_reasons_and_adapts(digits_graph, tmp_path: Path) -> None:
    p = profile(digits_graph, _options(tmp_path))
    assert 0.9 <= p.coverage <= 1.1
    conv = p.layer("/conv2/Conv")
    assert set(conv.routines) == {"fp32", "int8", "fp16"}
    assert "MatMul/Gemm" in conv.unsupported["int8_dynamic"]
    gemm = p.layer("/fc1/Gemm")
    assert set(gemm.routines) == {"fp32", "int8", "int8_dynamic", "fp16"} and not gemm.unsupported
    assert not p.layer("/relu/Relu").routines  # ops have no routines
    kinds = {a.kind for a in p.adapts if a.routine is None}
    assert kinds == {"quantize", "dequantize", "cast", "transpose", "layout"}
    assert p.adapt_ms("/relu/Relu_output_0", "quantize") is not None
    assert any(a.kind == "run" and a.routine == "fp32" for a in p.adapts)
    assert set(p.variants) == {"fp32", "int8", "int8_dynamic", "fp16", "int8_ops"}  # int8_ops: ops in int8 too
    assert p.layer("/relu/Relu").int8_ops is not None and conv.int8_ops is not None
    assert set(p.adapt_scale) <= {"quantize", "dequantize", "transpose", "layout"}
    assert all(0.25 <= v <= 4 for v in p.adapt_scale.values())
    again = Profile.from_json(json.loads(json.dumps(p.to_json())))
    assert again == p


def test_cache_reuses_and_rekeys_on_threads(tmp_path: Path, monkeypatch) -> None:
    graph = build_graph(builders.conv_stack(3))
    first = profile(graph, _options(tmp_path, routines=("fp32", "int8")))

    def boom(*args, **kwargs):
        raise AssertionError("re-profiled a cached variant")
        yield  # pragma: no cover

    monkeypatch.setattr(profiler, "_profile_variant", boom)
    # the machine times fp32 as it did (engine.measure.freshness): the cached times are reused
    second = profile(graph, _options(tmp_path, routines=("fp32", "int8")), lambda *a: first.end_to_end.median)
    assert second.cache.startswith("reused from the cache")
    assert {**second.to_json(), "cache": ""} == first.to_json()
    with pytest.raises(AssertionError, match="re-profiled"):
        profile(graph, _options(tmp_path, routines=("fp32",), threads=1))
    with pytest.raises(AssertionError, match="re-profiled"):
        profile(graph, _options(tmp_path, routines=("fp32",), use_cache=False))


def test_cancel_returns_partial_profile(tmp_path: Path) -> None:
    graph = build_graph(builders.residual_net())
    seen = []
    with pytest.raises(Cancelled) as info:
        run(profile_job(graph, _options(tmp_path, use_cache=False)), seen.append,
            should_stop=lambda: any(p.message.startswith("profiling int8") for p in seen))
    partial = info.value.partial
    assert isinstance(partial, Profile) and not partial.complete
    assert partial.end_to_end.median > 0 and "int8" not in partial.variants


def test_model_ort_cannot_run_is_a_clear_error(tmp_path: Path) -> None:
    # Valid ONNX, but the Reshape asks for 5 elements out of 16: ORT fails at load or run.
    shape = numpy_helper.from_array(np.array([5], np.int64), "shape")
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["y"], name="bad")], "bad",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [5])], initializer=[shape],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(LayerLabError, match="ONNX Runtime"):
        profile(build_graph(model), _options(tmp_path, routines=("fp32",), adapts=False))


def test_unknown_input_dims_need_a_shape(tmp_path: Path) -> None:
    model = builders.gemm_mlp()
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    with pytest.raises(LayerLabError, match="--input x="):
        profile(build_graph(model), _options(tmp_path))


def _prediction_error(graph, tmp_path: Path, repeats: int, ops: str) -> float:
    feeds = random_feeds(graph)
    half = [n.name for n in graph.layers[::2]]
    # One thread for both: a 2-thread run is at the mercy of whatever else this 2-core machine runs.
    p = profile(graph, _options(tmp_path, routines=("fp32", "int8"), use_cache=False, repeats=repeats, threads=1,
                                ops_int8=ops == "int8"))
    if ops == "int8":
        variant = PrecisionPass(calibration=[feeds, feeds], int8=half, int8_ops_except=[n.name for n in graph.layers])
        measured_model = variant(graph.model).model
    else:
        measured_model = int8_variant(graph, half, feeds)
    measured = measure_latency(measured_model, feeds, threads=1, repeats=repeats * 2).median
    predicted = predict_ms(p, graph, {name: "int8" for name in half}, ops)
    return predicted / measured - 1


def _assert_predicts(graph, tmp_path: Path, repeats: int, ops: str = "fp32") -> None:
    errors = []
    for _ in range(3):  # a busy neighbour can spoil one measurement; the property must hold in one of three
        errors.append(_prediction_error(graph, tmp_path, repeats, ops))
        if abs(errors[-1]) <= 0.15:
            return
    pytest.fail(f"predicted vs measured mixed-plan latency off by {errors}")


@pytest.mark.timing
def test_prediction_of_mixed_plan_digits(digits_graph, tmp_path: Path) -> None:
    _assert_predicts(digits_graph, tmp_path, repeats=40)


@pytest.mark.timing
def test_prediction_of_mixed_plan_with_ops_in_int8_digits(digits_graph, tmp_path: Path) -> None:
    _assert_predicts(digits_graph, tmp_path, repeats=40, ops="int8")


@pytest.mark.timing
def test_prediction_of_mixed_plan_ppocr(ppocr_model: Path, tmp_path: Path) -> None:
    graph = load_model(ppocr_model, {"x": (1, 3, 48, 320)})
    _assert_predicts(graph, tmp_path, repeats=20)


def test_cli_json_and_trace(tmp_path: Path, capsys, monkeypatch) -> None:
    from engine.cli.main import main

    monkeypatch.setenv("LAYERLAB_CACHE", str(tmp_path / "cache"))
    model = tmp_path / "mlp.onnx"
    onnx.save(builders.gemm_mlp(), model)
    trace = tmp_path / "trace.json"
    assert main(["profile", str(model), "--json", "--trace", str(trace), "--repeats", "10"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["end_to_end_ms"]) == {"median", "p10", "p90"}
    assert [layer["name"] for layer in out["layers"]] == ["fc0", "fc0_relu", "fc1"]
    fc0 = out["layers"][0]
    assert fc0["tunable"] and set(fc0["routines"]) == {"fp32", "int8", "int8_dynamic", "fp16"}
    assert "routines" not in out["layers"][1]
    # The 0.9-1.1 coverage property is tested on millisecond models above; this MLP runs in a few µs,
    # where a busy neighbour moved it to 3.4 once. Here: the field is there and is a real ratio.
    assert isinstance(out["adapts"], list) and 0.0 < out["coverage"] < float("inf")
    events = json.loads(trace.read_text())
    assert any(e.get("name") == "fc1_kernel_time" for e in events)  # ORT's Chrome-trace events
    assert main(["profile", str(model), "--repeats", "10"]) == 0  # the text table, from the cache now
    text = capsys.readouterr().out
    assert "coverage" in text and "fc0" in text and "int8_dynamic" in text
    assert main(["profile", str(model), "--threads", "0"]) == 2


def test_unavailable_provider_is_one_line_before_any_measuring(tmp_path: Path, capsys, monkeypatch) -> None:
    from engine.cli.main import main

    monkeypatch.setenv("LAYERLAB_CACHE", str(tmp_path / "cache"))
    model = tmp_path / "mlp.onnx"
    onnx.save(builders.gemm_mlp(), model)
    assert main(["profile", str(model), "--provider", "NoSuchExecutionProvider"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err  # no progress line: nothing was calibrated or timed first
    assert "execution provider NoSuchExecutionProvider is not available here" in err[0] and "mlp.onnx" in err[0]
    assert "generated inputs" not in err[0]  # the inputs are fine: it is the provider
    seen: list = []
    with pytest.raises(LayerLabError, match="NoSuchExecutionProvider is not available"):
        run(profile_job(build_graph(builders.gemm_mlp()), _options(tmp_path, provider="NoSuchExecutionProvider")),
            seen.append)
    assert seen == []


def test_a_variant_is_timed_as_bench_times_it_and_its_trace_priced_to_that(digits_graph, tmp_path: Path,
                                                                           monkeypatch) -> None:
    """Sessions of one model keep different speeds for life (``timing.SESSIONS``): a variant's time is its
    fastest session's, as in bench, and a trace from a slower session is scaled down to that time."""
    from engine.measure.timing import SESSIONS, Calibration

    pools: list[int] = []

    def fake_turns(pool, feeds, repeats, warmup, label=str):
        pools.append(len(pool))
        if False:
            yield
        # the last session is the fastest, at 13 us; the run cost below is 10 us, leaving 3 us for kernels
        return {key: [0.013 * (len(pool) - k)] * repeats for k, key in enumerate(pool)}

    def fixed_calibration(threads, tmp):
        if False:
            yield
        return Calibration(kernel_ms=0.0, run_ms=0.010)  # no per-kernel cost: only the scale can fit the trace

    monkeypatch.setattr(profiler, "time_in_turns", fake_turns)
    monkeypatch.setattr(profiler, "calibrate", fixed_calibration)
    prof = profile(digits_graph, _options(tmp_path, routines=("fp32",), use_cache=False, adapts=False))
    assert pools == [SESSIONS]
    assert prof.end_to_end.median == pytest.approx(0.013)
    kernels = sum(lp.ms for lp in prof.layers) + sum(a.ms for a in prof.adapts if a.routine == "fp32" and a.kind != "run")
    assert kernels == pytest.approx(0.003, rel=1e-6)  # the digits trace sums to ~20 us on its own
    assert prof.coverage == pytest.approx(1.0, rel=1e-6)


def test_a_variant_is_priced_by_its_ratio_to_fp32_timed_in_the_same_turns(digits_graph, tmp_path: Path,
                                                                         monkeypatch) -> None:
    """The machine's speed moves between variants: each is timed in turns with fp32's sessions, and its
    time is fp32's median times the ratio in those turns, not the ms it read at its own moment."""
    pools: list[list[str]] = []

    def fake_turns(pool, feeds, repeats, warmup, label=str):
        pools.append(sorted({name for name, _ in pool}))
        if False:
            yield
        if len(pools) == 1:  # fp32 alone, at 1 ms
            return {key: [1.0] * repeats for key in pool}
        # the machine is twice as slow now: fp32 reads 2 ms, int8 1 ms beside it
        return {key: [2.0 if key[0] == "fp32" else 1.0] * repeats for key in pool}

    monkeypatch.setattr(profiler, "time_in_turns", fake_turns)
    prof = profile(digits_graph, _options(tmp_path, routines=("fp32", "int8"), use_cache=False, adapts=False,
                                          ops_int8=False))
    assert pools == [["fp32"], ["fp32", "int8"]]
    assert prof.end_to_end.median == pytest.approx(1.0)
    assert prof.variants["int8"].median == pytest.approx(0.5)  # half of fp32, as in its turns

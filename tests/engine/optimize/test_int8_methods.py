"""Per-layer int8 methods (CLE, bias correction) as sweep variants chosen by tune."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from engine.errors import SettingsError
from engine.evaluate.evaluator import Evaluator, evaluate, load_evaluator
from engine.evaluate.sensitivity import Sensitivity, SweepSettings, sweep
from engine.ir.graph import ModelGraph, build_graph
from engine.measure.profiler import ProfileOptions, Stats, profile
from engine.model.plan import LayerSettings, Plan
from engine.optimize import tune
from engine.passes.manager import apply_plan
from engine.progress import run

CHANNELS, LAYERS = 16, 4
NAMES = [f"conv_{i}" for i in range(LAYERS)]


def mean_error_chain(seed: int = 0) -> onnx.ModelProto:
    """1x1 Conv+Relu layers whose int8 error has a mean: in each output channel one weight sets the
    per-channel scale and every other weight is 0.45 of a quantization step, so int8 rounds them all
    to 0 and, the inputs being positive, the output loses about the same amount on every sample."""
    rng = np.random.default_rng(seed)
    nodes, inits, x = [], [], "x"
    for i, name in enumerate(NAMES):
        step = 2.0 / 255  # ORT's symmetric int8 step for a channel whose largest weight is 1
        w = np.full((CHANNELS, CHANNELS), 0.45 * step, np.float32)
        w[np.arange(CHANNELS), rng.permutation(CHANNELS)] = 1.0
        inits += [numpy_helper.from_array(w.reshape(CHANNELS, CHANNELS, 1, 1), f"{name}.w"),
                  numpy_helper.from_array((rng.random(CHANNELS) * 0.1).astype(np.float32), f"{name}.b")]
        nodes += [helper.make_node("Conv", [x, f"{name}.w", f"{name}.b"], [f"{name}_out"], name=name),
                  helper.make_node("Relu", [f"{name}_out"], [f"{name}_relu"], name=f"{name}_relu")]
        x = f"{name}_relu"
    shape = [1, CHANNELS, 6, 6]
    graph = helper.make_graph(nodes, "mean_error", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, shape)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.fixture(scope="module")
def chain() -> ModelGraph:
    return build_graph(mean_error_chain())


@pytest.fixture(scope="module")
def evaluator(tmp_path_factory: pytest.TempPathFactory) -> Evaluator:
    path = tmp_path_factory.mktemp("mean_error") / "samples.npz"
    x = np.random.default_rng(1).random((48, CHANNELS, 6, 6), dtype=np.float32)
    np.savez(path, **{"input:x": x})
    return load_evaluator(path, fidelity="cosine")


@pytest.fixture(scope="module")
def methods_sweep(chain: ModelGraph, evaluator: Evaluator) -> Sensitivity:
    return sweep(chain, evaluator, SweepSettings(routines=("int8",), int8_methods=("cle", "bias_correction")))


def test_each_layer_keeps_the_variant_with_the_smallest_drop(chain: ModelGraph, evaluator: Evaluator,
                                                             methods_sweep: Sensitivity) -> None:
    plain = sweep(chain, evaluator, SweepSettings(routines=("int8",)))
    for name in NAMES:
        measured = methods_sweep.layers[name]
        expected = {"minmax", "minmax+bias_correction"} | ({"minmax+cle", "minmax+cle+bias_correction"} if name != NAMES[0] else set())
        assert set(measured.method_drops) == expected, name  # the first conv ends no CLE pair
        assert measured.method_drops["minmax"] == pytest.approx(plain.layers[name].drops["int8"], abs=1e-12)
        best = min(measured.method_drops, key=measured.method_drops.get)
        assert measured.drops["int8"] == measured.method_drops[best]
        assert measured.bias_correction  # the mean error is what int8 loses here
        assert measured.drops["int8"] < 0.2 * plain.layers[name].drops["int8"], name
        # the chosen variant's drop is what a direct evaluation of the single-layer plan gives
        settings = LayerSettings("int8", calibration=None if measured.calibration == "minmax" else measured.calibration,
                                 cle=measured.cle, bias_correction=measured.bias_correction)
        built = apply_plan(chain, Plan(layers={name: settings}), evaluator.calibration()).model
        direct = evaluate(built, evaluator, optimization="extended").metric
        assert methods_sweep.baseline - direct == pytest.approx(measured.drops["int8"], abs=1e-9), name
    again = Sensitivity.from_json(methods_sweep.to_json())
    assert again.layers[NAMES[0]].bias_correction and again.layers[NAMES[0]].method_drops == methods_sweep.layers[NAMES[0]].method_drops
    with pytest.raises(SettingsError, match="int8 method 'smooth'"):
        sweep(chain, evaluator, SweepSettings(int8_methods=("smooth",)))


def test_cle_variant_drop_equals_its_plan(chain: ModelGraph, evaluator: Evaluator, methods_sweep: Sensitivity) -> None:
    name = NAMES[1]
    built = apply_plan(chain, Plan(layers={name: LayerSettings("int8", cle=True)}), evaluator.calibration()).model
    direct = evaluate(built, evaluator, optimization="extended").metric
    assert methods_sweep.baseline - direct == pytest.approx(methods_sweep.layers[name].method_drops["minmax+cle"], abs=1e-9)


def test_tune_reaches_more_int8_layers_with_the_methods(monkeypatch: pytest.MonkeyPatch, chain: ModelGraph,
                                                        evaluator: Evaluator, methods_sweep: Sensitivity) -> None:
    """Within a budget that holds one plain int8 layer, tune with bias correction as a choice puts every
    layer in int8, and the plan it writes says so. Times are fixed (fewer fp32 layers, faster) so the
    routes are decided by the real drops alone; the sweep, the builds and the metrics are real."""
    prof = profile(chain, ProfileOptions(repeats=4, profile_runs=3, warmup=1, use_cache=False, routines=("fp32", "int8")))
    # Every time fixed (a layer 1 ms in fp32, 0.1 ms in int8; ops and conversions next to nothing): the real
    # profile's times move with the machine's load, and on a loaded one a conversion could outweigh a layer.
    fast = replace(prof, layers=[replace(lp, ms=1.0, routines={"int8": 0.1}) if lp.tunable
                                 else replace(lp, ms=0.001, context={}, int8_ops=None) for lp in prof.layers],
                   adapts=[replace(a, ms=0.001) for a in prof.adapts], adapt_scale={})

    def job(value):
        def fn(*args, **kwargs):
            return value
            yield  # noqa: unreachable
        return fn

    def latency(model, feeds, options, label):
        producer = {o: n.op_type for n in model.graph.node for o in n.output}
        convs = [n for n in model.graph.node if n.op_type == "Conv"]
        fp32 = sum(producer.get(n.input[1]) != "DequantizeLinear" for n in convs)
        return Stats(1.0 + fp32, 1.0 + fp32, 1.0 + fp32)
        yield  # noqa: unreachable

    monkeypatch.setattr(tune, "profile_job", job(fast))
    monkeypatch.setattr(tune, "_latency", latency)
    monkeypatch.setattr(tune, "_compare_interleaved", lambda base, candidates, feeds, options: job((Stats(5.0, 5.0, 5.0), {}))())
    plain_drops = sorted(methods_sweep.layers[n].method_drops["minmax"] for n in NAMES)
    budget = plain_drops[0] * 1.5  # one plain int8 layer fits, two do not
    assert sum(methods_sweep.layers[n].drops["int8"] for n in NAMES) < budget
    results = {}
    for methods in ((), ("cle", "bias_correction")):
        results[methods] = run(tune.tune_job(chain, evaluator, tune.TuneOptions(
            max_drop=budget, routines=("fp32", "int8"), int8_methods=methods, max_fill=2)))
    without, with_ = results[()], results[("cle", "bias_correction")]
    count = lambda r: sum(v == "int8" for v in r.routines.values())
    assert count(without) <= 1 and count(with_) >= LAYERS - 1
    assert with_.ms_measured.median < without.ms_measured.median  # the fake times: one ms per fp32 conv
    assert with_.feasible and with_.baseline_metric - with_.metric <= budget
    chosen = [n for n in NAMES if with_.routines[n] == "int8"]
    assert all(with_.plan.layers[n].bias_correction for n in chosen)
    assert not any(without.plan.layers[n].bias_correction for n in NAMES)

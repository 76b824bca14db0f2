"""SmoothQuant as a per-layer int8 variant: measured by the sweep, written by tune's plan, equal to its plan."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.evaluate.evaluator import Evaluator, evaluate, load_evaluator
from engine.evaluate.sensitivity import Sensitivity, SweepSettings, sweep
from engine.ir.graph import ModelGraph, build_graph
from engine.model.plan import LayerSettings, Plan
from engine.optimize.plans import route_plan, sweep_calibration
from engine.passes.layer_variants import SMOOTHQUANT_ALPHA, Int8Variant, parse_variant, variant_name
from engine.passes.manager import apply_plan
from tests.engine.passes.test_smoothquant import _samples, outlier_model

LAYERS = ("mm", "gemm")


@pytest.fixture(scope="module")
def graph() -> ModelGraph:
    """LayerNorm (two outlier channels) read by a MatMul and a Gemm: smoothing one layer alone inserts a Mul."""
    return build_graph(outlier_model(layernorm=True))


@pytest.fixture(scope="module")
def evaluator() -> Evaluator:
    """Fidelity (cosine to fp32) on 40 inputs with two outlier channels, 10 of them split off to calibrate."""
    from engine.evaluate.npz import fidelity_scores

    return Evaluator("outliers", "outliers", lambda: [(s, None) for s in _samples(40, 5)],
                     lambda outputs, reference: fidelity_scores(outputs, reference)["cosine"], fidelity=True)


@pytest.fixture(scope="module")
def smooth_sweep(graph: ModelGraph, evaluator: Evaluator) -> Sensitivity:
    return sweep(graph, evaluator, SweepSettings(routines=("int8",), int8_methods=("smoothquant", "bias_correction")))


def test_variant_names_round_trip() -> None:
    assert variant_name("entropy", smoothquant=True, bias_correction=True) == "entropy+smoothquant+bias_correction"
    assert parse_variant("entropy+smoothquant+bias_correction") == Int8Variant("entropy", False, True, True)
    assert parse_variant("minmax+cle") == Int8Variant("minmax", cle=True)


def test_sweep_measures_smoothquant_and_keeps_the_smallest_drop(graph: ModelGraph, evaluator: Evaluator,
                                                               smooth_sweep: Sensitivity) -> None:
    plain = sweep(graph, evaluator, SweepSettings(routines=("int8",)))
    for name in LAYERS:
        measured = smooth_sweep.layers[name]
        # neither layer has a bias: bias correction, asked for, does not apply
        assert set(measured.method_drops) == {"minmax", "minmax+smoothquant"}, name
        assert measured.method_drops["minmax"] == pytest.approx(plain.layers[name].drops["int8"], abs=1e-12)
        # the outlier channels set the per-tensor scale: migrating them into the weights loses less
        assert measured.method_drops["minmax+smoothquant"] < 0.75 * measured.method_drops["minmax"], name
        assert measured.drops["int8"] == min(measured.method_drops.values()) and measured.smoothquant
        # the chosen variant's drop is what the plan tune writes for it measures directly
        plan = route_plan(graph, {name: "int8"}, calibration=sweep_calibration(smooth_sweep))
        assert plan.layers[name].smoothquant == SMOOTHQUANT_ALPHA
        assert plan.layers[name].bias_correction == measured.bias_correction
        built = apply_plan(graph, plan, evaluator.calibration()).model
        direct = evaluate(built, evaluator, optimization="extended").metric
        assert smooth_sweep.baseline - direct == pytest.approx(measured.drops["int8"], abs=1e-9), name
    again = Sensitivity.from_json(smooth_sweep.to_json())
    assert again.layers["mm"].smoothquant and again.layers["mm"].method_drops == smooth_sweep.layers["mm"].method_drops


def test_layers_smoothquant_cannot_reach_get_no_variant(tmp_path: Path) -> None:
    """A Conv chain (no MatMul/Gemm with a constant weight): asking for smoothquant measures plain int8 only."""
    from tests.engine.optimize.test_int8_methods import CHANNELS, NAMES, mean_error_chain

    chain = build_graph(mean_error_chain())
    path = tmp_path / "conv.npz"
    np.savez(path, **{"input:x": np.random.default_rng(2).random((8, CHANNELS, 6, 6), dtype=np.float32)})
    result = sweep(chain, load_evaluator(path, fidelity="cosine"), SweepSettings(routines=("int8",), int8_methods=("smoothquant",)))
    assert all(set(result.layers[n].method_drops) == {"minmax"} and not result.layers[n].smoothquant for n in NAMES)
    assert Plan(layers={"x": LayerSettings("int8", smoothquant=SMOOTHQUANT_ALPHA)}).layers["x"].smoothquant == 0.5

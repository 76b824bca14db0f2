"""Symmetric activation ranges as a per-layer int8 variant: zero point 128, twice the step, equal to its plan."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from onnx import numpy_helper

from engine.evaluate.evaluator import evaluate, load_evaluator
from engine.evaluate.sensitivity import Sensitivity, SweepSettings, sweep
from engine.ir.graph import load_model
from engine.model.plan import LayerSettings, Plan
from engine.optimize.plans import route_plan, sweep_calibration
from engine.passes.layer_variants import VariantBuilder
from engine.passes.manager import apply_plan

LAYER = "/conv2/Conv"


@pytest.fixture(scope="module")
def digits(digits_model: Path):
    return load_model(digits_model, {"input": (1, 1, 8, 8)})


def _qparams(model, side: str) -> tuple[float, int, int]:
    """(scale, zero point, zero point's ONNX type) of LAYER's quantized input (the DequantizeLinear it reads)
    or output (the QuantizeLinear reading it), in ``model``."""
    inits = {t.name: t for t in model.graph.initializer}
    layer = next(n for n in model.graph.node if n.name == LAYER)
    if side == "input":
        q = next(n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.output[0] == layer.input[0])
    else:
        q = next(n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == layer.output[0])
    zp = inits[q.input[2]]
    return float(numpy_helper.to_array(inits[q.input[1]])), int(numpy_helper.to_array(zp)), zp.data_type


def test_symmetric_ranges_give_zero_point_128_and_twice_the_step(digits, digits_eval: Path) -> None:
    evaluator = load_evaluator(digits_eval)
    builder = VariantBuilder(digits.model, evaluator.calibration())
    plain = builder.build([LAYER], "int8")
    symmetric = builder.build([LAYER], "int8", symmetric=True)
    scale, zp, dtype = _qparams(plain, "input")  # a Relu output: its range is [0, high]
    assert zp == 0 and dtype == 2  # asymmetric uint8 on a non-negative tensor
    s_scale, s_zp, s_dtype = _qparams(symmetric, "input")
    assert s_zp == 128 and s_dtype == 2 and s_scale == pytest.approx(2 * scale, rel=1e-6)
    out_scale, out_zp, _ = _qparams(symmetric, "output")
    assert out_zp == 128 and _qparams(plain, "output")[1] != 128
    # the same through a plan, quantizing the whole model (not the single-layer splice)
    planned = apply_plan(digits, Plan(layers={LAYER: LayerSettings("int8", symmetric=True)}), evaluator.calibration()).model
    assert _qparams(planned, "input")[:2] == pytest.approx((s_scale, 128))
    assert _qparams(planned, "output")[:2] == pytest.approx((out_scale, 128))
    assert Plan.from_json(Plan(layers={LAYER: LayerSettings("int8", symmetric=True)}).to_json()).layers[LAYER].symmetric


def test_sweep_measures_symmetric_and_tunes_plan_matches(digits, digits_eval: Path) -> None:
    evaluator = load_evaluator(digits_eval)
    result = sweep(digits, evaluator, SweepSettings(routines=("int8",), int8_methods=("symmetric",)))
    for layer in result.layers.values():
        assert set(layer.method_drops) == {"minmax", "minmax+symmetric"}, layer.name
        assert layer.drops["int8"] == min(layer.method_drops.values())
    chosen = sweep_calibration(result)
    for name, variant in chosen.items():
        assert variant == "minmax+symmetric" and result.layers[name].symmetric
    again = Sensitivity.from_json(result.to_json())
    assert {n: ls.symmetric for n, ls in again.layers.items()} == {n: ls.symmetric for n, ls in result.layers.items()}
    # the symmetric variant's measured drop is what its plan measures when evaluated directly
    plan = route_plan(digits, {LAYER: "int8"}, calibration={LAYER: "minmax+symmetric"})
    assert plan.layers[LAYER].symmetric
    direct = evaluate(apply_plan(digits, plan, evaluator.calibration()).model, evaluator, optimization="extended").metric
    assert result.baseline - direct == pytest.approx(result.layers[LAYER].method_drops["minmax+symmetric"], abs=1e-9)
    assert not np.isnan(direct)


@pytest.mark.parametrize("prefer_symmetric", [True, False])
def test_equal_drops_are_decided_by_output_sqnr(digits, digits_eval: Path, monkeypatch: pytest.MonkeyPatch,
                                                prefer_symmetric: bool) -> None:
    """Where the metric cannot tell two variants apart, the one with the smaller error on the layer's output
    is kept (a fake SQNR that favours zero point 128, or not, decides); a smaller drop always wins."""
    import engine.evaluate.sensitivity as sensitivity

    def fake_sqnr(graph, layer, variant, suffix, probe, **kwargs) -> float:
        inits = {t.name: numpy_helper.to_array(t) for t in variant.graph.initializer}
        node = next(n for n in variant.graph.node if n.name == layer)
        dq = next(n for n in variant.graph.node if n.op_type == "DequantizeLinear" and n.output[0] == node.input[0])
        symmetric = int(inits[dq.input[2]]) in (127, 128)  # m / scale may round to 127.4999
        return 50.0 if symmetric == prefer_symmetric else 30.0

    monkeypatch.setattr(sensitivity, "layer_sqnr", fake_sqnr)
    result = sweep(digits, load_evaluator(digits_eval), SweepSettings(routines=("int8",), int8_methods=("symmetric",)))
    ties = [ls for ls in result.layers.values() if ls.method_drops["minmax"] == ls.method_drops["minmax+symmetric"]]
    assert ties
    for ls in result.layers.values():
        if ls in ties:
            assert ls.symmetric == prefer_symmetric and ls.sqnr_db["int8"] == 50.0, ls.name
        else:
            better = ls.method_drops["minmax+symmetric"] < ls.method_drops["minmax"]
            assert ls.symmetric == better, ls.name

"""Empirical bias correction lowers the mean output error of int8 layers on the calibration data."""

from __future__ import annotations

import numpy as np

from engine.passes.bias_correction import correct_biases, output_errors
from engine.passes.precision import PrecisionPass, prepare, random_calibration
from tests import builders


def test_bias_correction_lowers_the_mean_error_of_each_layer_and_the_output() -> None:
    fp32 = prepare(builders.residual_net(blocks=2, channels=8))
    calib = random_calibration(fp32, 8, seed=4)
    layers = [n.name for n in fp32.graph.node if n.op_type in ("Conv", "Gemm")]
    int8 = PrecisionPass(int8=layers, calibration=calib)(fp32).model
    corrected, done = correct_biases(fp32, int8, layers, calib)
    assert set(done) == set(layers)
    pairs = [(n.output[0], next(m for m in int8.graph.node if m.name == n.name).output[0])
             for n in fp32.graph.node if n.name in layers]
    before = output_errors(fp32, int8, pairs, calib)
    after = output_errors(fp32, corrected, pairs, calib)
    total_before = sum(float(np.abs(v).mean()) for v in before.values())
    total_after = sum(float(np.abs(v).mean()) for v in after.values())
    assert total_after < 0.5 * total_before
    out = fp32.graph.output[0].name
    final_before = float(np.abs(output_errors(fp32, int8, [(out, out)], calib)[out]).mean())
    final_after = float(np.abs(output_errors(fp32, corrected, [(out, out)], calib)[out]).mean())
    assert final_after < final_before


def test_layers_without_a_quantized_bias_are_left_alone() -> None:
    fp32 = prepare(builders.transformer_block())
    calib = random_calibration(fp32, 2)
    int8 = PrecisionPass(int8=["q", "k"], calibration=calib)(fp32).model  # MatMuls: no bias input
    corrected, done = correct_biases(fp32, int8, ["q", "k"], calib)
    assert done == [] and corrected.SerializeToString() == int8.SerializeToString()


def test_plan_fields_apply_cle_and_bias_correction() -> None:
    from engine.ir.graph import build_graph
    from engine.model.plan import LayerSettings, Plan
    from engine.passes.manager import apply_plan

    graph = build_graph(builders.conv_stack(3, channels=8))
    calib = random_calibration(graph.model, 4)
    int8 = {n: LayerSettings("int8") for n in ("conv_0", "conv_1", "conv_2")}
    plain = apply_plan(graph, Plan(layers=int8), calib)
    both = {n: LayerSettings("int8", cle=True, bias_correction=True) for n in int8}
    plan = Plan.from_json(Plan(layers=both).to_json())
    assert plan.layers["conv_0"].cle and plan.layers["conv_0"].bias_correction
    tuned = apply_plan(graph, plan, calib)
    assert any("cross-layer equalization of 2 conv pair(s)" in n for n in tuned.notes)
    assert any("bias correction of 3 int8 layer(s)" in n for n in tuned.notes)
    fp32 = prepare(graph.model)
    out = fp32.graph.output[0].name
    err_plain = float(np.abs(output_errors(fp32, plain.model, [(out, out)], calib)[out]).mean())
    err_tuned = float(np.abs(output_errors(fp32, tuned.model, [(out, out)], calib)[out]).mean())
    assert err_tuned < err_plain

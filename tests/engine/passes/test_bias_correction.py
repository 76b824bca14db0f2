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

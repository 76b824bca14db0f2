"""Between equal drops, a variant that adds nodes (CLE's Mul on a swish gate) does not win on output error alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from engine.evaluate.evaluator import load_evaluator
from engine.evaluate.sensitivity import SweepSettings, sweep
from onnx import TensorProto, helper, numpy_helper

from engine.ir.graph import build_graph
from tests.engine.passes.test_cle_activations import _gated


def _blind() -> onnx.ModelProto:
    """The swish pair, its output reduced to a constant sign: every variant scores the same (a tie)."""
    model = _gated("swish")
    graph = model.graph
    # B's columns undo A's channel spread (1e-2..1e2), so every channel matters to B's output equally: CLE's
    # even input ranges then quantize B much better (a higher SQNR), which is what must not win the tie
    wb = next(t for t in graph.initializer if t.name == "wb")
    wb.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(wb) / np.logspace(-2, 2, 8)[None, :, None, None].astype(np.float32), "wb"))
    graph.initializer.append(numpy_helper.from_array(np.array(1e6, np.float32), "big"))
    graph.node.extend([helper.make_node("ReduceMean", ["y"], ["m"], name="mean", keepdims=0),
                       helper.make_node("Add", ["m", "big"], ["s"], name="shift"),
                       helper.make_node("Sign", ["s"], ["z"], name="sign")])
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, []))
    return model


def test_an_added_mul_loses_a_tie(tmp_path: Path) -> None:
    graph = build_graph(_blind())
    path = tmp_path / "samples.npz"
    np.savez(path, **{"input:x": np.random.default_rng(1).standard_normal((24, 3, 8, 8)).astype(np.float32)})
    result = sweep(graph, load_evaluator(path, fidelity="cosine"), SweepSettings(routines=("int8",), int8_methods=("cle",)))
    measured = result.layers["B"]
    assert measured.method_drops["minmax"] == measured.method_drops["minmax+cle"]  # a tie: top-1 sees no change
    assert not measured.cle  # the plain variant, without the gate's Mul, is kept

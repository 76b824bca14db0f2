"""Input shape resolution: --input, --dim, the evaluator's samples, batch 1, else a one-line error."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from engine.errors import SettingsError
from engine.ir.graph import build_graph
from engine.ir.resolve import declared_inputs, parse_dim, resolve_input_shapes, sample_shapes
from tests.builders import dynamic_width_cnn


def test_explicit_and_dims_and_batch_default() -> None:
    inputs = declared_inputs(dynamic_width_cnn())
    assert [(i.name, i.dims) for i in inputs] == [("x", ("batch", 3, 16, "width"))]
    r = resolve_input_shapes(inputs, dims={"width": 40})
    assert r.shapes == {"x": (1, 3, 16, 40)} and not r.missing
    assert r.notes == ["batch dim of x (batch) set to 1 (give --input or --dim to change it)"]
    r = resolve_input_shapes(inputs, dims={"width": 40, "batch": 2})
    assert r.shapes == {"x": (2, 3, 16, 40)} and r.notes == []
    r = resolve_input_shapes(inputs, explicit={"x": (3, 3, 16, 8)})
    assert r.shapes == {"x": (3, 3, 16, 8)} and r.notes == []
    # what was given is said too, not on the CLI (the user typed it) but where the shapes are kept
    assert r.given == r.sources == ["x: 3x3x16x8 given with --input"]
    r = resolve_input_shapes(inputs, explicit={"x": (1, 3, 16, 8)}, given_by="in the shape dialog")
    assert r.sources == ["x: 1x3x16x8 given in the shape dialog"]
    r = resolve_input_shapes(inputs, dims={"width": 40})
    assert r.sources == ["width=40 given with --dim", "batch dim of x (batch) set to 1 (give --input or --dim to change it)"]


def test_unresolved_dims_are_one_line_naming_both_flags() -> None:
    r = resolve_input_shapes(declared_inputs(dynamic_width_cnn()), label="m.onnx")
    assert r.missing == {"x": (1, 3, 16, "width")} and r.shapes == {}
    with pytest.raises(SettingsError) as err:
        r.require("m.onnx")
    text = str(err.value)
    assert "\n" not in text and "dim 3 'width'" in text
    assert "--input x=1x3x16xN" in text and "--dim width=N" in text


def test_evaluator_samples_most_frequent_shape_and_spread() -> None:
    inputs = declared_inputs(dynamic_width_cnn())
    feeds = [{"x": np.zeros((1, 3, 16, w), np.float32)} for w in (24, 24, 24, 40, 8)]
    counts = sample_shapes(feeds)
    assert counts == {"x": Counter({(1, 3, 16, 24): 3, (1, 3, 16, 40): 1, (1, 3, 16, 8): 1})}
    r = resolve_input_shapes(inputs, samples=counts)
    assert r.shapes == {"x": (1, 3, 16, 24)}
    assert "vary (3 shapes" in r.notes[0] and "1x3x16x40 x1" in r.notes[0] and "(3 of 5)" in r.notes[0]
    # the evaluator's batch wins over the batch default: its feeds must fit
    r = resolve_input_shapes(inputs, samples=sample_shapes([{"x": np.zeros((4, 3, 16, 9))}]))
    assert r.shapes == {"x": (4, 3, 16, 9)} and "batch" not in " ".join(r.notes)
    # an explicit dim is kept: only samples that fit it count
    r = resolve_input_shapes(inputs, dims={"width": 40}, samples=counts)
    assert r.shapes == {"x": (1, 3, 16, 40)}


def test_paddle_minus_one_batch_is_dynamic() -> None:
    model = dynamic_width_cnn(batch=-1)
    inputs = declared_inputs(model)
    assert inputs[0].dims == (None, 3, 16, "width")
    r = resolve_input_shapes(inputs, dims={"width": 48})
    assert r.shapes == {"x": (1, 3, 16, 48)} and "batch dim of x set to 1" in r.notes[0]
    graph = build_graph(model, {"x": (1, 3, 16, 48)})  # failed before: "dim 0 is fixed at -1, got 1"
    assert graph.inputs[0].shape == (1, 3, 16, 48)
    assert graph.node("conv_a").macs == 8 * 16 * 48 * 3 * 9
    # without shapes a -1 dim is unknown: MACs are None, never negative
    bare = build_graph(model)
    assert bare.inputs[0].shape == (None, 3, 16, "width")
    assert all(n.macs is None or n.macs >= 0 for n in bare.nodes) and bare.node("conv_a").macs is None
    with pytest.raises(SettingsError, match="fixed at 3"):
        resolve_input_shapes(inputs, explicit={"x": (1, 4, 16, 48)})


def test_scalar_inputs_and_bad_dims() -> None:
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("Identity", ["sr"], ["y"])], "g",
                          [helper.make_tensor_value_info("sr", TensorProto.INT64, [])],
                          [helper.make_tensor_value_info("y", TensorProto.INT64, [])])
    inputs = declared_inputs(helper.make_model(g))
    assert inputs[0].dims == () and not inputs[0].dynamic
    assert resolve_input_shapes(inputs).shapes == {} and not resolve_input_shapes(inputs).missing
    assert parse_dim("seq=128") == ("seq", 128)
    for bad in ("seq", "seq=0", "seq=x", "=3"):
        with pytest.raises(SettingsError):
            parse_dim(bad)
    with pytest.raises(SettingsError, match="no dim named 'seq'"):
        resolve_input_shapes(declared_inputs(dynamic_width_cnn()), dims={"seq": 3})

"""Exactness of prune groups through channel shuffles, grouped convs and the ops that pass channels through
(Slice, Pad, Resize, InstanceNormalization): the pruned model computes what the unpruned one computes with
the removed channels zeroed where they are read, by value."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from engine.ir.graph import build_graph
from engine.passes.prune import prune_group
from tests import builders
from tests.engine.passes.test_prune_groups import _const, _pruned, _run, _weight, _x, _zeroed


def _ints(b: builders._Builder, name: str, values: list[int] | int) -> str:
    b.inits.append(numpy_helper.from_array(np.array(values, np.int64), name))
    return name


def _shuffle(b: builders._Builder, y: str, groups: int, channels: int, size: int, name: str) -> str:
    """ShuffleNet's channel shuffle: Reshape [1, G, C/G, H, W], Transpose (0, 2, 1, 3, 4), Reshape [1, C, H, W]."""
    split = _ints(b, f"{name}.split", [1, groups, channels // groups, size, size])
    merged = _ints(b, f"{name}.merged", [1, -1, size, size])
    y = b.node("Reshape", [y, split], name=f"{name}_split")
    y = b.node("Transpose", [y], name=f"{name}_t", perm=[0, 2, 1, 3, 4])
    return b.node("Reshape", [y, merged], name=f"{name}_merge")


def _attr(model: onnx.ModelProto, node: str, name: str) -> object:
    n = next(n for n in model.graph.node if n.name == node)
    return helper.get_attribute_value(next(a for a in n.attribute if a.name == name))


def _check(model: onnx.ModelProto, pruned: onnx.ModelProto, cuts: dict, shape: tuple[int, ...]) -> None:
    x = _x(shape)
    np.testing.assert_allclose(_run(pruned, x), _run(_zeroed(model, cuts), x), rtol=1e-5, atol=1e-5)


def test_channel_shuffle_prunes_the_same_channel_of_every_shuffle_group() -> None:
    b = builders._Builder(0)
    y = b.conv("x", 3, 8, name="c1")
    y = _shuffle(b, y, 2, 8, 6, "shuffle")  # c1 channel g*4 + k lands at k*2 + g
    out = b.conv(y, 8, 4, k=1, name="c2", relu=False)
    model = builders.make_model(b, [1, 3, 6, 6], out, [1, 4, 6, 6])
    group = prune_group(build_graph(model), "c1")
    assert group.prunable and group.channels == 4 and group.unit == 2  # column k = c1 channels {k, k + 4}
    drop = [1, 3]
    pruned, _ = _pruned(model, "c1", drop)
    assert list(_weight(pruned, "shuffle.split")) == [1, 2, 2, 6, 6] and list(_weight(pruned, "shuffle.merged")) == [1, -1, 6, 6]
    assert _weight(pruned, "c1.w").shape[0] == 4 and _weight(pruned, "c2.w").shape[1] == 4
    # the removed c1 channels {1, 5, 3, 7} reach c2 after the shuffle as its inputs {2, 3, 6, 7}
    _check(model, pruned, {"c2.w": (1, [2, 3, 6, 7])}, (1, 3, 6, 6))
    # the same channels zeroed at c1 (before the shuffle) give the same outputs: the permutation is followed
    _check(model, pruned, {"c1.w": (0, [1, 5, 3, 7]), "c1.b": (0, [1, 5, 3, 7])}, (1, 3, 6, 6))


def test_channel_shuffle_as_pytorch_exports_it_with_a_run_time_batch() -> None:
    # x.view(b, groups, c // groups, h, w) with b read at run time: the target is Concat(Unsqueeze(Gather(Shape)), consts)
    b = builders._Builder(0)
    y = b.conv("x", 3, 6, name="c1")
    size = b.node("Gather", [b.node("Shape", [y], name="shape"), _ints(b, "index", 0)], name="gather", axis=0)
    batch = b.node("Unsqueeze", [size, _ints(b, "axis0", [0])], name="unsqueeze")
    split = b.node("Concat", [batch, _ints(b, "dims", [3, 2, 5, 5])], name="target", axis=0)
    merged = b.node("Concat", [batch, _ints(b, "rest", [-1, 5, 5])], name="target2", axis=0)
    y = b.node("Transpose", [b.node("Reshape", [y, split], name="split")], name="t", perm=[0, 2, 1, 3, 4])
    out = b.conv(b.node("Reshape", [y, merged], name="merge"), 6, 2, k=1, name="c2", relu=False)
    model = builders.make_model(b, [1, 3, 5, 5], out, [1, 2, 5, 5])
    pruned, group = _pruned(model, "c1", [0])  # column 0: c1 channels {0, 2, 4}, after the shuffle {0, 1, 2}
    assert group.channels == 2 and list(_weight(pruned, "dims")) == [3, 1, 5, 5]
    _check(model, pruned, {"c2.w": (1, [0, 1, 2])}, (1, 3, 5, 5))


def test_shufflenet_v2_unit_prunes_the_branch_with_the_passthrough_half() -> None:
    # stem -> Split [4, 4]; the second half through a branch; Concat [first half, branch] -> shuffle -> conv.
    # The shuffle pairs branch channel k with passthrough channel k, so the stem's channel k goes too.
    b = builders._Builder(1)
    y = b.conv("x", 3, 8, name="stem")
    b.nodes.append(helper.make_node("Split", [y, _ints(b, "sizes", [4, 4])], ["x1", "x2"], name="split", axis=1))
    br = b.conv("x2", 4, 4, k=1, name="b1")
    br = b.conv(br, 4, 4, name="b2", relu=False)
    cat = b.node("Concat", ["x1", br], name="cat", axis=1)
    out = b.conv(_shuffle(b, cat, 2, 8, 5, "shuffle"), 8, 3, k=1, name="head", relu=False)
    model = builders.make_model(b, [1, 3, 5, 5], out, [1, 3, 5, 5])
    drop = [2]
    pruned, group = _pruned(model, "b2", drop)
    assert set(group.layers) == {"b2", "stem"} and group.channels == 4
    assert list(_weight(pruned, "sizes")) == [3, 4] and _weight(pruned, "b2.w").shape[0] == 3
    _check(model, pruned, {"head.w": (1, [4, 5])}, (1, 3, 5, 5))  # column 2 is shuffled to channels {4, 5}


def _grouped(cin: int, cout: int, groups: int, k: int = 3) -> onnx.ModelProto:
    b = builders._Builder(2)
    y = b.conv("x", 3, cin, name="c1")
    y = b.conv(y, cin, cout, k=k, name="g", group=groups)
    out = b.conv(y, cout, 3, k=1, name="c3", relu=False)
    return builders.make_model(b, [1, 3, 6, 6], out, [1, 3, 6, 6])


def test_grouped_conv_input_prunes_the_same_channel_of_every_group() -> None:
    model = _grouped(8, 6, 2)  # 2 groups of 4 inputs and 3 outputs
    drop = [0, 2]  # columns: c1 channels {0, 4} and {2, 6}
    pruned, group = _pruned(model, "c1", drop)
    assert group.channels == 4 and group.layers == ["c1"] and group.consumers == ["g"]
    assert _weight(pruned, "g.w").shape == (6, 2, 3, 3) and _attr(pruned, "g", "group") == 2
    _check(model, pruned, {"g.w": (1, [0, 2])}, (1, 3, 6, 6))


def test_grouped_conv_output_prunes_the_same_channel_of_every_group() -> None:
    model = _grouped(8, 6, 2)
    drop = [1]  # outputs {1, 4}
    pruned, group = _pruned(model, "g", drop)
    assert group.layers == ["g"] and group.channels == 3 and group.unit == 2
    assert _weight(pruned, "g.w").shape == (4, 4, 3, 3) and _attr(pruned, "g", "group") == 2
    _check(model, pruned, {"c3.w": (1, [1, 4])}, (1, 3, 6, 6))


def test_grouped_conv_with_one_output_per_group_loses_whole_groups() -> None:
    model = _grouped(8, 4, 4)  # 4 groups of 2 inputs, 1 output each
    drop = [1, 2]
    pruned, group = _pruned(model, "g", drop)
    assert group.layers == ["c1"] and group.channels == 4  # a group channel: c1's two channels of one conv group
    assert _attr(pruned, "g", "group") == 2 and _weight(pruned, "c1.w").shape[0] == 4
    _check(model, pruned, {"c3.w": (1, [1, 2])}, (1, 3, 6, 6))


def test_depthwise_with_a_multiplier_prunes_one_output_per_channel() -> None:
    model = _grouped(4, 8, 4)  # depthwise, multiplier 2
    pruned, group = _pruned(model, "g", [0])  # outputs {0, 2, 4, 6}: the first of each channel's two
    assert group.layers == ["g"] and _attr(pruned, "g", "group") == 4
    _check(model, pruned, {"c3.w": (1, [0, 2, 4, 6])}, (1, 3, 6, 6))


def _passing(op: str) -> tuple[onnx.ModelProto, int]:
    """conv (8) -> ``op`` -> conv; returns the model and the consumer's input size."""
    b = builders._Builder(3)
    rng = np.random.default_rng(4)
    y = b.conv("x", 3, 8, name="c1")
    size, cin = 6, 8
    if op == "Pad":
        y = b.node("Pad", [y, _ints(b, "pads", [0, 0, 1, 2, 0, 0, 2, 1]), _const(b, "pad_value", np.array(0.5))], name="pad")
        size = 9
    elif op == "Resize":
        y = b.node("Resize", [y, "", "", _ints(b, "sizes", [1, 8, 12, 12])], name="resize", mode="nearest")
        size = 12
    elif op == "InstanceNormalization":
        scale, bias = _const(b, "in.s", rng.uniform(0.5, 2, 8)), _const(b, "in.b", rng.standard_normal(8))
        y = b.node("InstanceNormalization", [y, scale, bias], name="inorm")
    elif op == "Slice":
        y = b.node("Slice", [y, _ints(b, "starts", [2]), _ints(b, "ends", [7]), _ints(b, "axes", [1])], name="slice")
        cin = 5
    out = b.conv(y, cin, 4, k=1, name="c2", relu=False)
    return builders.make_model(b, [1, 3, 6, 6], out, [1, 4, size, size]), cin


@pytest.mark.parametrize("op", ["Pad", "Resize", "InstanceNormalization"])
def test_ops_that_pass_channels_through(op: str) -> None:
    model, _ = _passing(op)
    drop = [1, 2, 6]
    pruned, group = _pruned(model, "c1", drop)
    assert group.consumers == ["c2"] and _weight(pruned, "c2.w").shape[1] == 5
    if op == "Resize":
        assert list(_weight(pruned, "sizes")) == [1, 5, 12, 12]
    if op == "InstanceNormalization":
        assert _weight(pruned, "in.s").shape == (5,) and _weight(pruned, "in.b").shape == (5,)
    _check(model, pruned, {"c2.w": (1, drop)}, (1, 3, 6, 6))


def test_slice_on_the_channel_axis_moves_its_bounds() -> None:
    model, _ = _passing("Slice")
    drop = [0, 3, 6]  # 0 lies before the slice [2, 7), 3 and 6 inside it
    pruned, _ = _pruned(model, "c1", drop)
    assert (int(_weight(pruned, "starts")[0]), int(_weight(pruned, "ends")[0])) == (1, 4)
    _check(model, pruned, {"c2.w": (1, [1, 4])}, (1, 3, 6, 6))

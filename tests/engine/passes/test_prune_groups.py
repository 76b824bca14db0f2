"""Exactness of prune groups: the pruned model computes what the unpruned one computes with the removed
channels zeroed where they are read (the consumers' input columns), pattern by pattern, by value."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper

from engine.ir.graph import build_graph
from engine.passes.base import clone, refresh_shapes
from engine.passes.prune import can_prune, prune_group
from tests import builders


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def _zeroed(model: onnx.ModelProto, cuts: dict[str, tuple[int, list[int]]]) -> onnx.ModelProto:
    """``model`` with initializer entries ``cuts[name] = (axis, indices)`` set to zero."""
    out = clone(model)
    for t in out.graph.initializer:
        if t.name in cuts:
            axis, idx = cuts[t.name]
            a = numpy_helper.to_array(t).copy()
            np.moveaxis(a, axis, 0)[idx] = 0
            t.CopyFrom(numpy_helper.from_array(a, t.name))
    return out


def _pruned(model: onnx.ModelProto, layer: str, drop: list[int]) -> tuple[onnx.ModelProto, object]:
    graph = build_graph(model)
    group = prune_group(graph, layer)
    assert group.prunable, group.details()
    pruned = clone(graph.model)
    group.prune(pruned, drop)
    pruned = refresh_shapes(pruned)
    onnx.checker.check_model(pruned, full_check=True)
    return pruned, group


def _weight(model: onnx.ModelProto, name: str) -> np.ndarray:
    return numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == name))


def _x(shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(1).standard_normal(shape).astype(np.float32)


def _const(b: builders._Builder, name: str, array: np.ndarray) -> str:
    b.inits.append(numpy_helper.from_array(array.astype(np.float32), name))
    return name


def test_batchnorm_prelu_and_per_channel_operands_are_sliced() -> None:
    b = builders._Builder(0)
    rng = np.random.default_rng(3)
    y = b.conv("x", 3, 8, name="c1", relu=False)
    bn = [_const(b, f"bn.{s}", rng.uniform(0.5, 1.5, 8)) for s in "sbmv"]
    y = b.node("BatchNormalization", [y, *bn], name="bn")
    y = b.node("PRelu", [y, _const(b, "slope", rng.uniform(0, 0.5, (8, 1, 1)))], name="prelu")
    y = b.node("Mul", [y, _const(b, "scale", rng.uniform(0.5, 2, (1, 8, 1, 1)))], name="mul")
    y = b.node("Add", [y, _const(b, "shift", rng.standard_normal((8, 1, 1)))], name="add")
    y = b.node("Div", [y, _const(b, "three", np.array([3.0]))], name="div")
    out = b.conv(y, 8, 4, k=1, name="c2", relu=False)
    model = builders.make_model(b, [1, 3, 6, 6], out, [1, 4, 6, 6])
    drop = [1, 4, 5]
    pruned, group = _pruned(model, "c1", drop)
    assert group.layers == ["c1"] and group.consumers == ["c2"]
    assert {"bn", "prelu", "mul", "add"} <= {m.node for m in group.members if m.role.startswith("per-channel")}
    assert _weight(pruned, "bn.s").shape == (5,) and _weight(pruned, "slope").shape == (5, 1, 1)
    x = _x((1, 3, 6, 6))
    np.testing.assert_allclose(_run(pruned, x), _run(_zeroed(model, {"c2.w": (1, drop)}), x), rtol=1e-5, atol=1e-5)


def test_depthwise_conv_is_pruned_with_its_producer() -> None:
    b = builders._Builder(0)
    y = b.conv("x", 3, 16, name="stem")
    y = b.conv(y, 16, 16, name="dw", group=16)
    out = b.conv(y, 16, 8, k=1, name="project", relu=False)
    model = builders.make_model(b, [1, 3, 8, 8], out, [1, 8, 8, 8])
    drop = [0, 7, 9, 15]
    pruned, group = _pruned(model, "dw", drop)  # asking for the depthwise conv gives its producer's group
    assert group.layers == ["stem"] and "dw" in group.names("depthwise")
    dw = next(n for n in pruned.graph.node if n.name == "dw")
    assert helper.get_attribute_value(next(a for a in dw.attribute if a.name == "group")) == 12
    x = _x((1, 3, 8, 8))
    np.testing.assert_allclose(_run(pruned, x), _run(_zeroed(model, {"project.w": (1, drop)}), x), rtol=1e-5, atol=1e-5)


def test_residual_chain_prunes_every_producer_and_consumer() -> None:
    model = builders.residual_net(blocks=2)
    drop = [2, 3, 11]
    pruned, group = _pruned(model, "block0_b", drop)
    assert set(group.layers) == {"stem", "block0_b", "block1_b"}
    assert set(group.consumers) == {"block0_a", "block1_a", "fc"}
    x = _x((1, 3, 16, 16))
    ref = _zeroed(model, {"block0_a.w": (1, drop), "block1_a.w": (1, drop), "fc.w": (1, drop)})
    np.testing.assert_allclose(_run(pruned, x), _run(ref, x), rtol=1e-5, atol=1e-5)


def test_concat_offsets_and_depthwise_after_concat() -> None:
    model = builders.concat_net(channels=8)
    drop = [0, 3]
    pruned, group = _pruned(model, "right", drop)  # the second input: channels 8.. of the concat
    assert group.layers == ["right"] and group.consumers == ["project"]
    assert _weight(pruned, "depthwise.w").shape == (14, 1, 3, 3) and _weight(pruned, "left.w").shape[0] == 8
    x = _x((1, 3, 16, 16))
    ref = _zeroed(model, {"project.w": (1, [8, 11])})
    np.testing.assert_allclose(_run(pruned, x), _run(ref, x), rtol=1e-5, atol=1e-5)


def test_flatten_into_gemm_removes_each_channels_block() -> None:
    b = builders._Builder(0)
    y = b.conv("x", 2, 6, name="c1")
    y = b.node("MaxPool", [y], name="pool", kernel_shape=[2, 2], strides=[2, 2])
    y = b.node("Flatten", [y], name="flat")
    out = b.node("Gemm", [y, b.weight("fc.w", (5, 6 * 4)), b.weight("fc.b", (5,))], name="fc", transB=1)
    model = builders.make_model(b, [1, 2, 4, 4], out, [1, 5])
    drop = [1, 4]
    pruned, group = _pruned(model, "c1", drop)
    assert _weight(pruned, "fc.w").shape == (5, 16)
    cols = [c * 4 + j for c in drop for j in range(4)]
    x = _x((1, 2, 4, 4))
    np.testing.assert_allclose(_run(pruned, x), _run(_zeroed(model, {"fc.w": (1, cols)}), x), rtol=1e-5, atol=1e-5)


def test_split_on_the_channel_axis() -> None:
    b = builders._Builder(0)
    y = b.conv("x", 3, 8, name="c1")
    b.inits.append(numpy_helper.from_array(np.array([3, 5], np.int64), "sizes"))
    b.nodes.append(helper.make_node("Split", [y, "sizes"], ["s0", "s1"], name="split", axis=1))
    left = b.conv("s0", 3, 4, k=1, name="l", relu=False)
    right = b.conv("s1", 5, 4, k=1, name="r", relu=False)
    out = b.node("Add", [left, right], name="sum")
    model = builders.make_model(b, [1, 3, 6, 6], out, [1, 4, 6, 6])
    drop = [1, 5, 6]  # one from the first part, two from the second
    pruned, group = _pruned(model, "c1", drop)
    assert list(_weight(pruned, "sizes")) == [2, 3]
    x = _x((1, 3, 6, 6))
    ref = _zeroed(model, {"l.w": (1, [1]), "r.w": (1, [2, 3])})
    np.testing.assert_allclose(_run(pruned, x), _run(ref, x), rtol=1e-5, atol=1e-5)


def _attention(heads: int = 4, dh: int = 4, tokens: int = 5) -> onnx.ModelProto:
    """Multi-head self-attention with Reshape/Transpose head plumbing, then an FFN."""
    b = builders._Builder(0)
    d = heads * dh

    def linear(x: str, m: int, n: int, name: str) -> str:
        return b.node("Add", [b.node("MatMul", [x, b.weight(f"{name}.w", (m, n))], name=name), b.weight(f"{name}.b", (n,))], name=f"{name}_bias")

    b.inits.append(numpy_helper.from_array(np.array([1, tokens, heads, dh], np.int64), "heads_shape"))
    b.inits.append(numpy_helper.from_array(np.array([1, tokens, d], np.int64), "merged_shape"))
    q, k, v = (b.node("Reshape", [linear("x", d, d, n), "heads_shape"], name=f"{n}_split") for n in "qkv")
    q = b.node("Transpose", [q], name="q_t", perm=[0, 2, 1, 3])
    k = b.node("Transpose", [k], name="k_t", perm=[0, 2, 3, 1])
    v = b.node("Transpose", [v], name="v_t", perm=[0, 2, 1, 3])
    s = b.node("Mul", [b.node("MatMul", [q, k], name="scores"), _const(b, "scale", np.array([0.5]))], name="scaled")
    ctx = b.node("MatMul", [b.node("Softmax", [s], name="softmax", axis=-1), v], name="context")
    ctx = b.node("Reshape", [b.node("Transpose", [ctx], name="ctx_t", perm=[0, 2, 1, 3]), "merged_shape"], name="merge")
    h = b.node("Add", ["x", linear(ctx, d, d, "o")], name="res")
    up = b.node("Relu", [linear(h, d, 2 * d, "up")], name="act")
    out = b.node("Add", [h, linear(up, 2 * d, d, "down")], name="res2")
    return builders.make_model(b, [1, tokens, d], out, [1, tokens, d])


def test_attention_heads_are_pruned_whole_with_reshape_constants() -> None:
    model = _attention()
    drop = [1, 2]
    pruned, group = _pruned(model, "q", drop)
    assert group.unit == 4 and group.channels == 4
    assert set(group.layers) == {"q", "k", "v"} and group.consumers == ["o"]
    shapes = {n.name: list(_weight(pruned, n.input[1])) for n in pruned.graph.node if n.op_type == "Reshape"}
    assert shapes == {"q_split": [1, 5, 2, 4], "k_split": [1, 5, 2, 4], "v_split": [1, 5, 2, 4], "merge": [1, 5, 8]}
    rows = [h * 4 + j for h in drop for j in range(4)]
    x = _x((1, 5, 16))
    np.testing.assert_allclose(_run(pruned, x), _run(_zeroed(model, {"o.w": (0, rows)}), x), rtol=1e-5, atol=1e-5)


def test_ffn_hidden_dim() -> None:
    model = _attention()
    drop = [0, 5, 6, 30]
    pruned, group = _pruned(model, "up", drop)
    assert group.layers == ["up"] and group.consumers == ["down"] and _weight(pruned, "up.b").shape == (28,)
    x = _x((1, 5, 16))
    np.testing.assert_allclose(_run(pruned, x), _run(_zeroed(model, {"down.w": (0, drop)}), x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "model, layer, reason",
    [
        (builders.conv_stack(), "conv_3", "graph output"),
        (builders.transformer_block(), "mlp_down", "LayerNormalization 'ln2' normalizes over the pruned axis"),
        (_attention(), "o", "graph input"),
    ],
)
def test_refusals_name_the_cause(model: onnx.ModelProto, layer: str, reason: str) -> None:
    graph = build_graph(model)
    assert reason in (can_prune(graph, layer) or "")
    assert "cannot be pruned" in prune_group(graph, layer).details()


def test_details_lists_layers_and_per_channel_ops() -> None:
    text = prune_group(build_graph(builders.residual_net()), "stem").details()
    assert "layer: Conv stem, Conv block0_b, Conv block1_b" in text and "residual: Add block0_add" in text


def test_split_concat_with_shortcut_and_reshaped_bias() -> None:
    # C2f-like: conv -> Split [4, 4] -> bottleneck on the second half with a shortcut -> Concat of all
    # three -> 1x1 conv; the bias of the bottleneck is a constant reshaped to [1, C, 1, 1] (Paddle style).
    b = builders._Builder(0)
    y = b.conv("x", 3, 8, name="cv1")
    b.inits.append(numpy_helper.from_array(np.array([4, 4], np.int64), "sizes"))
    b.nodes.append(helper.make_node("Split", [y, "sizes"], ["s0", "s1"], name="split", axis=1))
    m = b.conv("s1", 4, 4, name="m1")
    m = b.conv(m, 4, 4, name="m2", relu=False)
    _const(b, "m_bias", np.random.default_rng(5).standard_normal(4))
    b.inits.append(numpy_helper.from_array(np.array([1, 4, 1, 1], np.int64), "bias_shape"))
    m = b.node("Add", [m, b.node("Reshape", ["m_bias", "bias_shape"], name="bias_4d")], name="m_add")
    m = b.node("Add", ["s1", m], name="shortcut")
    cat = b.node("Concat", ["s0", "s1", m], name="cat", axis=1)
    out = b.conv(cat, 12, 5, k=1, name="cv2", relu=False)
    model = builders.make_model(b, [1, 3, 6, 6], out, [1, 5, 6, 6])
    drop = [1, 5, 6]  # 1 of the first half, 2 of the second (which the bottleneck shares)
    pruned, group = _pruned(model, "cv1", drop)
    assert set(group.layers) == {"cv1", "m2"} and set(group.consumers) == {"m1", "cv2"}
    assert list(_weight(pruned, "sizes")) == [3, 2] and _weight(pruned, "m_bias").shape == (2,)
    x = _x((1, 3, 6, 6))
    ref = _zeroed(model, {"cv2.w": (1, [1, 5, 6, 9, 10]), "m1.w": (1, [1, 2])})
    np.testing.assert_allclose(_run(pruned, x), _run(ref, x), rtol=1e-5, atol=1e-5)


def test_reduce_over_other_axes_keeps_the_channels() -> None:
    b = builders._Builder(0)
    y = b.conv("x", 3, 6, name="c1")
    y = b.node("ReduceMean", [y], name="mean", axes=[2, 3], keepdims=0)  # opset 17: axes attribute
    out = b.node("Gemm", [y, b.weight("fc.w", (4, 6)), b.weight("fc.b", (4,))], name="fc", transB=1)
    model = builders.make_model(b, [1, 3, 5, 5], out, [1, 4])
    pruned, _ = _pruned(model, "c1", [0, 2])
    x = _x((1, 3, 5, 5))
    np.testing.assert_allclose(_run(pruned, x), _run(_zeroed(model, {"fc.w": (1, [0, 2])}), x), rtol=1e-5, atol=1e-5)

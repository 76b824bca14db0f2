"""Tiny ONNX models built inline for tests and benchmarks: conv stacks, residual blocks, concats,
depthwise convs and transformer blocks. Weights are seeded random numbers."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = ["make_model", "conv_stack", "residual_net", "concat_net", "transformer_block", "gemm_mlp", "dynamic_width_cnn", "classic_cnn", "bert_encoder",
           "run_time_reshape_head"]


class _Builder:
    def __init__(self, seed: int = 0) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.rng = np.random.default_rng(seed)
        self.count = 0

    def weight(self, name: str, shape: tuple[int, ...], scale: float | None = None) -> str:
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else shape[0]
        scale = scale if scale is not None else 1.0 / np.sqrt(max(fan_in, 1))
        self.inits.append(numpy_helper.from_array((self.rng.standard_normal(shape) * scale).astype(np.float32), name))
        return name

    def node(self, op: str, inputs: list[str], name: str | None = None, **attrs: object) -> str:
        self.count += 1
        name = name or f"{op.lower()}_{self.count}"
        out = f"{name}_out"
        self.nodes.append(helper.make_node(op, inputs, [out], name=name, **attrs))
        return out

    def conv(self, x: str, cin: int, cout: int, k: int = 3, name: str | None = None, group: int = 1, relu: bool = True) -> str:
        self.count += 1
        name = name or f"conv_{self.count}"
        w = self.weight(f"{name}.w", (cout, cin // group, k, k))
        b = self.weight(f"{name}.b", (cout,), 0.1)
        y = self.node("Conv", [x, w, b], name=name, pads=[k // 2] * 4, group=group)
        return self.node("Relu", [y], name=f"{name}_relu") if relu else y


def make_model(b: _Builder, x_shape: list[int | str], out: str, out_shape: list[int | str], opset: int = 17) -> onnx.ModelProto:
    """Wrap the builder's nodes into a checked model with input ``x`` and output ``out``."""
    graph = helper.make_graph(
        b.nodes,
        "test",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, out_shape)],
        initializer=b.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def conv_stack(n: int = 4, channels: int = 16, size: int = 16, seed: int = 0) -> onnx.ModelProto:
    """x[1,C,H,W] -> n Conv+Relu layers."""
    b = _Builder(seed)
    x = "x"
    for i in range(n):
        x = b.conv(x, channels, channels, name=f"conv_{i}")
    return make_model(b, [1, channels, size, size], x, [1, channels, size, size])


def residual_net(blocks: int = 2, channels: int = 16, size: int = 16, seed: int = 0) -> onnx.ModelProto:
    """A stem conv, then residual blocks (conv-relu-conv + skip Add), GAP and a Gemm classifier."""
    b = _Builder(seed)
    x = b.conv("x", 3, channels, name="stem")
    for i in range(blocks):
        y = b.conv(x, channels, channels, name=f"block{i}_a")
        y = b.conv(y, channels, channels, name=f"block{i}_b", relu=False)
        x = b.node("Relu", [b.node("Add", [x, y], name=f"block{i}_add")], name=f"block{i}_relu")
    x = b.node("GlobalAveragePool", [x], name="gap")
    x = b.node("Flatten", [x], name="flatten")
    w = b.weight("fc.w", (10, channels))
    bias = b.weight("fc.b", (10,), 0.1)
    x = b.node("Gemm", [x, w, bias], name="fc", transB=1)
    return make_model(b, [1, 3, size, size], x, [1, 10])


def concat_net(channels: int = 8, size: int = 16, seed: int = 0) -> onnx.ModelProto:
    """Two conv branches concatenated, a depthwise conv, then a 1x1 conv."""
    b = _Builder(seed)
    x = b.conv("x", 3, channels, name="stem")
    left = b.conv(x, channels, channels, name="left")
    right = b.conv(x, channels, channels, k=1, name="right")
    cat = b.node("Concat", [left, right], name="cat", axis=1)
    dw = b.conv(cat, 2 * channels, 2 * channels, name="depthwise", group=2 * channels)
    out = b.conv(dw, 2 * channels, channels, k=1, name="project", relu=False)
    return make_model(b, [1, 3, size, size], out, [1, channels, size, size])


def gemm_mlp(sizes: tuple[int, ...] = (64, 128, 10), batch: int = 4, seed: int = 0) -> onnx.ModelProto:
    """x[batch, sizes[0]] -> Gemm+Relu ... -> Gemm."""
    b = _Builder(seed)
    x = "x"
    for i, (m, n) in enumerate(zip(sizes, sizes[1:])):
        w = b.weight(f"fc{i}.w", (n, m))
        bias = b.weight(f"fc{i}.b", (n,), 0.1)
        x = b.node("Gemm", [x, w, bias], name=f"fc{i}", transB=1)
        if i < len(sizes) - 2:
            x = b.node("Relu", [x], name=f"fc{i}_relu")
    return make_model(b, [batch, sizes[0]], x, [batch, sizes[-1]])


def transformer_block(tokens: int = 16, dim: int = 32, seed: int = 0) -> onnx.ModelProto:
    """Single-head self-attention (MatMul + Softmax) and an MLP, each with a residual and LayerNorm."""
    b = _Builder(seed)

    def linear(x: str, m: int, n: int, name: str) -> str:
        w = b.weight(f"{name}.w", (m, n))
        bias = b.weight(f"{name}.b", (n,), 0.1)
        return b.node("Add", [b.node("MatMul", [x, w], name=name), bias], name=f"{name}_bias")

    def norm(x: str, name: str) -> str:
        scale = b.weight(f"{name}.g", (dim,), 0.1)
        shift = b.weight(f"{name}.beta", (dim,), 0.1)
        return b.node("LayerNormalization", [x, scale, shift], name=name, axis=-1)

    q, k, v = (linear("x", dim, dim, n) for n in ("q", "k", "v"))
    kt = b.node("Transpose", [k], name="k_t", perm=[0, 2, 1])
    scores = b.node("MatMul", [q, kt], name="scores")
    scale = b.weight("attn.scale", (1,), 0.0)
    b.inits[-1] = numpy_helper.from_array(np.array([1.0 / np.sqrt(dim)], np.float32), "attn.scale")
    probs = b.node("Softmax", [b.node("Mul", [scores, scale], name="scale")], name="softmax", axis=-1)
    attn = linear(b.node("MatMul", [probs, v], name="context"), dim, dim, "proj")
    x = norm(b.node("Add", ["x", attn], name="residual1"), "ln1")
    h = b.node("Relu", [linear(x, dim, 4 * dim, "mlp_up")], name="mlp_relu")
    h = linear(h, 4 * dim, dim, "mlp_down")
    out = norm(b.node("Add", [x, h], name="residual2"), "ln2")
    return make_model(b, [1, tokens, dim], out, [1, tokens, dim])


def dynamic_width_cnn(batch: int | str = "batch", seed: int = 0) -> onnx.ModelProto:
    """x[batch,3,16,width] -> Conv+Relu, Conv, GlobalAveragePool, Flatten, Gemm -> [batch,4]: a recognizer-like CNN.

    ``batch=-1`` writes the batch as Paddle exports do (``dim_value: -1``).
    """
    b = _Builder(seed)
    y = b.conv("x", 3, 8, name="conv_a")
    y = b.conv(y, 8, 8, name="conv_b", relu=False)
    y = b.node("GlobalAveragePool", [y], name="pool")
    y = b.node("Flatten", [y], name="flat")
    w = b.weight("fc.w", (4, 8))
    y = b.node("Gemm", [y, w], name="fc", transB=1)
    return make_model(b, [batch, 3, 16, "width"], y, [batch, 4])


def classic_cnn(seed: int = 0) -> onnx.ModelProto:
    """An older-export CNN (opset 11, IR 6): the weights are computed and the initializers listed as inputs.

    conv1's weight comes through an Identity -> Cast chain, its bias from ConstantOfShape, a
    BatchNormalization follows; fc is a MatMul whose weight is a Transpose of a stored tensor.
    """
    rng = np.random.default_rng(seed)
    inits, nodes = [], []
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 16, 16])]

    def stored(name: str, array: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(array.astype(np.float32), name))
        inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(array.shape)))  # listed as an input
        return name

    stored("w1_raw", rng.standard_normal((8, 3, 3, 3)) / 5)
    nodes.append(helper.make_node("Identity", ["w1_raw"], ["w1_id"], name="w1_identity"))
    nodes.append(helper.make_node("Cast", ["w1_id"], ["w1"], to=TensorProto.FLOAT, name="w1_cast"))
    inits.append(numpy_helper.from_array(np.array([8], np.int64), "b1_shape"))
    nodes.append(helper.make_node("ConstantOfShape", ["b1_shape"], ["b1"], name="b1_fill",
                                  value=numpy_helper.from_array(np.array([0.1], np.float32))))
    nodes.append(helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"))
    bn = [stored(f"bn_{k}", v) for k, v in (("s", rng.random(8) + 0.5), ("b", rng.random(8)), ("m", rng.random(8)),
                                             ("v", rng.random(8) + 0.5))]
    nodes.append(helper.make_node("BatchNormalization", ["c1", *bn], ["n1"], name="bn1"))
    nodes.append(helper.make_node("Relu", ["n1"], ["r1"], name="relu1"))
    nodes.append(helper.make_node("Flatten", ["r1"], ["f"], name="flat"))
    stored("w2_stored", rng.standard_normal((4, 8 * 16 * 16)) / 40)
    nodes.append(helper.make_node("Transpose", ["w2_stored"], ["w2"], perm=[1, 0], name="w2_transpose"))
    nodes.append(helper.make_node("MatMul", ["f", "w2"], ["y"], name="fc"))
    graph = helper.make_graph(nodes, "classic", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
                              initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    model.ir_version = 6
    onnx.checker.check_model(model)
    return model


def bert_encoder(vocab: int = 50, hidden: int = 16, seed: int = 0, mask_dtype: int = TensorProto.INT64) -> onnx.ModelProto:
    """A one-layer BERT-class encoder: word and token-type (2 rows) Gather embeddings, an attention mask, self-attention.

    Inputs input_ids, attention_mask, token_type_ids: [batch, seq]. A token type >= 2 or an id >= ``vocab``
    makes ONNX Runtime's Gather fail, as it does on real encoders.
    """
    b = _Builder(seed)
    f = TensorProto.FLOAT
    word = b.weight("word_embeddings", (vocab, hidden), 0.5)
    types = b.weight("token_type_embeddings", (2, hidden), 0.5)
    we = b.node("Gather", [word, "input_ids"], name="word_gather")
    te = b.node("Gather", [types, "token_type_ids"], name="type_gather")
    x = b.node("Add", [we, te], name="embed_add")
    q = b.node("MatMul", [x, b.weight("wq", (hidden, hidden))], name="q_proj")
    k = b.node("MatMul", [x, b.weight("wk", (hidden, hidden))], name="k_proj")
    v = b.node("MatMul", [x, b.weight("wv", (hidden, hidden))], name="v_proj")
    kt = b.node("Transpose", [k], name="k_t", perm=[0, 2, 1])
    scores = b.node("MatMul", [q, kt], name="scores")
    maskf = b.node("Cast", ["attention_mask"], name="mask_cast", to=f)
    b.inits.append(numpy_helper.from_array(np.array([1], np.int64), "axis1"))
    masku = b.node("Unsqueeze", [maskf, "axis1"], name="mask_unsqueeze")
    b.inits.append(numpy_helper.from_array(np.array(1.0, np.float32), "one"))
    b.inits.append(numpy_helper.from_array(np.array(-1e4, np.float32), "neg"))
    inv = b.node("Sub", ["one", masku], name="mask_invert")
    bias = b.node("Mul", [inv, "neg"], name="mask_scale")
    att = b.node("Softmax", [b.node("Add", [scores, bias], name="mask_add")], name="softmax", axis=-1)
    ctx = b.node("MatMul", [att, v], name="context")
    out = b.node("MatMul", [ctx, b.weight("wo", (hidden, hidden))], name="out_proj")
    y = b.node("Add", [out, x], name="residual")
    ids = [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "seq"]) for n in ("input_ids", "token_type_ids")]
    mask = helper.make_tensor_value_info("attention_mask", mask_dtype, ["batch", "seq"])
    graph = helper.make_graph(b.nodes, "bert", [ids[0], mask, ids[1]],
                              [helper.make_tensor_value_info(y, f, ["batch", "seq", hidden])], initializer=b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def run_time_reshape_head(channels: int = 8, classes: int = 4, seed: int = 0) -> onnx.ModelProto:
    """x[N,C,H,W] -> Conv -> GlobalAveragePool -> Reshape to [N, C] -> MatMul -> Softmax, with the Reshape
    target computed at run time as Paddle exports it (``Shape -> Cast int32 -> Slice -> Cast int64 ->
    Concat(axis=-1)``): ONNX's inference leaves the MatMul input without a shape and ORT's symbolic one
    gives up (it asserts a Concat axis of 0)."""
    b = _Builder(seed)
    y = b.conv("x", 3, channels, name="conv")
    pooled = b.node("GlobalAveragePool", [y], name="pool")
    shape = b.node("Shape", [pooled], name="shape")
    as32 = b.node("Cast", [shape], name="cast32", to=TensorProto.INT32)
    consts = {"starts": [0], "ends": [1], "axes": [0], "channels": [channels]}
    for key, value in consts.items():
        b.inits.append(numpy_helper.from_array(np.array(value, np.int32 if key != "channels" else np.int64), key))
    batch = b.node("Slice", [as32, "starts", "ends", "axes"], name="slice")
    as64 = b.node("Cast", [batch], name="cast64", to=TensorProto.INT64)
    target = b.node("Concat", [as64, "channels"], name="concat", axis=-1)
    flat = b.node("Reshape", [pooled, target], name="reshape")
    logits = b.node("MatMul", [flat, b.weight("fc.w", (channels, classes))], name="fc")
    out = b.node("Softmax", [logits], name="softmax", axis=-1)
    return make_model(b, ["N", 3, "H", "W"], out, ["N", classes], opset=13)

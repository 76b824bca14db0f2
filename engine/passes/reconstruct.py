"""Data-aware pruning and factorisation: least-squares reconstruction and activation statistics.

After structured pruning, each layer that lost input channels (a *consumer*) is refitted so its
output on calibration data stays as close as possible to the unpruned model's output: with X' the
consumer's input in the pruned model (kept channels, upstream changes included) and Y its output in
the unpruned model, solve ``min ||X' W + b - Y||^2`` (a small ridge term keeps it well posed). This is
the reconstruction step of He et al. 2017 (*Channel Pruning for Accelerating Very Deep Neural
Networks*) and ThiNet. Convs are unfolded into patches (im2col; ``auto_pad`` resolved) for the fit, a
grouped conv group by group, and a ConvTranspose as the stride-1 conv over its zero-upsampled input it
equals. What the fit does not cover (3-D kernels, a ConvTranspose with ``output_shape``, ``auto_pad``
or groups) is pruned without a refit, and the notes say which and why.

``activation_importance`` ranks a group's channels by the energy they carry into the consumers
(E[x_c^2] * ||W[:, c]||^2), and ``input_gram`` gives a layer's input second moments for the
whitened SVD in ``engine.passes.lowrank``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
import onnx
from numpy.lib.stride_tricks import sliding_window_view
from onnx import numpy_helper

from engine.ir.shapes import session_with_outputs
from engine.passes.base import set_initializer
from engine.passes.prune_dims import attr
from engine.passes.prune_groups import Group

__all__ = ["activation_importance", "capture", "input_gram", "reconstruct"]

logger = logging.getLogger(__name__)

_MAX_ROWS = 8192  # rows (positions x samples) kept for one fit
_RIDGE = 1e-4


def capture(model: onnx.ModelProto, tensors: Sequence[str], feeds: Sequence[dict[str, np.ndarray]]) -> dict[str, list[np.ndarray]]:
    """The values of ``tensors`` for each feed (a list per tensor: feeds may differ in size)."""
    session = session_with_outputs(model, tensors)
    runs = [session.run(list(tensors), feed) for feed in feeds]
    return {t: [r[i] for r in runs] for i, t in enumerate(tensors)}


def _node(model: onnx.ModelProto, name: str) -> onnx.NodeProto:
    return next(n for n in model.graph.node if n.name == name)


def _weight(model: onnx.ModelProto, name: str) -> np.ndarray:
    return numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == name))


def _geometry(node: onnx.NodeProto, size: Sequence[int], kernel: Sequence[int]) -> tuple[list[int], list[int], list[int]]:
    """A Conv's pads ([begin..., end...]), strides and dilations, with ``auto_pad`` resolved for input ``size``."""
    nd = len(kernel)
    strides = list(attr(node, "strides", [1] * nd))
    dil = list(attr(node, "dilations", [1] * nd))
    auto = attr(node, "auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else str(auto)
    if auto in ("NOTSET", ""):
        return list(attr(node, "pads", [0] * 2 * nd)), strides, dil
    if auto == "VALID":
        return [0] * 2 * nd, strides, dil
    total = [max(0, (-(-n // s) - 1) * s + (k - 1) * d + 1 - n) for n, s, k, d in zip(size, strides, kernel, dil)]
    small = [t // 2 for t in total]  # SAME_UPPER puts the odd pad at the end, SAME_LOWER at the start
    begin = small if auto == "SAME_UPPER" else [t - h for t, h in zip(total, small)]
    return begin + [t - b for t, b in zip(total, begin)], strides, dil


def _unfold(x: np.ndarray, kernel: Sequence[int], pads: Sequence[int], strides: Sequence[int],
            dil: Sequence[int]) -> np.ndarray:
    """im2col: [positions, C*kh*kw] of a 1-D or 2-D conv's input ``x`` [N, C, ...]."""
    if len(kernel) == 1:
        x, kernel = x[:, :, None, :], (1, kernel[0])
        pads, strides, dil = [0, pads[0], 0, pads[1]], [1, strides[0]], [1, dil[0]]
    x = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    span = [(k - 1) * d + 1 for k, d in zip(kernel, dil)]
    win = sliding_window_view(x, span, axis=(2, 3))[:, :, :: strides[0], :: strides[1], :: dil[0], :: dil[1]]
    n, c, oh, ow, kh, kw = win.shape
    return win.transpose(0, 2, 3, 1, 4, 5).reshape(n * oh * ow, c * kh * kw)


def _patches(x: np.ndarray, node: onnx.NodeProto, kernel: Sequence[int]) -> np.ndarray | None:
    """im2col of a Conv's input: [positions, C*kh*kw], or None for settings it does not cover (3-D kernels)."""
    if len(kernel) not in (1, 2):
        return None
    pads, strides, dil = _geometry(node, x.shape[2:], kernel)
    return _unfold(x, kernel, pads, strides, dil)


def _transposed_patches(x: np.ndarray, node: onnx.NodeProto, kernel: Sequence[int]) -> np.ndarray:
    """A ConvTranspose as the Conv it is: its input with ``stride - 1`` zeros between pixels, padded by
    ``dilation * (k - 1) - pad`` (plus ``output_padding`` at the end), convolved with the flipped and
    transposed kernel at stride 1 (``_as_conv``); im2col of that input."""
    nd = len(kernel)
    strides = list(attr(node, "strides", [1] * nd))
    dil = list(attr(node, "dilations", [1] * nd))
    pads = list(attr(node, "pads", [0] * 2 * nd))
    extra = list(attr(node, "output_padding", [0] * nd))
    up = np.zeros((*x.shape[:2], *[(n - 1) * s + 1 for n, s in zip(x.shape[2:], strides)]), x.dtype)
    up[(slice(None), slice(None), *[slice(None, None, s) for s in strides])] = x
    begin = [d * (k - 1) - p for d, k, p in zip(dil, kernel, pads)]
    end = [d * (k - 1) - p + e for d, k, p, e in zip(dil, kernel, pads[nd:], extra)]
    up = np.pad(up, ((0, 0), (0, 0), *[(max(0, b), max(0, e)) for b, e in zip(begin, end)]))
    crop = tuple(slice(max(0, -b), up.shape[2 + i] - max(0, -e)) for i, (b, e) in enumerate(zip(begin, end)))
    return _unfold(up[(slice(None), slice(None), *crop)], kernel, [0] * 2 * nd, [1] * nd, dil)


def _as_conv(w: np.ndarray) -> np.ndarray:
    """A ConvTranspose weight [in, out, k...] as the Conv weight [out, in, k...] of ``_transposed_patches``
    (and back: the map is its own inverse)."""
    return np.flip(np.swapaxes(w, 0, 1), axis=tuple(range(2, w.ndim)))


def _rows(x: np.ndarray, y: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    if len(x) > _MAX_ROWS:
        pick = np.random.default_rng(seed).choice(len(x), _MAX_ROWS, replace=False)
        x, y = x[pick], y[pick]
    return x.astype(np.float64), y.astype(np.float64)


def _lstsq(x: np.ndarray, y: np.ndarray, prior: np.ndarray, bias: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """W [in, out] and b [out] minimising ||x W + b - y||^2 + lam ||[W; b] - prior||^2.

    The penalty pulls towards the plainly pruned weights ``prior`` (and ``bias``), not towards zero,
    and grows once there are fewer than 4 rows per input: a handful of calibration rows (a squeeze-excite
    layer after global pooling sees one per sample) then leaves the layer nearly as it was.
    """
    if bias is not None:
        x = np.hstack([x, np.ones((len(x), 1))])
        prior = np.vstack([prior, bias[None, :]])
    gram = x.T @ x / len(x)
    lam = max(float(np.mean(np.diag(gram))), 1e-12) * (_RIDGE + max(0.0, x.shape[1] / len(x) - 0.25))
    w = np.linalg.solve(gram + lam * np.eye(len(gram)), x.T @ y / len(x) + lam * prior)
    return (w[:-1], w[-1]) if bias is not None else (w, np.zeros(y.shape[1]))


def _stack(pairs: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    return _rows(np.concatenate([x for x, _ in pairs]), np.concatenate([y for _, y in pairs]))


def _conv_fit(pruned: onnx.ModelProto, node: onnx.NodeProto, w: np.ndarray, bias: np.ndarray | None,
              xs: list[np.ndarray], ys: list[np.ndarray]) -> None:
    """Refit a Conv (grouped too: each group's outputs from that group's inputs) on im2col patches."""
    groups = int(attr(node, "group", 1))
    per_in, per_out = w.shape[1], w.shape[0] // groups
    fitted_w, fitted_b = np.empty_like(w), None if bias is None else np.empty_like(bias)
    for g in range(groups):
        inputs, outputs = slice(g * per_in, (g + 1) * per_in), slice(g * per_out, (g + 1) * per_out)
        x, y = _stack([(_patches(a[:, inputs], node, w.shape[2:]),
                        np.moveaxis(b[:, outputs], 1, -1).reshape(-1, per_out)) for a, b in zip(xs, ys)])
        fw, fb = _lstsq(x, y, w[outputs].reshape(per_out, -1).T, None if bias is None else bias[outputs].reshape(-1))
        fitted_w[outputs] = fw.T.reshape(w[outputs].shape)
        if fitted_b is not None:
            fitted_b[outputs] = fb
    set_initializer(pruned.graph, node.input[1], fitted_w.astype(w.dtype))
    if bias is not None:
        set_initializer(pruned.graph, node.input[2], fitted_b.astype(bias.dtype))


def _fit(pruned: onnx.ModelProto, layer: str, xs: list[np.ndarray], ys: list[np.ndarray]) -> str | None:
    """Refit ``layer`` of ``pruned`` in place from per-feed inputs ``xs`` and targets ``ys``; returns
    why not when the least-squares fit does not cover it (None: refitted)."""
    node = _node(pruned, layer)
    op = node.op_type
    w = _weight(pruned, node.input[1])
    has_bias = len(node.input) > 2 and bool(node.input[2])
    bias = _weight(pruned, node.input[2]) if has_bias else None
    if op in ("Conv", "ConvTranspose") and w.ndim not in (3, 4):
        return f"a {w.ndim - 2}-D {op} (the unfold covers 1-D and 2-D kernels)"
    if op == "Conv":
        _conv_fit(pruned, node, w, bias, xs, ys)
    elif op == "ConvTranspose":
        if int(attr(node, "group", 1)) != 1 or attr(node, "output_shape", None) is not None:
            return "a grouped ConvTranspose or one with output_shape"
        if attr(node, "auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
            return "a ConvTranspose with auto_pad"
        x, y = _stack([(_transposed_patches(a, node, w.shape[2:]), np.moveaxis(b, 1, -1).reshape(-1, b.shape[1]))
                       for a, b in zip(xs, ys)])
        conv = _as_conv(w)
        fw, fb = _lstsq(x, y, conv.reshape(conv.shape[0], -1).T, bias.reshape(-1) if has_bias else None)
        set_initializer(pruned.graph, node.input[1], _as_conv(fw.T.reshape(conv.shape)).astype(w.dtype))
        if has_bias:
            set_initializer(pruned.graph, node.input[2], fb.astype(bias.dtype))
    elif op == "Gemm":
        trans_b, alpha, beta = int(attr(node, "transB", 0)), float(attr(node, "alpha", 1.0)), float(attr(node, "beta", 1.0))
        per_channel = bias is not None and bias.size == ys[0].shape[1] and bias.size > 1
        shift = beta * bias if bias is not None and not per_channel else 0.0
        x, y = _stack([(a.reshape(len(a), -1), b - shift) for a, b in zip(xs, ys)])
        prior = (w.T if trans_b else w) * alpha
        fw, fb = _lstsq(x, y, prior, bias.reshape(-1) * beta if per_channel else None)
        set_initializer(pruned.graph, node.input[1], ((fw.T if trans_b else fw) / alpha).astype(w.dtype))
        if per_channel:
            set_initializer(pruned.graph, node.input[2], (fb / beta).reshape(bias.shape).astype(bias.dtype))
    elif op == "MatMul" and w.ndim == 2:
        x, y = _stack([(a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])) for a, b in zip(xs, ys)])
        fw, _ = _lstsq(x, y, w, None)
        set_initializer(pruned.graph, node.input[1], fw.astype(w.dtype))
    else:
        return f"a {op} with a {w.ndim}-D weight" if op == "MatMul" else f"a {op}"
    return None


def reconstruct(
    original: onnx.ModelProto,
    pruned: onnx.ModelProto,
    layers: Sequence[str],
    calibration: Sequence[dict[str, np.ndarray]],
    kept: Mapping[str, np.ndarray] | None = None,
) -> list[str]:
    """Refit ``layers`` (consumers of pruned channels) of ``pruned`` in place, in graph order.

    ``kept`` gives, for layers that also lost output channels, which of the unpruned ones remain.
    """
    kept = kept or {}
    order = {n.name: i for i, n in enumerate(pruned.graph.node)}
    layers = sorted(layers, key=lambda n: order[n])
    done, skipped = [], []
    for i in range(len(layers)):  # one at a time: each fit sees the layers before it already refitted
        chunk = layers[i : i + 1]
        nodes = [_node(pruned, n) for n in chunk]
        outs = capture(original, [n.output[0] for n in nodes], calibration)
        ins = capture(pruned, [n.input[0] for n in nodes], calibration)
        for layer, node in zip(chunk, nodes):
            y = outs[node.output[0]]
            axis = -1 if node.op_type == "MatMul" else 1
            target = [np.take(v, kept[layer], axis=axis) for v in y] if layer in kept else y
            why = _fit(pruned, layer, ins[node.input[0]], target)
            if why is None:
                done.append(layer)
            else:
                skipped.append(f"{layer} ({why}: pruned without a refit)")
    notes = [f"reconstruction refitted {len(done)} layer(s) on {len(calibration)} calibration sample(s)"]
    if skipped:
        notes.append(f"reconstruction skipped {'; '.join(skipped)}")
        logger.warning("reconstruction skipped %s", "; ".join(skipped))
    return notes


def activation_importance(model: onnx.ModelProto, group: Group, calibration: Sequence[dict[str, np.ndarray]]) -> np.ndarray:
    """Per group channel: the energy its inputs carry into the group's consumers, E[x^2] * ||W col||^2."""
    total = np.zeros(group.channels)
    consumers = [_node(model, c) for c in group.consumers]
    values = capture(model, [n.input[0] for n in consumers], calibration) if consumers else {}
    for node in consumers:
        x = values[node.input[0]]
        dim = group.dims[node.input[0]]
        w = _weight(model, node.input[1])
        if node.op_type == "Conv":
            groups = int(attr(node, "group", 1))  # input channel g * Ig + k meets weight column k of group g's rows
            per = (w**2).sum(axis=tuple(range(2, w.ndim))).reshape(groups, w.shape[0] // groups, w.shape[1])
            col = per.sum(1).reshape(-1)
        elif node.op_type == "Gemm" and int(attr(node, "transB", 0)):
            col = (w**2).sum(0)
        else:
            col = (w**2).sum(1)
        energy = np.mean([np.mean(np.moveaxis(v, dim.axis, 0).reshape(v.shape[dim.axis], -1).astype(np.float64) ** 2, axis=1) for v in x], axis=0)
        score = energy * col
        total += np.array([score[r].sum() for r in dim.rows]) / max(float(score.mean()), 1e-12)
    if not consumers:
        return group.scores(model)
    return total


def input_gram(model: onnx.ModelProto, layer: str, calibration: Sequence[dict[str, np.ndarray]]) -> np.ndarray:
    """E[x x^T] of ``layer``'s input rows (patches for a Conv), as the low-rank pass's W is [out, in]."""
    node = _node(model, layer)
    slot = 0 if node.op_type != "MatMul" or node.input[1] in {t.name for t in model.graph.initializer} else 1
    rows = []
    for x in capture(model, [node.input[slot]], calibration)[node.input[slot]]:
        if node.op_type == "Conv":
            x = _patches(x, node, _weight(model, node.input[1]).shape[2:])
            if x is None:
                raise ValueError(f"{layer}: conv settings not covered by the unfold")
        elif slot == 1:  # left weight: the input's columns are the rows
            x = np.swapaxes(x, -1, -2)
        rows.append(x.reshape(-1, x.shape[-1]))
    x, _ = _stack([(r, r[:, :1]) for r in rows])
    return x.T @ x / len(x)

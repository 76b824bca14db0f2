"""Low-rank factorisation: a layer's weight replaced by a truncated SVD, as two cheaper layers.

Every supported layer computes ``y = W x`` with ``W`` of shape [out, in] (per row, token or pixel):
Gemm (transA=0), MatMul with a 2-D constant on either side, and Conv with group=1 (W reshaped to
[Cout, Cin*kh*kw]). With ``W ~= B @ A`` (``A`` [k, in], ``B`` [out, k]; each side takes sqrt of the
singular values) the layer becomes:

- Gemm: ``MatMul(x, A^T)`` then ``Gemm(h, B, C, transB=1, beta)`` (alpha folded into B);
- MatMul: ``MatMul(x, A^T)`` then ``MatMul(h, B^T)`` (or ``A @ x`` then ``B @ h`` for a left weight);
- Conv: a k-channel Conv with the original kernel, strides and pads, then a 1x1 Conv carrying the bias.

The second node keeps the layer's name (so plans, profiles and precision still find it); the first
is named ``lowrank_names(layer)[0]``. The pair costs ``k*(out+in)`` params (and MACs per position)
against ``out*in``: ranks at or above ``break_even_rank`` are refused with a SettingsError.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from engine.errors import SettingsError
from engine.passes.base import (
    PassResult,
    clone,
    initializers,
    refresh_shapes,
    set_initializer,
)
from engine.passes.reconstruct import input_gram

__all__ = ["LowRankPass", "break_even_rank", "energy_curve", "lowrank_names", "lowrank_problem"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Factorable:
    kind: str  # "gemm", "matmul_right", "matmul_left", "conv"
    matrix: np.ndarray  # W as [out, in]
    weight_shape: tuple[int, ...]


def lowrank_names(layer: str) -> tuple[str, str]:
    """Names of the (first, second) nodes that replace ``layer``; the second keeps the layer's name."""
    return f"{layer}_lowrank", layer


def _attr(node: onnx.NodeProto, name: str, default: Any) -> Any:
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _factorable(node: onnx.NodeProto, inits: Mapping[str, onnx.TensorProto]) -> _Factorable:
    """W as [out, in] for ``node``; SettingsError with the reason when it cannot be factored."""
    def weight(i: int) -> np.ndarray | None:
        return numpy_helper.to_array(inits[node.input[i]]) if len(node.input) > i and node.input[i] in inits else None

    if node.op_type == "Gemm":
        w = weight(1)
        if w is None or _attr(node, "transA", 0):
            raise SettingsError("Gemm needs a constant B and transA=0")
        m = (w if _attr(node, "transB", 0) else w.T) * float(_attr(node, "alpha", 1.0))
        return _Factorable("gemm", m, tuple(w.shape))
    if node.op_type == "MatMul":
        right, left = weight(1), weight(0)
        if right is not None and right.ndim == 2:
            return _Factorable("matmul_right", right.T, tuple(right.shape))
        if left is not None and left.ndim == 2:
            return _Factorable("matmul_left", left, tuple(left.shape))
        raise SettingsError("MatMul needs a 2-D constant operand")
    if node.op_type == "Conv":
        w = weight(1)
        if w is None:
            raise SettingsError("Conv needs a constant weight")
        if _attr(node, "group", 1) != 1:
            raise SettingsError("grouped/depthwise Conv cannot be factored")
        return _Factorable("conv", w.reshape(w.shape[0], -1), tuple(w.shape))
    raise SettingsError(f"{node.op_type} cannot be factored (Gemm, MatMul and Conv can)")


def _proto_node(graph: Any, layer: str) -> tuple[onnx.NodeProto, dict[str, onnx.TensorProto]]:
    for n in graph.model.graph.node:
        if n.name == layer:
            return n, initializers(graph.model.graph)
    raise SettingsError(f"{graph.label}: no node named {layer!r}")


def _whitener(gram: np.ndarray) -> np.ndarray:
    """S with S S^T = gram (+ a little on the diagonal so it is invertible)."""
    gram = gram + 1e-6 * max(float(np.mean(np.diag(gram))), 1e-12) * np.eye(len(gram))
    return np.linalg.cholesky(gram)


def energy_curve(graph: Any, layer: str, gram: np.ndarray | None = None) -> np.ndarray:
    """Fraction of the weight's energy kept at rank 1, 2, ...: cumsum(s^2) / sum(s^2) (for the rank slider).

    With ``gram`` (E[x x^T] of the layer's input, ``engine.passes.reconstruct.input_gram``) it is the
    energy of the layer's *output* on that data: the singular values of W S, S S^T = gram.
    """
    node, inits = _proto_node(graph, layer)
    matrix = _factorable(node, inits).matrix.astype(np.float64)
    s = np.linalg.svd(matrix @ _whitener(gram) if gram is not None else matrix, compute_uv=False)
    energy = np.cumsum(s**2)
    return energy / energy[-1] if energy[-1] > 0 else np.ones_like(energy)


def _break_even(matrix: np.ndarray) -> int:
    out, inp = matrix.shape
    return math.ceil(out * inp / (out + inp))


def break_even_rank(graph: Any, layer: str) -> int:
    """Smallest rank at which the pair is no cheaper (MACs and params) than the layer itself."""
    node, inits = _proto_node(graph, layer)
    return _break_even(_factorable(node, inits).matrix)


def lowrank_problem(graph: Any, layer: str, rank: int) -> str | None:
    """Why ``layer`` cannot take ``rank`` (None when it can)."""
    try:
        node, inits = _proto_node(graph, layer)
        f = _factorable(node, inits)
    except SettingsError as exc:
        return str(exc)
    limit = _break_even(f.matrix)
    if rank >= limit:
        return f"rank must be below the break-even rank {limit} (at or above it the pair is no cheaper)"
    return None


class LowRankPass:
    """Factor the given layers at the given ranks; ``check_break_even=False`` allows any rank (tests).

    With ``calibration`` the SVD is whitened by each layer's input second moments (as in SVD-LLM /
    ASVD): it keeps the directions the data uses, minimising the output error E||(W - BA) x||^2
    instead of the weight error ||W - BA||.
    """

    def __init__(self, ranks: Mapping[str, int], check_break_even: bool = True,
                 calibration: Sequence[dict[str, np.ndarray]] | None = None) -> None:
        self.ranks = dict(ranks)
        self.check_break_even = check_break_even
        self.calibration = list(calibration or [])

    def __call__(self, model: onnx.ModelProto) -> PassResult:
        if not self.ranks:
            return PassResult(model, False)
        source, model = model, clone(model)
        graph = model.graph
        inits = initializers(graph)
        found = {n.name for n in graph.node}
        missing = sorted(set(self.ranks) - found)
        if missing:
            raise SettingsError(f"low-rank: no node named {missing[0]!r}")
        new_nodes: list[onnx.NodeProto] = []
        notes: list[str] = []
        for node in graph.node:
            rank = self.ranks.get(node.name)
            if rank is None:
                new_nodes.append(node)
                continue
            try:
                f = _factorable(node, inits)
            except SettingsError as exc:
                raise SettingsError(f"layer {node.name!r}: {exc}") from None
            limit = _break_even(f.matrix)
            if rank < 1 or rank > min(f.matrix.shape) or (self.check_break_even and rank >= limit):
                raise SettingsError(
                    f"layer {node.name!r}: rank {rank} refused; it must be below the break-even rank {limit} "
                    f"(weight {f.matrix.shape[0]}x{f.matrix.shape[1]})"
                )
            gram = input_gram(source, node.name, self.calibration) if self.calibration else None
            first, second = _factor(node, f, rank, graph, gram)
            new_nodes += [first, second]
            if gram is None:
                notes.append(f"{node.name}: rank {rank} keeps {_energy_of(f.matrix, rank):.1%} of the weight energy")
            else:
                kept = _energy_of(f.matrix.astype(np.float64) @ _whitener(gram), rank)
                notes.append(f"{node.name}: rank {rank} keeps {kept:.1%} of the output energy on calibration data (whitened SVD)")
        del graph.node[:]
        graph.node.extend(new_nodes)
        _drop_unused_initializers(graph)
        return PassResult(refresh_shapes(model), True, notes)


def _energy_of(matrix: np.ndarray, rank: int) -> float:
    """Energy fraction kept at ``rank``."""
    s = np.linalg.svd(matrix.astype(np.float64), compute_uv=False)
    total = float(np.sum(s**2))
    return float(np.sum(s[:rank] ** 2)) / total if total > 0 else 1.0


def _factor(node: onnx.NodeProto, f: _Factorable, rank: int, graph: onnx.GraphProto,
            gram: np.ndarray | None = None) -> tuple[onnx.NodeProto, onnx.NodeProto]:
    matrix = f.matrix.astype(np.float64)
    white = _whitener(gram) if gram is not None else None
    u, s, vt = np.linalg.svd(matrix @ white if white is not None else matrix, full_matrices=False)
    root = np.sqrt(s[:rank])
    a = root[:, None] * vt[:rank]
    if white is not None:  # W S ~= U S_k V^T  =>  W ~= (U sqrt S_k) (sqrt S_k V^T S^-1)
        a = np.linalg.solve(white.T, a.T).T
    a = a.astype(np.float32)  # [k, in]
    b = (u[:, :rank] * root[None, :]).astype(np.float32)  # [out, k]
    first_name, second_name = lowrank_names(node.name)
    a_name, b_name, mid = f"{node.name}.lowrank_a", f"{node.name}.lowrank_b", f"{first_name}_out"
    x, y = node.input[0] if f.kind != "matmul_left" else node.input[1], node.output[0]
    if f.kind == "gemm":
        set_initializer(graph, a_name, a.T)
        set_initializer(graph, b_name, b)
        first = helper.make_node("MatMul", [x, a_name], [mid], name=first_name)
        rest = list(node.input[2:3])
        second = helper.make_node(
            "Gemm", [mid, b_name, *rest], [y], name=second_name, transB=1, beta=float(_attr(node, "beta", 1.0))
        )
    elif f.kind == "matmul_right":
        set_initializer(graph, a_name, a.T)
        set_initializer(graph, b_name, b.T)
        first = helper.make_node("MatMul", [x, a_name], [mid], name=first_name)
        second = helper.make_node("MatMul", [mid, b_name], [y], name=second_name)
    elif f.kind == "matmul_left":
        set_initializer(graph, a_name, a)
        set_initializer(graph, b_name, b)
        first = helper.make_node("MatMul", [a_name, x], [mid], name=first_name)
        second = helper.make_node("MatMul", [b_name, mid], [y], name=second_name)
    else:  # conv
        spatial = f.weight_shape[2:]
        set_initializer(graph, a_name, a.reshape((rank, *f.weight_shape[1:])))
        set_initializer(graph, b_name, b.reshape((f.weight_shape[0], rank, *([1] * len(spatial)))))
        first = helper.make_node("Conv", [x, a_name], [mid], name=first_name)
        first.attribute.extend(a for a in node.attribute if a.name != "group")
        second = helper.make_node("Conv", [mid, b_name, *node.input[2:3]], [y], name=second_name,
                                  kernel_shape=[1] * len(spatial))
    return first, second


def _drop_unused_initializers(graph: onnx.GraphProto) -> None:
    """Remove initializers no node reads any more (and their graph-input entries in old IR models)."""
    used = {t for n in graph.node for t in n.input} | {o.name for o in graph.output}
    dropped = {t.name for t in graph.initializer if t.name not in used}
    if dropped:
        keep = [t for t in graph.initializer if t.name not in dropped]
        del graph.initializer[:]
        graph.initializer.extend(keep)
        inputs = [i for i in graph.input if i.name not in dropped]
        del graph.input[:]
        graph.input.extend(inputs)

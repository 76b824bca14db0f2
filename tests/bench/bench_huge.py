"""Benchmark: int8 of huge graphs (issue 17): a 20,000-node chain and a 5,000-node transformer-like graph.

Run: ``python tests/bench/bench_huge.py [--chain 20000] [--blocks 228] [--ort-calibrator 2000]``.
Times every step of ``PrecisionPass`` int8 (prepare, LayerLab's activation pass for the ranges, ORT's
QDQ quantizer on them) plus an fp16 pass and session creation of the results, with the calibration
progress printed as it goes. ``--ort-calibrator N`` also times ORT's own calibrator (the graph
augmentation that made int8 hang) on an N-node chain, for comparison. Exit status 1 when int8 of the
chain takes 60 s or more.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from engine.passes.calibration import ranges_job
from engine.passes.fp16 import fp16_layers
from engine.passes.precision import _static_int8, prepare, random_calibration
from engine.progress import run

__all__ = ["chain", "main", "transformer_like"]

logger = logging.getLogger(__name__)

TARGET_S = 60.0
DIM = 16


def _model(nodes: list[onnx.NodeProto], inits: list[onnx.TensorProto], x_shape: list[int], out: str) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "huge", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                              [helper.make_tensor_value_info(out, TensorProto.FLOAT, x_shape)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def chain(n: int, seed: int = 0) -> onnx.ModelProto:
    """x[1,16] -> (MatMul 16x16 -> Relu) repeated: ``n`` nodes in one chain."""
    rng = np.random.default_rng(seed)
    nodes, inits, x = [], [], "x"
    for i in range(n):
        if i % 2 == 0:
            w = f"w{i}"
            inits.append(numpy_helper.from_array((rng.standard_normal((DIM, DIM)) / 4).astype(np.float32), w))
            nodes.append(helper.make_node("MatMul", [x, w], [f"t{i}"], name=f"mm{i}"))
        else:
            nodes.append(helper.make_node("Relu", [x], [f"t{i}"], name=f"relu{i}"))
        x = f"t{i}"
    return _model(nodes, inits, [1, DIM], x)


def transformer_like(blocks: int, tokens: int = 8, dim: int = 32, seed: int = 0) -> onnx.ModelProto:
    """``blocks`` pre-norm blocks (q/k/v MatMul+Add, scores, Softmax, context, projection, MLP, residuals):
    22 nodes a block (228 blocks: 5,016 nodes)."""
    rng = np.random.default_rng(seed)
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []

    def w(name: str, shape: tuple[int, ...]) -> str:
        inits.append(numpy_helper.from_array((rng.standard_normal(shape) / np.sqrt(shape[0])).astype(np.float32), name))
        return name

    def node(op: str, inputs: list[str], name: str, **attrs: object) -> str:
        nodes.append(helper.make_node(op, inputs, [name + "_out"], name=name, **attrs))
        return name + "_out"

    def linear(x: str, m: int, n: int, name: str) -> str:
        return node("Add", [node("MatMul", [x, w(name + ".w", (m, n))], name), w(name + ".b", (n,))], name + "_bias")

    x = "x"
    for b in range(blocks):
        p = f"b{b}."
        h = node("LayerNormalization", [x, w(p + "g", (dim,)), w(p + "beta", (dim,))], p + "ln1", axis=-1)
        q, k, v = (linear(h, dim, dim, p + s) for s in ("q", "k", "v"))
        scores = node("MatMul", [q, node("Transpose", [k], p + "kt", perm=[0, 2, 1])], p + "scores")
        probs = node("Softmax", [node("Mul", [scores, w(p + "scale", (1,))], p + "scale")], p + "softmax", axis=-1)
        x = node("Add", [x, linear(node("MatMul", [probs, v], p + "context"), dim, dim, p + "proj")], p + "res1")
        h = node("LayerNormalization", [x, w(p + "g2", (dim,)), w(p + "beta2", (dim,))], p + "ln2", axis=-1)
        h = node("Relu", [linear(h, dim, 2 * dim, p + "up")], p + "relu")
        x = node("Add", [x, linear(h, 2 * dim, dim, p + "down")], p + "res2")
    return _model(nodes, inits, [1, tokens, dim], x)


def _timed(label: str, func, times: dict[str, float]):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    value = func()
    times[label] = time.perf_counter() - start
    print(f"  {label}: {times[label]:.2f} s", flush=True)
    return value


def _progress(p) -> None:  # type: ignore[no-untyped-def]
    if p.done == p.total or p.done % max(p.total // 4, 1) == 0:
        print(f"    [{p.done}/{p.total}] {p.message}", flush=True)


def bench(name: str, model: onnx.ModelProto, samples: int) -> dict[str, float]:
    """Every step of int8 and fp16 on ``model``; seconds by step."""
    import onnxruntime as ort

    print(f"{name}: {len(model.graph.node)} nodes", flush=True)
    times: dict[str, float] = {}
    prepared = _timed("prepare (opset, shape inference)", lambda: prepare(model), times)
    calib = random_calibration(prepared, samples)
    inferred = _timed("shape inference for calibration", lambda: onnx.shape_inference.infer_shapes(prepared), times)
    ranges = _timed("calibration (activation pass, minmax)",
                    lambda: run(ranges_job(inferred, calib, ("minmax",)), _progress), times)
    quantized = _timed("ORT QDQ quantizer on the ranges", lambda: _static_int8(prepared, None, calib, ranges.pick()), times)
    times["int8 total"] = sum(times[k] for k in list(times))
    print(f"  int8 total: {times['int8 total']:.2f} s", flush=True)
    layers = {n.name for n in model.graph.node if n.op_type in ("MatMul", "Gemm", "Conv")}
    half = _timed("fp16 pass (every layer)", lambda: fp16_layers(prepared, layers), times)
    for label, m in (("session int8", quantized), ("session fp16", half)):
        _timed(label, lambda m=m: ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]), times)
    return times


def ort_calibrator(n: int, samples: int) -> float:
    """Seconds ORT's MinMax calibrator takes to augment and run an ``n``-node chain."""
    from onnxruntime.quantization.calibrate import create_calibrator

    model = prepare(chain(n))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.onnx"
        onnx.save(model, path)
        start = time.perf_counter()
        create_calibrator(path, None, augmented_model_path=str(Path(tmp) / "aug.onnx"))
        return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chain", type=int, default=20000)
    parser.add_argument("--blocks", type=int, default=228)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--ort-calibrator", type=int, default=0, help="also time ORT's calibrator on a chain this long")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    chain_times = bench("chain", chain(args.chain), args.samples)
    bench("transformer-like", transformer_like(args.blocks), args.samples)
    if args.ort_calibrator:
        seconds = ort_calibrator(args.ort_calibrator, args.samples)
        print(f"ORT calibrator graph augmentation, {args.ort_calibrator}-node chain: {seconds:.2f} s")
    ok = chain_times["int8 total"] < TARGET_S
    print(f"chain int8 {chain_times['int8 total']:.1f} s: {'goal met' if ok else 'goal MISSED'} (< {TARGET_S:.0f} s)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

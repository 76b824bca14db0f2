"""Benchmark: symmetric vs asymmetric int8 activations on ONNX Runtime's CPU kernels, side by side.

Run: ``python tests/bench/bench_symmetric.py MODEL [--eval E] [--input/--dim ...] [--repeats N]``.
The model's weighted layers (Conv, MatMul, Gemm) are quantized by ORT's ``quantize_static`` (QDQ,
int8 per-channel weights, calibrated on the evaluator's calibration inputs) four ways:

- ``u8-asym``: uint8 activations, asymmetric (LayerLab's int8 routine, the U8S8 fast path);
- ``u8-sym``: uint8 activations, symmetric (``ActivationSymmetric``: zero point 128);
- ``s8-sym``: int8 activations, symmetric (zero point 0: S8S8);
- ``s8-asym``: int8 activations, asymmetric.

Each is scored by the evaluator and all of them and fp32 are timed in one interleaved run
(``engine.measure.interleave``), so the ratios compare. Prints one row per variant: median and
p10-p90 ms, speed vs fp32 and vs u8-asym, metric, and the count of QLinear/integer kernels ORT's
optimized graph runs (``DequantizeLinear`` left around an fp32 kernel means no int8 kernel).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import onnx  # noqa: E402

from engine.cli.common import add_model_arguments, evaluator_path, load_graph, resolve_model  # noqa: E402
from engine.evaluate.calibration import calibration_for  # noqa: E402
from engine.evaluate.evaluator import ensure_reference, evaluate, load_evaluator  # noqa: E402
from engine.measure.interleave import interleaved_latency  # noqa: E402
from engine.measure.variants import random_feeds  # noqa: E402
from engine.passes.base import clone  # noqa: E402
from engine.passes.precision import prepare  # noqa: E402
from engine.progress import run  # noqa: E402

__all__ = ["VARIANTS", "main", "quantize"]

logger = logging.getLogger(__name__)

#: name -> (activations signed, symmetric)
VARIANTS = {"u8-asym": (False, False), "u8-sym": (False, True), "s8-sym": (True, True), "s8-asym": (True, False)}


def quantize(model: onnx.ModelProto, samples: list[dict], signed: bool, symmetric: bool) -> onnx.ModelProto:
    """The weighted layers in QDQ int8 (per-channel int8 weights) with these activations."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(samples)

        def get_next(self) -> dict | None:
            return next(self._it, None)

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.onnx", Path(tmp) / "out.onnx"
        onnx.save(prepare(clone(model)), src)
        quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QInt8 if signed else QuantType.QUInt8, weight_type=QuantType.QInt8,
                        op_types_to_quantize=["Conv", "MatMul", "Gemm"],
                        extra_options={"ActivationSymmetric": symmetric})
        return onnx.load(str(dst))


def _int8_kernels(model: onnx.ModelProto) -> tuple[int, int]:
    """(integer kernels, fp32 Conv/MatMul/Gemm kernels) in ORT's optimized graph of ``model``."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        options = ort.SessionOptions()
        options.optimized_model_filepath = str(Path(tmp) / "opt.onnx")
        options.log_severity_level = 3
        ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        nodes = onnx.load(options.optimized_model_filepath).graph.node
    integer = sum(1 for n in nodes if n.op_type.startswith("QLinear") or n.op_type.endswith("Integer")
                  or n.op_type in ("MatMulIntegerToFloat", "DynamicQuantizeMatMul"))
    floating = sum(1 for n in nodes if n.op_type in ("Conv", "FusedConv", "MatMul", "Gemm", "FusedMatMul", "FusedGemm"))
    return integer, floating


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_arguments(parser)
    parser.add_argument("--eval", help="evaluator .py or .npz (default: the example's)")
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    evaluator = load_evaluator(evaluator_path(args))
    path, defaults = resolve_model(args.model)
    graph = load_graph(args, path, defaults, evaluator=evaluator)
    samples = calibration_for(graph, evaluator).samples
    models = {"fp32": graph.model} | {name: quantize(graph.model, samples, *how) for name, how in VARIANTS.items()}
    ensure_reference(evaluator, graph.model)
    metrics = {name: evaluate(m, evaluator, threads=args.threads).metric for name, m in models.items()}
    stats = run(interleaved_latency(models, random_feeds(graph), args.threads, args.repeats))
    print(f"{path.name}: {args.repeats} interleaved runs per row, {args.threads} threads, metric {evaluator.metric_name}")
    print(f"{'':<8} {'median ms':>10} {'p10-p90':>15} {'vs fp32':>8} {'vs u8-asym':>10} {'metric':>8} {'int8/fp32 kernels':>18}")
    for name, m in models.items():
        s = stats[name]
        kernels = "%d / %d" % _int8_kernels(m)
        print(f"{name:<8} {s.median:>10.3f} {f'{s.p10:.3f}-{s.p90:.3f}':>15} {stats['fp32'].median / s.median:>7.2f}x "
              f"{stats['u8-asym'].median / s.median:>9.2f}x {metrics[name]:>8.4f} {kernels:>18}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

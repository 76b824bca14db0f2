"""``layerlab evaluate``: the model's metric on an evaluator, optionally after applying a plan.

A fidelity evaluator (an ``.npz`` without labels) scores a model against a reference's outputs. The
reference is the fp32 model: the model given, or ``--reference``. A model that was already converted
(int8 Q/DQ or integer ops, fp16: what ``tune -o``, ``apply`` and Export write) is no reference for
itself, its fidelity to its own outputs being 1 by definition, so it needs ``--reference ORIGINAL``.
"""

from __future__ import annotations

import argparse
import json
import logging

from engine.cli.common import add_model_arguments, evaluator_path, load_graph, resolve_model

__all__ = ["add_parser", "run"]

logger = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="score a model with an evaluator (.py or .npz)")
    add_model_arguments(p)
    p.add_argument("--eval", metavar="E", help="evaluator .py or .npz (default: the example's)")
    p.add_argument("--plan", metavar="P", help="apply this plan first (int8 calibrates on the evaluator)")
    p.add_argument("--reference", metavar="R", help="fidelity evaluators: the fp32 model whose outputs are the "
                   "reference (default: MODEL itself, which must then be unconverted fp32)")
    p.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads (0: its default)")
    p.add_argument("--json", action="store_true", help='print {"metric", "n"} as JSON')
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from engine.evaluate.evaluator import ensure_reference, evaluate_job, load_evaluator
    from engine.progress import run as run_job
    from engine.progress import stderr_progress

    path, _ = resolve_model(args.model)
    evaluator = load_evaluator(evaluator_path(args))
    # Not the example's profiling shape: evaluation samples may differ from it. The model itself
    # keeps its dynamic dims, so samples of every shape still run.
    graph = load_graph(args, path, {}, evaluator=evaluator, strict=False)
    ensure_reference(evaluator, _reference(args, graph, evaluator), threads=args.threads)
    model = graph.model
    notes: list[str] = []
    if args.plan:
        model, notes = _apply_plan(graph, args.plan, evaluator)
    result = run_job(evaluate_job(model, evaluator, threads=args.threads), stderr_progress("evaluate"))
    if args.json:
        out = {"metric": result.metric, "n": result.n, "metric_name": evaluator.metric_name}
        out.update(result.details)
        print(json.dumps(out))
        return 0
    for note in notes:
        print(f"note: {note}")
    extra = "".join(f", {k} {v:.4g}" for k, v in result.details.items())
    print(f"{evaluator.metric_name}: {result.metric:.4f} on {result.n} samples{extra}")
    return 0


#: Ops only a converted model has: int8 (QDQ, integer kernels) or ORT's quantized contrib ops.
_CONVERTED_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "MatMulInteger",
                            "ConvInteger", "QLinearConv", "QLinearMatMul", "DynamicQuantizeMatMul", "MatMulIntegerToFloat"})


def _reference(args: argparse.Namespace, graph, evaluator):  # type: ignore[no-untyped-def]
    """The model whose outputs a fidelity evaluator compares with: ``--reference``, else the model itself
    when it is fp32 (SettingsError for a converted one: its fidelity to itself would read 1)."""
    from engine.errors import SettingsError
    from engine.ir.graph import load_model

    if args.reference:
        if not evaluator.needs_reference:
            raise SettingsError(f"{evaluator.label}: has labels, so --reference is not used; drop it")
        ref_path, _ = resolve_model(args.reference)
        return load_model(ref_path).model
    if evaluator.needs_reference and _converted(graph.model):
        raise SettingsError(f"{graph.label}: is a converted (int8/fp16) model and {evaluator.label} has no labels: its "
                            "fidelity to its own outputs is 1 by definition; give the fp32 original with --reference "
                            "ORIGINAL.onnx (or evaluate the original with --plan)")
    return graph.model


def _converted(model) -> bool:  # type: ignore[no-untyped-def]
    import onnx

    if any(n.op_type in _CONVERTED_OPS for n in model.graph.node):
        return True
    half = onnx.TensorProto.FLOAT16
    return any(t.data_type == half for t in model.graph.initializer) or any(
        n.op_type == "Cast" and any(a.name == "to" and a.i == half for a in n.attribute) for n in model.graph.node)


def _apply_plan(graph, plan_path: str, evaluator):  # type: ignore[no-untyped-def]
    from engine.errors import LayerLabError
    from engine.model.plan import Plan

    from engine.evaluate.calibration import build_variant, calibration_for
    from engine.passes.manager import check_plan

    plan = Plan.load(plan_path)
    problems = check_plan(plan, graph)
    if problems:
        raise LayerLabError(f"{plan_path}: {problems[0]}" + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
    result = build_variant(graph, plan, calibration_for(graph, evaluator))
    return result.model, list(result.notes)

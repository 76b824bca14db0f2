"""``layerlab apply``: build the variant model a plan describes and print what it changed."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from engine.cli.common import (
    add_model_arguments,
    format_count,
    load_graph,
    resolve_model,
)

__all__ = ["add_parser", "load_calibration", "run"]

logger = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("apply", help="apply a plan (precision, pruning, rank per layer) and write the variant model")
    add_model_arguments(p)
    p.add_argument("plan", help="plan JSON (see README: Plans)")
    p.add_argument("-o", "--output", required=True, help="where to write the variant ONNX model")
    p.add_argument("--calib", metavar="NPZ", help="calibration samples for int8: .npz with input:<name> arrays (first axis = samples)")
    p.add_argument("--eval", metavar="E", help="calibrate int8 as tune and Measure do: this evaluator's calibration() "
                   "or the samples it splits off from scoring (default: the example's; else random, with a warning)")
    p.set_defaults(func=run)


def load_calibration(path: str | Path, input_names: list[str]) -> list[dict]:
    """Samples from an .npz holding ``input:<name>`` arrays whose first axis is the sample axis."""
    import zipfile

    import numpy as np

    from engine.errors import SettingsError
    from engine.ir.validate import one_line

    path = Path(path)
    try:
        data = np.load(path, allow_pickle=False)  # never unpickle: a calibration file is data
        if not hasattr(data, "files"):
            raise SettingsError(f"{path}: not an .npz archive of named arrays")
        missing = [n for n in input_names if f"input:{n}" not in data.files]
        if missing:
            raise SettingsError(f"{path}: no array 'input:{missing[0]}' (has {', '.join(data.files)[:200]})")
        arrays = {n: data[f"input:{n}"] for n in input_names}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise SettingsError(f"{path}: cannot read calibration data ({one_line(exc)})") from None
    for n, a in arrays.items():
        if a.dtype.kind not in "biuf" or a.ndim == 0 or len(a) == 0:
            raise SettingsError(f"{path}: 'input:{n}' must be a non-empty numeric array, got {a.dtype} {a.shape}")
    count = min(len(a) for a in arrays.values())
    # one sample per ORT run, keeping the batch axis; a few dozen are plenty for min/max calibration
    return [{n: a[i : i + 1] for n, a in arrays.items()} for i in range(min(count, 64))]


def run(args: argparse.Namespace) -> int:
    import onnx

    from engine.cli.common import evaluator_path
    from engine.evaluate.calibration import build_variant, calibration_for
    from engine.evaluate.evaluator import load_evaluator
    from engine.ir.graph import build_graph
    from engine.model.plan import Plan

    path, defaults = resolve_model(args.model)
    graph = load_graph(args, path, defaults, strict=False)
    shapes = graph.input_shapes
    plan = Plan.load(args.plan)
    samples = load_calibration(args.calib, [t.name for t in graph.inputs]) if args.calib else None
    eval_path = None if samples else evaluator_path(args, required=False)
    evaluator = load_evaluator(eval_path) if eval_path else None
    from engine.progress import forwarding, stderr_progress

    with forwarding(stderr_progress("apply")):  # int8 of a huge graph reports its calibration and windows
        result = build_variant(graph, plan, calibration_for(graph, evaluator, samples, str(args.calib or "")))
    model = result.model
    from engine.report.provider_export import annotated, deploy_lines

    model, providers = annotated(model, graph, plan)  # a mixed-provider plan: every node says where it runs (layer_ann)
    after = build_graph(model, shapes, path=Path(args.output))  # validated before anything is written
    onnx.save(model, args.output)
    print(f"{path} -> {args.output}" + ("" if result.modified else "  (unchanged: the plan is all fp32)"))
    for label, before_value, after_value, unit in (
        ("MACs", _macs_text(graph), _macs_text(after), ""),
        ("params", graph.total_params, after.total_params, ""),
        ("bytes", graph.total_weight_bytes, after.total_weight_bytes, "B"),
    ):
        before_text = before_value if isinstance(before_value, str) else format_count(before_value, unit)
        after_text = after_value if isinstance(after_value, str) else format_count(after_value, unit)
        print(f"  {label:<7} {before_text:>8} -> {after_text}")
    if graph.total_macs is None:
        print("  (some MACs unknown: give concrete input shapes with --input NAME=DxDx... or --dim NAME=N)")
    for note in result.notes:
        print(f"  note: {note}")
    for line in deploy_lines(providers):
        print(f"  {line}")
    return 0


def _macs_text(graph) -> str:  # type: ignore[no-untyped-def]
    """Total MACs; ops whose MACs are unknown (integer kernels, Q/DQ, Cast) are named instead of hiding the total."""
    known = [n.macs for n in graph.nodes if n.macs is not None]
    unknown = sorted({n.op_type for n in graph.nodes if n.macs is None})
    text = format_count(sum(known))
    return text if not unknown else f"{text} (not counted: {', '.join(unknown)})"

"""``layerlab sensitivity``: per-layer metric drop when only that layer runs int8, int8_dynamic or fp16."""

from __future__ import annotations

import argparse
import logging
import math

from engine.cli.common import add_int8_arguments, add_model_arguments, int8_choices, evaluator_path, load_graph, resolve_model

__all__ = ["add_parser", "run"]

logger = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sensitivity", help="per-layer accuracy drop of each non-fp32 routine")
    add_model_arguments(p)
    p.add_argument("--eval", metavar="E", help="evaluator .py or .npz (default: the example's)")
    p.add_argument("--routines", default="int8,int8_dynamic,fp16", help="comma-separated (default: all three)")
    p.add_argument("--layers", help="comma-separated layer names (default: every layer)")
    p.add_argument("--recover", action="store_true", help="also measure the drop recovered when all layers but one change")
    p.add_argument("--structural", action="store_true",
                   help="also measure prune:0.25/0.5 per prune group and rank:0.25/0.5 (of break-even) per factorable "
                        "layer, one whole-model evaluation each")
    p.add_argument("--naive", action="store_true", help="one full evaluation per layer (slow; the reference)")
    p.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads (0: its default)")
    p.add_argument("--json", action="store_true", help='print {"baseline", "layers": [...]} as JSON')
    p.add_argument("--executor", default="local", metavar="local[:N]|ray[=ADDRESS]",
                   help="where the sweep runs: local (this process), local:N worker processes, ray (a local Ray "
                        "instance) or ray=ADDRESS (an existing Ray cluster)")
    add_int8_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from engine.evaluate.evaluator import load_evaluator
    from engine.progress import run as run_job
    from engine.progress import stderr_progress
    from engine.evaluate.executors import parse_executor
    from engine.evaluate.sensitivity import SweepSettings

    executor = parse_executor(args.executor)
    path, _ = resolve_model(args.model)
    evaluator = load_evaluator(evaluator_path(args))
    graph = load_graph(args, path, {}, evaluator=evaluator, strict=False)
    settings = SweepSettings(
        routines=tuple(r.strip() for r in args.routines.split(",") if r.strip()),
        layers=tuple(n.strip() for n in args.layers.split(",") if n.strip()) if args.layers else None,
        recover=args.recover,
        cached=not args.naive,
        structural=args.structural,
        threads=args.threads,
        **int8_choices(args),
    )
    result = run_job(executor.sweep_job(graph, evaluator, settings), stderr_progress("sensitivity"))
    if args.json:
        print(result.to_json())
        return 0
    print(f"baseline {evaluator.metric_name}: {result.baseline:.4f}" + ("" if result.complete else " (incomplete)"))
    from engine.evaluate.structural import STRUCTURAL

    routines = [r for r in (*settings.routines, *STRUCTURAL) if any(r in ls.drops for ls in result.layers.values())]
    width = max([len(n) for n in result.layers] + [5])
    print(f"{'layer':<{width}}  " + "  ".join(f"{'drop ' + r:>18} {'SQNR dB':>8}" for r in routines))
    for ls in result.layers.values():
        cells = []
        for r in routines:
            drop = f"{ls.drops[r]:+.4f}" if r in ls.drops else "-"
            sqnr = ls.sqnr_db.get(r)
            cells.append(f"{drop:>18} {('-' if sqnr is None else 'inf' if math.isinf(sqnr) else f'{sqnr:.1f}'):>8}")
        print(f"{ls.name:<{width}}  " + "  ".join(cells))
    return 0

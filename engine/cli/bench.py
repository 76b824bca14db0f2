"""``layerlab bench``: ORT fp32, ORT whole-model int8 and LayerLab's route, side by side in one run."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from engine.cli.common import add_int8_arguments, add_model_arguments, add_target_arguments, int8_choices, format_count, load_graph, remote_target, resolve_model, shapes_text

__all__ = ["add_parser", "run"]

logger = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="ORT fp32 vs ORT int8 vs the tuned route, interleaved, in one run")
    add_model_arguments(p)
    p.add_argument("--eval", metavar="E", help="evaluator .py or .npz (default: the example's)")
    p.add_argument("--session", type=Path, metavar="S.json", help="bench this session's plan instead of tuning")
    p.add_argument("--max-drop", type=float, default=0.01, help="budget for the tune (default 0.01)")
    p.add_argument("--repeats", type=int, default=100, help="interleaved timed runs per row (default 100)")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads (default: physical cores)")
    p.add_argument("--json", action="store_true", help='print {"rows": [...], "predicted_ms"} as JSON')
    p.add_argument("--peers", default="", metavar="nncf",
                   help="also bench these tools' int8 (same calibration, same evaluator, same interleaved run): nncf "
                        "(nncf.quantize with its defaults; pip install 'layerlab[peers]')")
    p.add_argument("--nncf-accuracy-control", action="store_true",
                   help="with --peers nncf, also nncf.quantize_with_accuracy_control at --max-drop (can take long)")
    add_int8_arguments(p)
    p.add_argument("--compare-methods", action="store_true",
                   help="also tune without --calibration/--int8-methods (MinMax only, no CLE, bias correction, SmoothQuant "
                        "or symmetric ranges) and time that route as the row layerlab-plain in the same interleaved run")
    add_target_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from engine.optimize.bench import PLAIN, bench_job
    from engine.cli.common import evaluator_path
    from engine.errors import SettingsError
    from engine.evaluate.evaluator import load_evaluator
    from engine.progress import run as run_job
    from engine.progress import stderr_progress
    from engine.optimize.tune import TuneOptions
    from engine.report.words import ratio_words

    if args.repeats < 3:
        raise SettingsError(f"--repeats {args.repeats}: must be at least 3")
    if args.threads is not None and args.threads < 1:
        raise SettingsError(f"--threads {args.threads}: must be at least 1")
    peers = tuple(p.strip() for p in args.peers.split(",") if p.strip())
    if args.nncf_accuracy_control and "nncf" not in peers:
        raise SettingsError("--nncf-accuracy-control needs --peers nncf")
    if args.compare_methods and args.session is not None:
        raise SettingsError("--compare-methods needs a tune: not with --session")
    from engine.optimize.peers import check_peers

    check_peers(peers)
    evaluator = load_evaluator(evaluator_path(args))
    target = remote_target(args)
    route_model = predicted = routines = profiled = None
    ops = "fp32"
    if args.session is not None:
        from engine.io.session_file import load_session
        from engine.evaluate.calibration import build_variant, calibration_for

        session = load_session(args.session)  # its evaluator never runs: --eval is used
        graph = session.graph
        if session.plan is None:
            raise SettingsError(f"{args.session}: the session has no plan to bench (run layerlab tune --session first)")
        route_model = build_variant(graph, session.plan, calibration_for(graph, evaluator)).model
        predicted = getattr(session.route, "latency_ms", None)
        profiled = session.profile.end_to_end.median if session.profile is not None else None
        routines = {n.name: session.plan.settings_for(n.name).precision or "fp32" for n in graph.layers}
        ops = session.plan.ops
        label = str(session.model_path)
    else:
        path, defaults = resolve_model(args.model)
        graph = load_graph(args, path, defaults, evaluator=evaluator)
        label = str(path)
    result = run_job(
        bench_job(graph, evaluator, repeats=args.repeats, threads=args.threads, route_model=route_model,
                  predicted_ms=predicted, routines=routines, ops=ops, peers=peers,
                  accuracy_control=args.nncf_accuracy_control, profiled_fp32_ms=profiled,
                  compare_methods=args.compare_methods,
                  tune_options=TuneOptions(max_drop=args.max_drop, threads=args.threads, target=target, **int8_choices(args))),
        stderr_progress("bench"),
    )
    if args.json:
        print(json.dumps({"inputs": {k: list(v) for k, v in graph.input_shapes.items()}} | result.to_json(), indent=1))
        return 0
    where = f" on target {target.target.label}" if target is not None else ""  # type: ignore[attr-defined]
    print(f"{label}{where}: inputs {shapes_text(graph.input_shapes)}; {result.threads} threads, {result.repeats} "
          f"interleaved runs per row; metric {evaluator.metric_name}; timed on {result.feeds}")
    print(f"{'':<14} {'median ms':>10} {'p10-p90 ms':>17} {'vs fp32':>13} {'metric':>8} {'drop':>8} {'size':>8}")
    for r in result.rows:
        print(f"{r.name:<14} {r.ms.median:>10.3f} {f'{r.ms.p10:.3f}-{r.ms.p90:.3f}':>17} {ratio_words(r.speedup):>13} "
              f"{r.metric:>8.4f} {r.drop:>+8.4f} {format_count(r.bytes, 'B'):>8}")
    if result.predicted_ms is not None:
        measured = result.row("layerlab").ms.median
        print(f"layerlab route: predicted {result.predicted_ms:.3f} ms, measured {measured:.3f} ms "
              f"({100 * (result.predicted_ms - measured) / measured:+.1f}%)")
        if result.speedup_error is not None:
            predicted = result.profiled_fp32_ms / result.predicted_ms  # type: ignore[operator]
            print(f"  speed-up over fp32: predicted {predicted:.2f}x (in the profile), measured "
                  f"{result.row('layerlab').speedup:.2f}x (in this run): {100 * result.speedup_error:+.1f}%")
        change = result.load_change
        if change is not None and abs(change) > 0.2:  # the freshness tolerance (engine.measure.freshness)
            print(f"  the machine's load moved between profile and timing: fp32 {result.profiled_fp32_ms:.3f} ms "
                  f"in the profile, {result.row('ort-fp32').ms.median:.3f} ms in this run ({change:+.0%}); the "
                  f"prediction carries the profile's load")
    if result.routines:
        print(f"route: {_route_words(result.routines, result.ops)}")
    if result.plain is not None:
        print(f"{PLAIN} route (MinMax, no int8 methods): {_route_words(result.plain['routines'], result.plain['ops'])}")
    return 0


def _route_words(routines: dict[str, str], ops: str) -> str:
    """"20 int8, 6 int8_dynamic of 47 layers; ops int8"."""
    changed = [v for v in routines.values() if v != "fp32"]
    kinds = ", ".join(f"{changed.count(x)} {x}" for x in sorted(set(changed)))
    return f"{kinds or 'all fp32'} of {len(routines)} layers" + (f"; ops {ops}" if ops != "fp32" else "")

"""``layerlab tune``: DPRS routine selection within an accuracy budget, built and measured end to end."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from engine.cli.common import (add_int8_arguments, add_model_arguments, add_providers_argument, add_target_arguments, int8_choices,
                               load_graph, load_graph_noted, providers_of, remote_target, resolve_model, shapes_text)

__all__ = ["add_parser", "parse_bytes", "run"]

logger = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tune", help="choose a routine per layer within an accuracy budget, build and measure it")
    add_model_arguments(p)
    p.add_argument("--eval", metavar="E", help="evaluator .py or .npz (default: the example's)")
    p.add_argument("--max-drop", type=float, default=0.01, help="largest metric drop allowed (default 0.01)")
    p.add_argument("--memory-limit", metavar="BYTES", help="largest total weight size, e.g. 4000000 or 4MB")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads (default: physical cores)")
    p.add_argument("-o", "--output", type=Path, metavar="OUT.onnx", help="write the tuned model here")
    p.add_argument("--session", type=Path, metavar="S.json", help="save a LayerLab session (plan, profile, rounds); "
                   "when it exists for the same model, shapes and evaluator, its profile and sensitivity are reused")
    p.add_argument("--json", action="store_true", help="print baseline, route and rounds as JSON")
    add_target_arguments(p)
    add_providers_argument(p)
    p.add_argument("--structural", action="store_true",
                   help="also let the route prune groups (prune:0.25/0.5) and factor layers (rank:0.25/0.5 of break-even), "
                        "each variant's drop and end-to-end time measured first")
    p.add_argument("--executor", default="local", metavar="local[:N]|ray[=ADDRESS]",
                   help="where the sensitivity sweep runs (see layerlab sensitivity --help)")
    add_int8_arguments(p)
    p.set_defaults(func=run)


def parse_bytes(text: str) -> int:
    """'4000000', '4MB', '512k' -> bytes (powers of 1000; 'MiB' etc. powers of 1024)."""
    from engine.errors import SettingsError

    t = text.strip().lower().removesuffix("b").removesuffix("i" if text.strip().lower().endswith("ib") else "")
    scale = 1024 if text.strip().lower().endswith("ib") else 1000
    mult = {"k": scale, "m": scale**2, "g": scale**3}.get(t[-1:], 1)
    try:
        value = float(t[:-1] if mult > 1 else t) * mult
    except ValueError:
        raise SettingsError(f"--memory-limit {text!r}: expected a number of bytes such as 4000000 or 4MB") from None
    if not value > 0:
        raise SettingsError(f"--memory-limit {text!r}: must be positive")
    return int(value)


def run(args: argparse.Namespace) -> int:
    from engine.cli.common import evaluator_path
    from engine.errors import SettingsError
    from engine.evaluate.calibration import describe
    from engine.evaluate.evaluator import load_evaluator
    from engine.evaluate.executors import parse_executor
    from engine.progress import run as run_job
    from engine.progress import stderr_progress
    from engine.optimize.tune import TuneOptions, tune_job
    from engine.optimize.tune_session import to_session
    from engine.report.words import speed_words

    if args.output is not None and args.output.suffix != ".onnx":
        raise SettingsError(f"{args.output}: the output must be an .onnx file")
    for target in (args.output, args.session):
        if target is not None and not target.resolve().parent.is_dir():
            raise SettingsError(f"{target}: folder {target.resolve().parent} does not exist")
    options = TuneOptions(
        max_drop=args.max_drop,
        memory_limit=parse_bytes(args.memory_limit) if args.memory_limit else None,
        threads=args.threads,
        target=remote_target(args),
        executor=parse_executor(args.executor),
        **int8_choices(args),
        structural=args.structural,
        providers=providers_of(args),
    )
    path, defaults = resolve_model(args.model)
    eval_path = evaluator_path(args)
    evaluator = load_evaluator(eval_path)
    graph, shape_notes = load_graph_noted(args, path, defaults, evaluator=evaluator)
    shapes = graph.input_shapes
    profile, sensitivity = _tables(args.session, graph, shapes, eval_path)
    result = run_job(tune_job(graph, evaluator, options, None, profile, sensitivity), stderr_progress(f"tune {path.name}"))
    deploy: list[str] = []
    if args.output is not None:
        import onnx

        from engine.report.provider_export import annotated, deploy_lines

        model, placed = annotated(result.model, graph, result.plan)  # layer_ann where the route mixes providers
        onnx.save(model, str(args.output))
        deploy = deploy_lines(placed)
    if args.session is not None:
        from engine.io.session_file import save_session

        save_session(to_session(result, graph, path.resolve(), Path(eval_path).resolve(), shapes, shape_notes), args.session)
    if args.json:
        data = result.to_json()
        print(json.dumps({"inputs": {k: list(v) for k, v in shapes.items()}, "providers": _providers_json(result)}
                         | {k: data[k] for k in ("baseline", "route", "rounds", "round_details", "feasible", "note",
                                                 "calibration", "calibration_random", "reused", "timing_feeds")}, indent=1))
        return 0
    b, m = result.baseline_ms, result.ms_measured
    where = f" on target {options.target.target.label}" if options.target is not None else ""
    print(f"{path}{where}: inputs {shapes_text(shapes)}; baseline fp32 {b.median:.3f} ms, "
          f"{evaluator.metric_name} {result.baseline_metric:.4f}; timed on {result.feeds}")
    for i, r in enumerate(result.rounds, start=1):
        changed = {k: v for k, v in r.routines.items() if v != "fp32"}
        counts = ", ".join(f"{sum(1 for v in changed.values() if v == x)} {x}" for x in sorted(set(changed.values())))
        counts = (counts or "all fp32") + ("; ops int8" if r.ops != "fp32" else "")
        print(f"  round {i}: {counts}; predicted {r.ms_predicted:.3f} ms, measured "
              f"{r.ms_measured.median:.3f} ms, metric {r.metric:.4f} (drop {result.baseline_metric - r.metric:+.4f})"
              + (f"; reverted {', '.join(r.reverted)}" if r.reverted else "")
              + (f"; added {', '.join(r.added)} (under budget)" if r.added else ""))
    print(f"route: predicted {result.ms_predicted:.3f} ms, measured {m.median:.3f} ms (p10 {m.p10:.3f}, p90 {m.p90:.3f}), "
          f"{speed_words(b.median, m.median)} than fp32{'; ops int8' if result.plan.ops != 'fp32' else ''}; {evaluator.metric_name} {result.metric:.4f} "
          f"(drop {result.baseline_metric - result.metric:+.4f}, budget {options.max_drop:g})")
    if options.providers:
        _print_providers(result)
    if result.calibration is not None:
        print(f"int8 calibration: {describe(result.calibration)}" + (" (WARNING: random)" if result.calibration.random else ""))
    if result.reused:
        print("tables: " + "; ".join(result.reused))
    if result.note:
        print(f"note: {result.note}")
    if args.output is not None:
        print(f"wrote {args.output}")
        for line in deploy:
            print(f"  {line}")
    if args.session is not None:
        print(f"saved session {args.session}")
    return 0


def _providers_json(result) -> dict:  # type: ignore[no-untyped-def]
    """Per layer: the provider the route runs it on and its routine times per provider (ms, as DPRS priced them)."""
    from engine.measure.providers import split_routine

    out = {}
    for name, routine in result.layer_routines().items():
        lp = result.profile.layer(name)
        out[name] = {"routine": routine, "provider": split_routine(routine)[1],
                     "ms": {r: lp.routines[r] for r in sorted(lp.routines) if split_routine(r)[0] in ("fp32", "int8")}}
    return out


def _print_providers(result) -> None:  # type: ignore[no-untyped-def]
    """The route's layers with the provider each runs on, beside their fp32/int8 times on every provider."""
    data = _providers_json(result)
    columns = sorted({r for v in data.values() for r in v["ms"]}, key=lambda r: ("@" in r, r))
    width = max([len(n) for n in data] + [5])
    print(f"\n{'layer':<{width}}  {'routine':<14} {'provider':<10}" + "".join(f"{r:>15}" for r in columns))
    for name, v in data.items():
        cells = "".join(f"{v['ms'][r]:>15.4f}" if r in v["ms"] else f"{'-':>15}" for r in columns)
        print(f"{name:<{width}}  {v['routine']:<14} {v['provider'].removesuffix('ExecutionProvider'):<10}{cells}")
    for key, (fixed, per_mb) in result.profile.crossings.items():
        print(f"crossing {key.replace('ExecutionProvider', '')}: {fixed:.4f} ms + {per_mb:.4f} ms/MB")
    print("(ms: the profile's time of each routine; @<EP>: the layer's segment on that provider, scaled to context)\n")


def _tables(session_path: Path | None, graph, shapes, eval_path) -> tuple:  # type: ignore[no-untyped-def]
    """Profile and sensitivity of an existing session for this model, shapes and evaluator (else None, None).

    tune checks them again (model digest, shapes, threads, the evaluator's fp32 metric) before reusing."""
    if session_path is None or not session_path.is_file():
        return None, None
    from engine.errors import LayerLabError
    from engine.io.session_file import load_session

    try:
        old = load_session(session_path)  # its evaluator is not run: --eval is
    except LayerLabError as exc:
        logger.warning("%s: not reused (%s)", session_path, exc)
        return None, None
    same = (old.graph is not None and old.graph.sha256 == graph.sha256
            and {k: tuple(v) for k, v in old.input_shapes.items()} == {k: tuple(v) for k, v in shapes.items()}
            and old.evaluator_path is not None and Path(old.evaluator_path).resolve() == Path(eval_path).resolve())
    if not same:
        print(f"{session_path}: another model, shapes or evaluator: its tables are not reused", file=sys.stderr)
        return None, None
    return old.profile, old.sensitivity

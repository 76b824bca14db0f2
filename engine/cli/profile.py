"""``layerlab profile``: end-to-end and per-layer latency, routine times and adapt costs with ONNX Runtime."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from engine.cli.common import (add_model_arguments, add_providers_argument, add_target_arguments, load_graph, providers_of,
                               remote_target, resolve_model, shapes_text)

__all__ = ["add_parser", "profile_to_json", "run", "unattributed_ms"]

logger = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("profile", help="measure end-to-end and per-layer latency, routines and adapt costs")
    add_model_arguments(p)
    p.add_argument("--eval", metavar="E", help="evaluator .py or .npz: its most frequent sample shape fixes open dims, "
                   "and a sample of that shape is the input")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads (default: physical cores)")
    p.add_argument("--repeats", type=int, default=30, help="timed runs for the end-to-end latency (default 30)")
    p.add_argument("--json", action="store_true", help="print JSON (every node, so the times add up)")
    p.add_argument("--trace", type=Path, metavar="OUT.json", help="write the fp32 run's Chrome trace (opens in Perfetto)")
    p.add_argument("--no-cache", action="store_true", help="measure everything again; do not read or write the cache")
    p.add_argument("--provider", default="CPUExecutionProvider", metavar="NAME",
                   help="ONNX Runtime execution provider to profile on (default CPUExecutionProvider; "
                        "e.g. OpenVINOExecutionProvider where onnxruntime-openvino is installed)")
    add_providers_argument(p)
    add_target_arguments(p)
    p.set_defaults(func=run)


def profile_to_json(profile: object) -> dict:
    """The ``--json`` document: end_to_end_ms, coverage, layers (every node) and adapts."""
    from engine.measure.profiler import Profile

    assert isinstance(profile, Profile)
    layers = []
    for lp in profile.layers:
        entry: dict = {"name": lp.name, "op": lp.op, "tunable": lp.tunable, "ms": lp.ms}
        if lp.tunable:
            entry["routines"] = dict(lp.routines)
            if lp.unsupported:
                entry["unsupported"] = dict(lp.unsupported)
        layers.append(entry)
    e2e = profile.end_to_end
    return {
        "inputs": {name: list(shape) for name, shape in profile.input_shapes.items()},
        "timing_feeds": profile.feeds,
        "cache": profile.cache,
        "end_to_end_ms": {"median": e2e.median, "p10": e2e.p10, "p90": e2e.p90},
        "coverage": profile.coverage,
        "unattributed_ms": unattributed_ms(profile),
        "raw_coverage": profile.raw_coverage,
        "threads": profile.threads,
        "provider": profile.provider,
        "ort_version": profile.ort_version,
        "complete": profile.complete,
        "target": dict(profile.target),
        "variants_ms": {r: s.median for r, s in profile.variants.items()},
        "crossings": {k: {"fixed_ms": v[0], "ms_per_mb": v[1]} for k, v in profile.crossings.items()},
        "provider_scale": dict(profile.provider_scale),
        "layers": layers,
        "adapts": [{"tensor": a.tensor, "kind": a.kind, "ms": a.ms, "routine": a.routine} for a in profile.adapts],
    }


def run(args: argparse.Namespace) -> int:
    from engine.errors import SettingsError
    from engine.progress import run as run_job
    from engine.progress import stderr_progress
    from engine.measure.profiler import ProfileOptions, profile_job

    if args.threads is not None and args.threads < 1:
        raise SettingsError(f"--threads {args.threads}: must be at least 1")
    if args.repeats < 3:
        raise SettingsError(f"--repeats {args.repeats}: must be at least 3")
    path, defaults = resolve_model(args.model)
    evaluator = None
    if args.eval:
        from engine.evaluate.evaluator import load_evaluator

        evaluator = load_evaluator(args.eval)
    graph = load_graph(args, path, defaults, evaluator=evaluator)
    remote = remote_target(args)
    if remote is not None and args.trace:
        raise SettingsError("--trace is not available with --target (the trace stays on the target)")
    from engine.optimize.timing_feeds import timing_feeds

    timing = timing_feeds(graph, evaluator)
    options = ProfileOptions(
        threads=args.threads, repeats=args.repeats, use_cache=not args.no_cache, trace_path=args.trace,
        # generated inputs stay the profiler's own: a failure then names them and suggests --eval
        feeds=timing.feeds if timing.from_evaluator else None, feeds_source=timing.source,
        provider=args.provider,
    )
    job = profile_job(graph, options) if remote is None else remote.profile_job(graph, options)  # type: ignore[attr-defined]
    profile = run_job(job, stderr_progress(f"profile {path.name}"))
    providers = providers_of(args)
    if providers:
        profile = _with_providers(graph, profile, providers, options, remote, path.name)
    if args.json:
        print(json.dumps(profile_to_json(profile), indent=1))
        return 0
    _print_table(profile, str(path))
    if args.trace:
        print(f"\nfp32 trace written to {args.trace} (open it in https://ui.perfetto.dev)")
    return 0


def _with_providers(graph: object, profile: object, providers: tuple[str, ...], options: object, remote: object,
                    name: str) -> object:
    """``profile`` with routine tables per provider (here, or on the target), cached per target and provider."""
    from engine.measure.provider_tables import TableOptions, with_providers_job
    from engine.progress import run as run_job
    from engine.progress import stderr_progress

    table_options = TableOptions(providers=providers, threads=profile.threads, feeds=options.feeds,  # type: ignore[attr-defined]
                                 use_cache=options.use_cache)  # type: ignore[attr-defined]
    job = with_providers_job(graph, profile, table_options, remote)  # type: ignore[arg-type]
    return run_job(job, stderr_progress(f"routines per provider {name}"))


def unattributed_ms(profile: object) -> float:
    """End-to-end time that no node, adapt or run cost accounts for (0 when the trace covers it all)."""
    e2e = profile.end_to_end.median  # type: ignore[attr-defined]
    return max(e2e * (1.0 - profile.coverage), 0.0)  # type: ignore[attr-defined]


def _print_table(profile: object, label: str) -> None:
    from engine.measure.profiler import ROUTINES, Profile

    assert isinstance(profile, Profile)
    e2e = profile.end_to_end
    where = f" on target {profile.target.get('name') or profile.target.get('address')}" if profile.target else ""
    print(f"{label}{where}  {profile.threads} threads, ONNX Runtime {profile.ort_version} ({profile.provider}), {profile.cpu}")
    print(f"inputs: {shapes_text(profile.input_shapes)}; timed on {profile.feeds or 'generated inputs'}")
    rows = [lp for lp in profile.layers if lp.tunable or lp.ms > 0]
    width = max([len(lp.name) for lp in rows] + [4])
    columns = list(ROUTINES) + sorted({r for lp in profile.layers for r in lp.routines if "@" in r})
    head = "".join(f"{r:>15}" for r in columns)
    print(f"\n{'name':<{width}}  {'op':<12} {'ms':>8} {'%':>6}{head}")
    for lp in rows:
        share = 100 * lp.ms / e2e.median if e2e.median else 0.0
        cells = ""
        for r in columns:
            cells += f"{lp.routines[r]:>15.4f}" if r in lp.routines else f"{('-' if lp.tunable and r in lp.unsupported else ''):>15}"
        print(f"{lp.name:<{width}}  {lp.op:<12} {lp.ms:>8.4f} {share:>5.1f}%{cells if lp.tunable else ''}")
    missing = unattributed_ms(profile)
    if missing > 0.005 * e2e.median:  # time no kernel accounts for is shown as such, never spread over the layers
        print(f"{'(unattributed)':<{width}}  {'':<12} {missing:>8.4f} {100 * missing / e2e.median:>5.1f}%")
    seen = sorted((a for a in profile.adapts if a.routine == "fp32"), key=lambda a: -a.ms)
    if seen:
        top = ", ".join(f"{a.kind} {a.tensor or '(per run)'} {a.ms:.4f} ms" for a in seen[:6])
        more = f", ... {len(seen) - 6} more" if len(seen) > 6 else ""
        print(f"\nadapts in the fp32 run: {sum(a.ms for a in seen):.4f} ms in all: {top}{more}")
    hidden = len(profile.layers) - len(rows)
    if hidden:
        print(f"({hidden} nodes fused away by ONNX Runtime: 0 ms; see --json)")
    print(
        f"\nend to end: median {e2e.median:.4f} ms (p10 {e2e.p10:.4f}, p90 {e2e.p90:.4f}); "
        f"coverage {profile.coverage:.1%} (profiler raw {profile.raw_coverage:.1%})"
    )
    for r, s in profile.variants.items():
        if r != "fp32":
            print(f"all layers {r}: {s.median:.4f} ms")
    if profile.cache:
        print(f"profile cache: {profile.cache}")
    for provider, factor in profile.provider_scale.items():
        print(f"{provider.replace('ExecutionProvider', '')} segments scaled by {factor:.3f} to match all of them in one route")
    for key, (fixed, per_mb) in profile.crossings.items():
        print(f"crossing {key.replace('ExecutionProvider', '')}: {fixed:.4f} ms + {per_mb:.4f} ms/MB")
    if len(columns) > len(ROUTINES):
        print("(routines @<EP>: each layer with the ops after it, timed as a micro-model on that provider)")
    if not profile.complete:
        print("(profile incomplete: cancelled)")
    if profile.provider != "CPUExecutionProvider" and not any(lp.ms for lp in profile.layers):
        print(f"({profile.provider} compiles the graph into subgraph kernels, so ORT's profiler cannot time single "
              "layers there: the end-to-end and all-layers-in-a-routine times are the provider's numbers)")

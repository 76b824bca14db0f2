"""Benchmark: DPRS choosing an execution provider per layer, against all-CPU and all-OpenVINO, predicted
beside measured, every route timed side by side in one run on a target.

Run (an agent in an ``onnxruntime-openvino`` venv, see the README's *Execution providers*)::

    python tests/bench/bench_providers.py ppocr-rec --target 127.0.0.1:8766 --token-file agent.token
    python tests/bench/bench_providers.py /work/zoo/models/nudenet-320n.onnx --input images=1x3x320x320 --target ...

Steps: profile on the target (CPU provider, fp32: its in-context layer times), time every segment on
the provider there (``fp32@<EP>``, ``int8@<EP>``) with the crossings, then solve DPRS twice (fp32 on
either provider; and with int8 on the provider too, latency only: no evaluator here, so no drop
limits the int8 choice). A route's parts run with ORT's thread spinning off (``PartitionedModel.spin``);
the row "all CPU no spin" is the same control for the one-session CPU run. Each route is built as parts (``engine.measure.partition``) and all of them
are timed in turns on the target (``measure`` job, ``--repeats`` runs per session, 3 sessions each).
Prints one row per route: predicted ms, measured median (p10-p90), and both as ratios to all-CPU; the
row "<EP> 1 session" is the whole model in one session on the provider (ORT's own placement, no
per-layer prediction; no spinning, like the parts).
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from engine.cli.common import resolve_model  # noqa: E402
from engine.ir.graph import load_model, parse_input_shape  # noqa: E402
from engine.ir.feeds import random_feeds  # noqa: E402
from engine.measure.partition import Part, PartitionedModel, partition  # noqa: E402
from engine.measure.predict import predict_ms  # noqa: E402
from engine.measure.profiler import ProfileOptions  # noqa: E402
from engine.measure.provider_tables import TableOptions, merge, provider_tables  # noqa: E402
from engine.measure.providers import routine_on, split_routine  # noqa: E402
from engine.measure.remote import RemoteTarget, Target  # noqa: E402
from engine.optimize import dprs  # noqa: E402
from engine.optimize.routes import build_problem  # noqa: E402
from engine.progress import run  # noqa: E402

__all__ = ["main"]

logger = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="ONNX file or example name")
    parser.add_argument("--input", action="append", default=[], metavar="NAME=DxD", help="input shape")
    parser.add_argument("--target", required=True)
    parser.add_argument("--token-file", required=True, type=Path)
    parser.add_argument("--provider", default="OpenVINOExecutionProvider")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--no-cache", action="store_true", help="profile and time the segments again (not from the cache)")
    args = parser.parse_args(argv)
    path, defaults = resolve_model(args.model)
    shapes = dict(defaults or {})
    shapes.update(parse_input_shape(s) for s in args.input)
    graph = load_model(path, shapes)
    remote = RemoteTarget(Target.parse(args.target, args.token_file))
    feeds = random_feeds(graph, 0)
    profile = run(remote.profile_job(graph, ProfileOptions(threads=args.threads, routines=("fp32",), ops_int8=False, feeds=feeds,
                                                                 use_cache=not args.no_cache)))
    tables = provider_tables(graph, TableOptions(providers=(args.provider,), threads=args.threads, feeds=feeds,
                                                          use_cache=not args.no_cache),
                             remote.routines_timer(), remote.identity())
    profile = merge(profile, tables, graph)
    layers = [n.name for n in graph.layers]
    fp32_ep, int8_ep = routine_on("fp32", args.provider), routine_on("int8", args.provider)
    on_ep = {n: fp32_ep for n in layers if fp32_ep in profile.layer(n).routines}
    routes = {"all CPU": {}, f"all {split_routine(fp32_ep)[1].removesuffix('ExecutionProvider')}": on_ep}
    for label, offered in (("DPRS fp32", ("fp32", fp32_ep)), ("DPRS fp32+int8", ("fp32", fp32_ep, int8_ep))):
        route = dprs.solve(build_problem(graph, profile, None, routines=offered))
        routes[label] = {n: r for n, r in route.routines.items() if n in set(layers) and r != "fp32"}
        # DPRS shares a layout border among the layers it reaches (exact when one or all differ): within 0.1 %
        check = predict_ms(profile, graph, routes[label])
        print(f"{label}: DPRS {route.latency_ms:.4f} ms, predict_ms {check:.4f} ms")
        assert abs(check - route.latency_ms) < 1e-3 * max(1.0, check), (check, route.latency_ms)
    models = {name: partition(graph, r, feeds, args.threads) for name, r in routes.items()}
    # the control: all CPU in one session whose threads do not spin, as the parts of a mixed route run
    routes["all CPU no spin"] = {}
    models["all CPU no spin"] = replace(models["all CPU"], spin=False)
    # the whole model in one session on the provider: ORT places what it cannot run there on CPU itself
    ep_whole = f"{split_routine(fp32_ep)[1].removesuffix('ExecutionProvider')} 1 session"
    models[ep_whole] = PartitionedModel([Part(args.provider, graph.model, [t.name for t in graph.inputs],
                                              [t.name for t in graph.outputs])], [t.name for t in graph.outputs], spin=False)
    stats = run(remote.latency_job(models, feeds, args.threads, args.repeats))
    missing = len(layers) - len(on_ep)
    print(f"{path.name} at {shapes_text(graph)}: {len(layers)} layers, {len(graph.nodes)} nodes; "
          f"{missing} segment(s) cannot run alone on {args.provider}; target ORT {remote.info().get('ort')}, "
          f"{args.threads} threads, {args.repeats} runs x 3 sessions each, in turns")
    print("segments scaled to context: " + ", ".join(f"{k.removesuffix('ExecutionProvider')} x{v:.3f}"
                                                      for k, v in profile.provider_scale.items()))
    print("crossings: " + ", ".join(f"{k.replace('ExecutionProvider', '')} {a:.4f} ms + {b:.4f} ms/MB"
                                     for k, (a, b) in profile.crossings.items()))
    base_pred, base_meas = predict_ms(profile, graph, {}), stats["all CPU"].median
    print(f"\n{'route':<18} {'parts':>5} {'on EP':>6} {'predicted':>10} {'measured (p10-p90)':>28} {'pred/CPU':>9} {'meas/CPU':>9}")
    for name in models:
        s = stats[name]
        if name in routes:
            pred = predict_ms(profile, graph, routes[name])
            on = str(sum(split_routine(x)[1] == args.provider for x in routes[name].values()))
            pred_text, ratio = f"{pred:>10.3f}", f"{pred / base_pred:>9.3f}"
        else:
            on, pred_text, ratio = "all", f"{'-':>10}", f"{'-':>9}"
        print(f"{name:<18} {len(models[name].parts):>5} {on:>6} {pred_text} {s.median:>10.3f} ({s.p10:>7.3f}-{s.p90:>7.3f}) "
              f"{ratio} {s.median / base_meas:>9.3f}")
    return 0


def shapes_text(graph: object) -> str:
    return ", ".join(f"{k}={'x'.join(map(str, v))}" for k, v in graph.input_shapes.items())  # type: ignore[attr-defined]


if __name__ == "__main__":
    raise SystemExit(main())

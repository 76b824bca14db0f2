"""The profile: end-to-end latency, per-node time, per-layer routine times and adapt costs, measured
with ONNX Runtime as users deploy it (ORT_ENABLE_ALL, CPU, a fixed thread count), and cached.

Choice: **in-context** routine timing. For each routine (fp32, int8 static QDQ U8S8 per-channel,
int8_dynamic for MatMul/Gemm, fp16) the whole model is built with *every* layer in that routine
(``engine.measure.variants``), timed end to end, profiled once with ORT's profiler, and each layer's
time read from that trace (``engine.measure.attribution``). One profiled session per routine instead of one
micro-model per layer and routine: cheap, and each time includes the layer's real neighbours, caches
and fusions. Adapt costs (Quantize, Dequantize, Cast, Transpose) are measured on one-node
micro-models at each layer edge's shape, deduplicated by shape.

ORT's profiler inflates every kernel by a few microseconds (``raw_coverage`` shows how much: often
1.2-2x on small models). Kernel times have a per-kernel cost removed, fitted so that the trace
reconciles with the unprofiled end-to-end median but bounded by ``_OVERHEAD_BOUND`` times the
calibrated cost (``engine.measure.timing``); ORT's fixed per-run cost is the adapt of kind "run".
``coverage`` = (node times + adapts seen in the fp32 run + run cost) / end-to-end median: near 1
when the attribution lost nothing and the profiler's cost is plausible; off when either is wrong.

Cached times are reused only while the fp32 model times now as it did when they were cached (a quick
check, ``engine.measure.freshness``): a profile cached under another load is measured again.

``predict_ms`` adds per-node times under a per-layer routine choice plus the adapts that choice
needs; tests compare it with a measured mixed variant.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Generator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from engine.measure import freshness
from engine.measure.attribution import attribute, read_trace
from engine.errors import LayerLabError
from engine.ir.graph import ModelGraph
from engine.progress import Cancelled, Job, Progress, run
from engine.measure.cache import ProfileCache, cache_key, cpu_model
from engine.measure.timing import (
    PROVIDER,
    SESSIONS,
    Calibration,
    adapt_model,
    calibrate,
    check_provider,
    fit_overhead,
    lowest_median,
    make_session,
    physical_cores,
    time_in_turns,
    time_runs,
)
from engine.measure.predict import context_scale, predict_ms
from engine.measure.tables import AdaptCost, LayerProfile, Profile, Stats  # re-exported: the profiler's results
from engine.measure.feeds import feed_failure, feeds_digest
from engine.measure.variants import OPS_INT8, ROUTINES, build_variant, random_feeds, to_graph

__all__ = [
    "ROUTINES",
    "AdaptCost",
    "LayerProfile",
    "Profile",
    "ProfileOptions",
    "Stats",
    "feeds_record",
    "measure_latency",
    "predict_ms",
    "profile",
    "profile_job",
]

logger = logging.getLogger(__name__)

_ADAPT_KINDS = ("quantize", "dequantize", "cast", "transpose", "layout")
_OVERHEAD_BOUND = 3.0  # the fitted per-kernel profiler cost may be at most this times the calibrated one


@dataclass(frozen=True)
class ProfileOptions:
    """How to profile. ``threads`` None: the machine's physical cores. ``feeds`` None: seeded random inputs."""

    threads: int | None = None
    routines: tuple[str, ...] = ROUTINES
    warmup: int = 5
    repeats: int = 30
    profile_runs: int = 20
    seed: int = 0
    feeds: Mapping[str, np.ndarray] | None = None
    adapts: bool = True
    ops_int8: bool = True  # with "int8": also time every layer and op in int8, to predict plans with "ops": "int8"
    use_cache: bool = True
    cache_dir: Path | None = None
    trace_path: Path | None = None  # write the fp32 run's Chrome trace here
    provider: str = PROVIDER  # the execution provider the routines run on (engine.measure.providers)
    feeds_source: str = ""  # where ``feeds`` come from, as the profile states it (engine.optimize.timing_feeds)


def profile(graph: ModelGraph, options: ProfileOptions = ProfileOptions(),
            measure_now: freshness.Measure | None = None) -> Profile:
    """Run ``profile_job`` to the end."""
    return run(profile_job(graph, options, measure_now))


def profile_job(graph: ModelGraph, options: ProfileOptions = ProfileOptions(),
                measure_now: freshness.Measure | None = None) -> Job[Profile]:
    """Profile ``graph``: yields Progress at least every second; cancelled, returns what it has.

    Cached times are reused only while the fp32 model still times as it did when they were cached
    (``engine.measure.freshness``; ``measure_now`` times it, by default a quick run); otherwise all is measured again."""
    import onnxruntime as ort

    # Before anything: a missing provider would otherwise fail the fp32 run and read as bad inputs.
    check_provider(options.provider, graph.label)
    threads = options.threads or physical_cores()
    feeds = dict(options.feeds) if options.feeds is not None else random_feeds(graph, options.seed)
    env = {"ort": ort.__version__, "provider": options.provider, "threads": threads, "cpu": cpu_model()}
    shapes = {k: list(v.shape) for k, v in feeds.items()}
    cache = ProfileCache(options.cache_dir, options.use_cache)
    routines = ["fp32"] + [r for r in options.routines if r != "fp32"]
    if "int8" in routines and options.ops_int8:
        routines.append(OPS_INT8)
    total = 1 + len(routines) + (1 if options.adapts else 0)
    results: dict[str, dict[str, Any]] = {}
    micro: dict[tuple[str, tuple[int, ...]], float] = {}
    calib = Calibration(0.0, 0.0)
    tmp = Path(tempfile.mkdtemp(prefix="layerlab-profile-"))

    def variant_key(routine: str) -> str:
        return cache_key("variant", model=graph.sha256, routine=routine, shapes=shapes, **env,
                         repeats=options.repeats, runs=options.profile_runs, sessions=SESSIONS,
                         **_feeds_key(feeds, options))

    note, read = "", True  # read: the cached times still hold on this machine now
    reference: _Reference | None = None  # fp32's, once known
    try:
        cached = cache.get(variant_key("fp32")) if options.trace_path is None else None
        if cached and "e2e" in cached:
            yield Progress(0, total, "checking the cached profile against the machine now")
            fresh = yield from _in_thread(lambda: freshness.check(cached["e2e"]["median"], graph.model, feeds, threads,
                                                                  options.provider, measure_now), "checking the cache")
            note, read = fresh.note(), fresh.fits
        yield Progress(0, total, "calibrating the profiler")
        key = cache_key("calibration", **env)
        cached = cache.get(key) if read else None
        calib = Calibration(**cached) if cached else (yield from calibrate(threads, tmp))
        cache.put(key, asdict(calib))
        for step, routine in enumerate(routines, start=1):
            yield Progress(step, total, f"profiling {routine}")
            key = variant_key(routine)
            fresh = (routine == "fp32" and options.trace_path is not None) or not read
            data = None if fresh else cache.get(key)
            if data is None:
                try:
                    data = yield from _profile_variant(graph, routine, feeds, threads, calib, options, tmp,
                                                       reference if routine != "fp32" else None)
                except LayerLabError as exc:
                    if routine == "fp32" and options.feeds is None:  # our generated inputs: say which, and what to do
                        raise feed_failure(graph, str(exc)) from None
                    raise
                if data.get("ok", True):
                    cache.put(key, data)
            results[routine] = data
            if routine == "fp32":
                reference = _Reference(graph.model, threads, options.provider, float(data["e2e"]["median"]))
        if options.adapts:
            yield Progress(total - 1, total, "timing adapts")
            yield from _measure_adapts(graph, threads, calib, cache, env, micro, read)
        yield Progress(total, total, "done")
    except Cancelled:
        logger.info("profile of %s cancelled; returning what was measured", graph.label)
        done = _assemble(graph, results if "fp32" in results else {}, micro, calib, threads, env, shapes, complete=False)
    else:
        done = _assemble(graph, results, micro, calib, threads, env, shapes, complete=True)
    finally:
        cache.close()
        shutil.rmtree(tmp, ignore_errors=True)
    done.feeds, done.feeds_digest = feeds_record(feeds, options)
    done.cache = note
    return done


def feeds_record(feeds: Mapping[str, np.ndarray], options: ProfileOptions) -> tuple[str, str]:
    """(source, digest) a profile keeps of what it was timed on; generated inputs have no digest."""
    if options.feeds is None:
        return f"generated inputs (seed {options.seed})", ""
    return options.feeds_source or "given inputs", feeds_digest(dict(feeds))


def _feeds_key(feeds: Mapping[str, np.ndarray], options: ProfileOptions) -> dict[str, str]:
    """Part of a variant's cache key: given inputs are named by their digest (generated ones by shapes alone)."""
    return {"feeds": feeds_digest(dict(feeds))} if options.feeds is not None else {}


def measure_latency(
    model: onnx.ModelProto, feeds: Mapping[str, np.ndarray], threads: int | None = None,
    warmup: int = 5, repeats: int = 30, label: str = "<model>",
) -> Stats:
    """End-to-end latency of ``model`` with the profiler's session settings (no profiling) and its session
    rule: the fastest of ``SESSIONS`` sessions timed in turns."""
    pool = {("model", k): make_session(model, threads or physical_cores(), label) for k in range(SESSIONS)}
    times = run(time_in_turns(pool, dict(feeds), repeats, warmup, label=lambda _: label))
    return Stats.of(lowest_median(times)["model"])


# --- steps ----------------------------------------------------------------------------------


@dataclass
class _Reference:
    """fp32's sessions and its end-to-end median. Every other variant is timed in turns with these
    sessions and reported at fp32's median times its ratio to fp32 in those turns: this VM's speed moves
    by half within seconds (MiniLM int8_dynamic: six sessions in turns 2.08-2.12 ms, the same six again
    ten seconds later 3.09-3.14 ms), so variants timed one after another disagreed with bench's turns by
    up to +50 % (MiniLM all-int8_dynamic 3.05 ms in a profile, 2.01 ms in bench). Ratios taken in turns
    are what a route's prediction is compared with."""

    model: onnx.ModelProto
    threads: int
    provider: str
    median: float
    pool: dict[tuple[str, int], Any] | None = None

    def sessions(self) -> Generator[Progress, None, dict[tuple[str, int], Any]]:
        if self.pool is None:
            self.pool = {}
            for k in range(SESSIONS):
                self.pool[("fp32", k)] = yield from _in_thread(
                    lambda: make_session(self.model, self.threads, "fp32 reference", provider=self.provider),
                    "loading the fp32 reference")
        return self.pool


def _profile_variant(
    graph: ModelGraph, routine: str, feeds: dict[str, np.ndarray], threads: int,
    calib: Calibration, options: ProfileOptions, tmp: Path, reference: _Reference | None = None,
) -> Generator[Progress, None, dict[str, Any]]:
    label = f"{graph.label} [{routine}]"
    try:
        variant, unsupported = yield from _in_thread(lambda: build_variant(graph, routine, feeds), f"building {routine}")
    except LayerLabError as exc:
        if routine == "fp32":
            raise
        return {"ok": False, "unsupported": {n.name: str(exc) for n in graph.layers}}
    if routine != "fp32" and len(unsupported) == len(graph.layers):
        return {"ok": True, "unsupported": unsupported, "nodes": {}, "adapts": []}
    try:
        # Timed as bench times: SESSIONS sessions in turns, the fastest session's runs kept
        # (``engine.measure.timing``), and beside fp32's sessions (see ``_Reference``).
        pool = {}
        for k in range(SESSIONS):
            pool[(routine, k)] = yield from _in_thread(
                lambda: make_session(variant, threads, label, provider=options.provider), f"loading {routine}")
        if reference is not None:
            pool |= yield from reference.sessions()
        times = yield from time_in_turns(pool, feeds, options.repeats, options.warmup, label=lambda _: label)
        best = lowest_median(times)
        factor = reference.median / float(np.median(best["fp32"])) if reference is not None else 1.0
        e2e = Stats.of([t * factor for t in best[routine]])
        del pool
        optimized = tmp / f"{routine}_optimized.onnx"
        prof = yield from _in_thread(
            # Providers that compile subgraphs (OpenVINO, TensorRT) cannot save the optimized model.
            lambda: make_session(variant, threads, label, str(tmp / routine),
                                 str(optimized) if options.provider == PROVIDER else None, options.provider),
            f"profiling {routine}"
        )
        yield from time_runs(prof, feeds, 3 + options.profile_runs, label)
        trace = prof.end_profiling()
        del prof
    except LayerLabError as exc:
        if routine == "fp32":
            raise
        return {"ok": False, "unsupported": {n.name: str(exc) for n in graph.layers if n.name not in unsupported} | unsupported}
    if routine == "fp32" and options.trace_path is not None:
        shutil.copyfile(trace, options.trace_path)
    kernels = read_trace(trace, skip_runs=3)
    raw = {k: kernels.time(k) for k in kernels.samples}
    limit = _OVERHEAD_BOUND * max(calib.kernel_ms, 0.001)
    target = max(e2e.median - calib.run_ms, 0.0)
    overhead = fit_overhead(list(raw.values()), target, limit)
    kernel_ms = {k: max(ms - overhead, 0.0) for k, ms in raw.items()}
    # The trace comes from one more session, which may be one of the slow ones (see SESSIONS): kernels
    # summing past the fastest session's time are scaled down to it, so a route made only of this
    # routine is priced as this variant measured. Short of it, the gap stays visible as coverage.
    scale = min(target / sum(kernel_ms.values()), 1.0) if sum(kernel_ms.values()) > 0 else 1.0
    kernel_ms = {k: ms * scale for k, ms in kernel_ms.items()}
    opt_model = onnx.load(str(optimized), load_external_data=False) if optimized.exists() else None
    att = attribute(variant, opt_model, kernel_ms, kernels.ops)
    nodes, adapts = to_graph(graph, variant, att.node_ms, att.adapts)
    return {
        "ok": True, "e2e": asdict(e2e), "nodes": nodes, "unsupported": unsupported,
        "raw_ms": sum(raw.values()), "overhead_ms": overhead, "trace_scale": scale,
        "adapts": [[t, k, ms] for (t, k), ms in adapts.items()],
    }


def _measure_adapts(
    graph: ModelGraph, threads: int, calib: Calibration, cache: ProfileCache,
    env: Mapping[str, Any], micro: dict[tuple[str, tuple[int, ...]], float], read: bool = True,
) -> Generator[Progress, None, None]:
    wanted = sorted({(kind, shape) for _, kind, shape in _adapt_sites(graph)})
    for i, (kind, shape) in enumerate(wanted):
        key = cache_key("adapt", kind=kind, shape=list(shape), **env)
        cached = cache.get(key) if read else None
        if cached is None:
            model, feeds = adapt_model(kind, shape)
            session = make_session(model, threads, f"adapt {kind}", provider=str(env["provider"]))
            yield from time_runs(session, feeds, 5, f"adapt {kind}")
            times = yield from time_runs(session, feeds, 25, f"adapt {kind}")
            cached = max(float(np.median(times)) - calib.run_ms, 0.0)
            cache.put(key, cached)
        micro[(kind, shape)] = float(cached)
        yield Progress(i + 1, len(wanted), f"adapt {kind} {'x'.join(map(str, shape))}")


def _adapt_sites(graph: ModelGraph) -> list[tuple[str, str, tuple[int, ...]]]:
    """(tensor, kind, shape) for every activation edge of a layer with a concrete float32 shape."""
    sites = []
    for node in graph.layers:
        for t in [x for x in node.inputs if x and x not in node.weights] + list(node.outputs):
            info = graph.tensors.get(t)
            if info is None or info.dtype != "float32" or info.shape is None or not all(isinstance(d, int) for d in info.shape):
                continue
            shape = tuple(int(d) for d in info.shape)
            for kind in _ADAPT_KINDS:
                if kind not in ("transpose", "layout") or len(shape) == 4:
                    sites.append((t, kind, shape))
    return sites


def _assemble(graph: ModelGraph, results: Mapping[str, dict[str, Any]], micro: Mapping[tuple[str, tuple[int, ...]], float],
              calib: Calibration, threads: int, env: Mapping[str, Any], shapes: dict[str, list[int]], complete: bool) -> Profile:
    import onnxruntime as ort

    base = results.get("fp32", {})
    nodes = base.get("nodes", {})
    layers = []
    with_ops = results.get(OPS_INT8, {}).get("nodes") or {}
    for n in graph.nodes:
        lp = LayerProfile(n.name, n.op_type, n.tunable, float(nodes.get(n.name, 0.0)))
        if n.name in with_ops:
            lp.int8_ops = float(with_ops[n.name])
        if not n.tunable:
            lp.context = {r: float(d["nodes"].get(n.name, 0.0)) for r, d in results.items()
                          if r not in ("fp32", OPS_INT8) and d.get("nodes")}
        if n.tunable:
            for routine, data in results.items():
                if routine == OPS_INT8:
                    continue
                reason = data.get("unsupported", {}).get(n.name)
                if reason is not None:
                    lp.unsupported[routine] = reason
                elif routine in results and data.get("nodes"):
                    lp.routines[routine] = float(data["nodes"].get(n.name, 0.0))
        layers.append(lp)
    adapts = [AdaptCost("", "run", calib.run_ms, "fp32")] if base else []
    for routine, data in results.items():
        adapts += [AdaptCost(t, k, float(ms), routine) for t, k, ms in data.get("adapts", [])]
    adapts += [AdaptCost(t, kind, micro[(kind, shape)]) for t, kind, shape in _adapt_sites(graph) if (kind, shape) in micro]
    e2e = Stats(**base["e2e"]) if "e2e" in base else Stats(0.0, 0.0, 0.0)
    explained = sum(lp.ms for lp in layers) + sum(a.ms for a in adapts if a.routine == "fp32")
    return Profile(
        end_to_end=e2e,
        coverage=explained / e2e.median if e2e.median > 0 else 0.0,
        layers=layers,
        adapts=adapts,
        threads=threads,
        ort_version=ort.__version__,
        provider=str(env["provider"]),
        cpu=str(env.get("cpu", "")),
        model_sha256=graph.sha256,
        input_shapes=shapes,
        variants={r: Stats(**d["e2e"]) for r, d in results.items() if "e2e" in d},
        raw_coverage=(base.get("raw_ms", 0.0) + calib.run_ms) / e2e.median if e2e.median > 0 else 0.0,
        kernel_overhead_ms=float(base.get("overhead_ms", 0.0)),
        complete=complete,
        adapt_scale=context_scale(graph, layers, adapts),
    )


def _in_thread(fn: Any, message: str) -> Generator[Progress, None, Any]:
    """Run a blocking call (session creation, quantization) in a thread, yielding progress meanwhile."""
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=1)
    future = pool.submit(fn)
    try:
        while True:
            try:
                return future.result(timeout=0.25)
            except TimeoutError:
                yield Progress(0, 0, message)
    finally:
        pool.shutdown(wait=False)

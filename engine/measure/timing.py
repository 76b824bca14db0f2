"""ONNX Runtime measurement primitives for the profiler: sessions, timed runs, micro-models, calibration.

Everything here is a generator where it can take long, so the profile job can yield progress (and be
cancelled) at least every second. Sessions always use ORT_ENABLE_ALL on the CPU provider with a
fixed thread count: the same settings for every run that is compared.

Calibration: ORT's profiler adds its own cost to every kernel it stamps (measured here: about 2 us
for a kernel on one thread, about 3 us for one using the thread pool, noisy), which overstates a
small model up to 2x. ``calibrate`` measures, once per machine/threads/ORT, ORT's fixed cost per
``run()`` call (reported as the "run" adapt) and the profiler's cost per serial kernel (a chain of
one-element ``Neg`` kernels timed with and without profiling). ``fit_overhead`` then finds, per
profiled model, the per-kernel cost that reconciles the trace with the unprofiled end-to-end median,
bounded by a multiple of the calibrated cost, so a bad attribution still shows in the coverage.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

from engine.measure.attribution import read_trace
from engine.errors import LayerLabError
from engine.progress import Progress

__all__ = ["BLOCK", "PROVIDER", "SESSIONS", "SETTLE", "Calibration", "adapt_model", "calibrate", "check_provider",
           "fit_overhead", "lowest_median", "make_session", "physical_cores", "time_in_turns", "time_runs"]

logger = logging.getLogger(__name__)

K = TypeVar("K")

PROVIDER = "CPUExecutionProvider"
_YIELD_EVERY = 0.25  # seconds between progress yields inside timing loops

# ORT's intra-op threads spin for ~25-100 ms after each run; a session run right after another one
# competed with those spinning threads (ppocr-rec, 2 threads: 23 ms one-run-each vs 9.0 ms alone), and
# dropping 2 runs did not cover the spin for a fast model (MiniLM int8_dynamic: 2 ms a run). Timing
# sessions now stop spinning when a run ends (``make_session``); taking turns in blocks and dropping
# the first runs of each block still lets the caches refill with this model's weights, while drift on
# a shared machine is spread over every session.
BLOCK = 10
SETTLE = 2
# Every latency LayerLab reports, the profiler's as bench's, is that of the fastest of SESSIONS fresh
# sessions timed in turns: one session of the digits model measured 22.6 us for its whole run, the next
# 32 us. (Six MiniLM sessions in turns agreed within 2 %, while the machine's speed moved by half between
# two such runs seconds apart: the profiler's ``_Reference`` answers that part.)
SESSIONS = 3


@dataclass(frozen=True)
class Calibration:
    """The profiler's cost per serial kernel and ORT's fixed cost per ``run()`` call, in ms."""

    kernel_ms: float
    run_ms: float


def physical_cores() -> int:
    """Physical cores (not SMT threads): distinct (physical id, core id) pairs in /proc/cpuinfo."""
    try:
        pairs, phys = set(), "0"
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "physical id":
                phys = value.strip()
            elif key.strip() == "core id":
                pairs.add((phys, value.strip()))
        if pairs:
            return len(pairs)
    except OSError:
        pass
    return max(1, (os.cpu_count() or 2))


def check_provider(provider: str, label: str) -> None:
    """LayerLabError (one line, naming what this ONNX Runtime has) unless ``provider`` is available here."""
    if provider not in ort.get_available_providers():
        raise LayerLabError(f"{label}: execution provider {provider} is not available here "
                            f"(ONNX Runtime {ort.__version__} has: {', '.join(ort.get_available_providers())})")


def make_session(
    model: onnx.ModelProto | bytes,
    threads: int,
    label: str,
    profile_prefix: str | None = None,
    optimized_path: str | None = None,
    provider: str = PROVIDER,
    spin: bool = True,
) -> ort.InferenceSession:
    """An ORT session as users deploy it (ORT_ENABLE_ALL, CPU unless ``provider`` names another execution
    provider, with CPU as its fallback); LayerLabError when ORT refuses the model or lacks the provider.
    ``spin=False``: intra-op threads sleep at once after a run instead of spinning (sessions run in turn,
    like a route's parts, would otherwise compete with the previous one's spinning threads)."""
    check_provider(provider, label)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3  # the NCHWc serialisation warning is expected
    # ORT's intra-op workers spin 2^20 pauses after a run ends (a core kept busy ~100 ms after a MiniLM run at
    # load 17, seen in the process's CPU time): a session timed next shares the cores with them. Interleaved
    # timing switches sessions every block, so a fast model (MiniLM int8_dynamic, 2 ms: a block is 20 ms) was
    # timed beside the previous session's spinning worker (bench 3.4 ms, p10 2.05, vs 2.16 alone). Stopping
    # the spin when a run ends (it still spins within a run) costs a model timed alone nothing measurable
    # (MiniLM and digits, 5 alternating rounds: median ratios 1.001 and 1.005).
    so.add_session_config_entry("session.force_spinning_stop", "1")
    if not spin:
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if profile_prefix:
        so.enable_profiling = True
        so.profile_file_prefix = profile_prefix
    if optimized_path:
        so.optimized_model_filepath = optimized_path
    data = model if isinstance(model, bytes) else model.SerializeToString()
    try:
        return ort.InferenceSession(data, so, providers=[provider] if provider == PROVIDER else [provider, PROVIDER])
    except Exception as exc:  # noqa: BLE001 - ORT raises its own untyped errors (Fail, InvalidGraph ...)
        raise LayerLabError(f"{label}: ONNX Runtime cannot load the model ({_first_line(exc)})") from None


def time_runs(
    session: ort.InferenceSession, feeds: dict[str, np.ndarray], count: int, label: str
) -> Generator[Progress, None, list[float]]:
    """Run ``count`` times; returns each run's wall time in ms. Yields progress about 4x a second."""
    times: list[float] = []
    last = time.monotonic()
    for i in range(count):
        start = time.perf_counter()
        try:
            session.run(None, feeds)
        except Exception as exc:  # noqa: BLE001 - ORT's runtime errors are untyped
            raise LayerLabError(f"{label}: ONNX Runtime failed to run the model ({_first_line(exc)})") from None
        times.append((time.perf_counter() - start) * 1e3)
        if time.monotonic() - last > _YIELD_EVERY:
            last = time.monotonic()
            yield Progress(i + 1, count, f"{label}: run {i + 1}/{count}")
    return times


def time_in_turns(pool: Mapping[K, ort.InferenceSession], feeds: dict[str, np.ndarray], repeats: int,
                  warmup: int, label: Callable[[K], str] = str) -> Generator[Progress, None, dict[K, list[float]]]:
    """Per session, ``repeats`` counted run times (ms), taken in turns: ``BLOCK`` runs of each session in
    turn, the first ``SETTLE`` of every block not counted (the caches still hold the previous model)."""
    for key, s in pool.items():
        yield from time_runs(s, feeds, warmup, label(key))
    times: dict[K, list[float]] = {key: [] for key in pool}
    counted = BLOCK - SETTLE
    while min(len(t) for t in times.values()) < repeats:
        for key, s in pool.items():
            runs = yield from time_runs(s, feeds, SETTLE + min(counted, repeats - len(times[key])), label(key))
            times[key] += runs[SETTLE:]
        yield Progress(min(len(t) for t in times.values()), repeats, "timing (in turns)")
    return times


def lowest_median(times: Mapping[tuple[str, int], list[float]]) -> dict[str, list[float]]:
    """Per name, the runs of its session (``(name, k)``) with the lowest median: see ``SESSIONS``."""
    best: dict[str, list[float]] = {}
    for (name, _), runs in times.items():
        if name not in best or float(np.median(runs)) < float(np.median(best[name])):
            best[name] = runs
    return best


def _neg_chain(length: int, size: int) -> onnx.ModelProto:
    nodes, x = [], "x"
    for i in range(length):
        nodes.append(helper.make_node("Neg", [x], [f"t{i}"], name=f"neg{i}"))
        x = f"t{i}"
    graph = helper.make_graph(
        nodes, "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [size])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, [size])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def calibrate(threads: int, tmp: Path) -> Generator[Progress, None, Calibration]:
    """Measure ORT's fixed cost per run and the profiler's cost per (serial) kernel: see the module docstring."""
    length, repeats, size = 32, 60, 1
    feeds = {"x": np.ones(size, np.float32)}
    medians = []
    for n in (1, length):
        session = make_session(_neg_chain(n, size), threads, "calibration")
        yield from time_runs(session, feeds, 10, "calibration")
        medians.append(float(np.median((yield from time_runs(session, feeds, repeats, "calibration")))))
    per_kernel = max((medians[1] - medians[0]) / (length - 1), 0.0)
    prof = make_session(_neg_chain(length, size), threads, "calibration", profile_prefix=str(tmp / "calibration"))
    yield from time_runs(prof, feeds, 25, "calibration")
    kernels = read_trace(prof.end_profiling(), skip_runs=5)
    raw = sorted(ms for samples in kernels.samples.values() for ms, _ in samples)
    cut = len(raw) // 10
    kernel_ms = max(float(np.mean(raw[cut : len(raw) - cut])) - per_kernel, 0.0)
    return Calibration(kernel_ms, max(medians[0] - per_kernel, 0.0))


def fit_overhead(raw_ms: Sequence[float], target_ms: float, limit_ms: float) -> float:
    """The per-kernel profiler cost ``c`` in [0, limit] with sum(max(raw - c, 0)) closest to ``target_ms``."""
    raw = np.asarray(raw_ms, dtype=float)
    if raw.size == 0 or raw.sum() <= target_ms:
        return 0.0
    lo, hi = 0.0, float(limit_ms)
    if np.maximum(raw - hi, 0).sum() >= target_ms:
        return hi
    for _ in range(50):  # bisection: the sum falls as c grows
        mid = (lo + hi) / 2
        if np.maximum(raw - mid, 0).sum() > target_ms:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def adapt_model(kind: str, shape: Sequence[int]) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """A one-node model and its input for an adapt: quantize, dequantize, cast (fp32->fp16), transpose
    (NCHW->NHWC, uint8) or layout (the same in fp32)."""
    shape = list(shape)
    scale = helper.make_tensor("s", TensorProto.FLOAT, [], [0.05])
    zero = helper.make_tensor("z", TensorProto.UINT8, [], [128])
    rng = np.random.default_rng(0)
    if kind == "quantize":
        node, in_t, out_t, inits = helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"]), TensorProto.FLOAT, TensorProto.UINT8, [scale, zero]
    elif kind == "dequantize":
        node, in_t, out_t, inits = helper.make_node("DequantizeLinear", ["x", "s", "z"], ["y"]), TensorProto.UINT8, TensorProto.FLOAT, [scale, zero]
    elif kind == "cast":
        node, in_t, out_t, inits = helper.make_node("Cast", ["x"], ["y"], to=TensorProto.FLOAT16), TensorProto.FLOAT, TensorProto.FLOAT16, []
    elif kind in ("transpose", "layout"):  # NCHW -> NHWC: uint8 for int8 convs, fp32 as a layout change
        perm = [0] + list(range(2, len(shape))) + [1]
        elem = TensorProto.UINT8 if kind == "transpose" else TensorProto.FLOAT
        node, in_t, out_t, inits = helper.make_node("Transpose", ["x"], ["y"], perm=perm), elem, elem, []
        shape_out = [shape[p] for p in perm]
    else:
        raise LayerLabError(f"unknown adapt kind {kind!r}")
    out_shape = shape_out if kind in ("transpose", "layout") else shape
    node.name = kind
    graph = helper.make_graph(
        [node], kind,
        [helper.make_tensor_value_info("x", in_t, shape)],
        [helper.make_tensor_value_info("y", out_t, out_shape)],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    data = rng.random(shape).astype(np.float32) if in_t == TensorProto.FLOAT else rng.integers(0, 255, shape).astype(np.uint8)
    return model, {"x": data}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]

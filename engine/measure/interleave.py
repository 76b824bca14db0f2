"""Several models timed side by side in one run, taking turns, so drift on a shared machine hits all alike.

``bench`` and ``tune`` use it to compare a variant with fp32: every speedup LayerLab shows is timed
this way, never against a baseline measured at another moment.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import onnx

from engine.measure.partition import PartitionedModel
from engine.measure.profiler import Stats
from engine.measure import timing  # as a module: tests replace its functions
from engine.progress import Job, Progress

__all__ = ["interleaved_latency", "BLOCK", "SETTLE", "SESSIONS"]

logger = logging.getLogger(__name__)


# ORT's intra-op threads spin for ~25-100 ms after each run; a session run right after another one
# competed with those spinning threads (ppocr-rec, 2 threads: 23 ms one-run-each vs 9.0 ms alone), and
# dropping 2 runs did not cover the spin for a fast model (MiniLM int8_dynamic: 2 ms a run). Timing
# sessions now stop spinning when a run ends (``timing.make_session``); taking turns in blocks and
# dropping the first runs of each block still lets the caches refill with this model's weights,
# while drift on a shared machine is spread over every row.
BLOCK = 10
SETTLE = 2
# Where ORT's threads land is fixed for a session's life and differs between sessions: one session of
# the digits model measures 22.6 us for good, the next 32 us. Each model runs in SESSIONS fresh
# sessions and reports the one with the lowest median, so a comparison is not decided by placement.
SESSIONS = 3


def interleaved_latency(models: dict[str, onnx.ModelProto | PartitionedModel], feeds: dict[str, np.ndarray], threads: int,
                        repeats: int, warmup: int = 5, sessions: int = SESSIONS,
                        provider: str | None = None) -> Job[dict[str, Stats]]:
    """Per model, latency over ``repeats`` counted runs in each of ``sessions`` sessions, taken in turns:
    ``BLOCK`` runs of each session in turn, the first ``SETTLE`` of every block not counted (caches still
    hold the previous model). A model's stats are those of its session with the lowest median. A
    ``PartitionedModel`` (a mixed-provider route) runs its parts on their providers, timed like a model."""
    extra = {"provider": provider} if provider else {}  # None: the profiler's provider (CPU)
    pool = {(name, k): _session(m, threads, name, extra) for name, m in models.items() for k in range(max(sessions, 1))}
    for (name, _), s in pool.items():
        yield from timing.time_runs(s, feeds, warmup, name)
    times: dict[tuple[str, int], list[float]] = {key: [] for key in pool}
    counted = BLOCK - SETTLE
    while min(len(t) for t in times.values()) < repeats:
        for key, s in pool.items():
            runs = yield from timing.time_runs(s, feeds, SETTLE + min(counted, repeats - len(times[key])), key[0])
            times[key] += runs[SETTLE:]
        yield Progress(min(len(t) for t in times.values()), repeats, "timing (in turns)")
    best: dict[str, Stats] = {}
    for (name, _), runs in times.items():
        stats = Stats.of(runs)
        if name not in best or stats.median < best[name].median:
            best[name] = stats
    return best


def _session(model: onnx.ModelProto | PartitionedModel, threads: int, name: str, extra: dict) -> Any:
    if isinstance(model, PartitionedModel):
        return model.session(threads, name)
    return timing.make_session(model, threads, name, **extra)

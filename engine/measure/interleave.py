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
from engine.progress import Job

__all__ = ["interleaved_latency", "BLOCK", "SETTLE", "SESSIONS"]

logger = logging.getLogger(__name__)


# Re-exported: the turn-taking and the session rule live in ``engine.measure.timing``, shared with the profiler.
BLOCK, SETTLE, SESSIONS = timing.BLOCK, timing.SETTLE, timing.SESSIONS


def interleaved_latency(models: dict[str, onnx.ModelProto | PartitionedModel], feeds: dict[str, np.ndarray], threads: int,
                        repeats: int, warmup: int = 5, sessions: int = SESSIONS,
                        provider: str | None = None) -> Job[dict[str, Stats]]:
    """Per model, latency over ``repeats`` counted runs in each of ``sessions`` sessions, taken in turns:
    ``BLOCK`` runs of each session in turn, the first ``SETTLE`` of every block not counted (caches still
    hold the previous model). A model's stats are those of its session with the lowest median. A
    ``PartitionedModel`` (a mixed-provider route) runs its parts on their providers, timed like a model."""
    extra = {"provider": provider} if provider else {}  # None: the profiler's provider (CPU)
    pool = {(name, k): _session(m, threads, name, extra) for name, m in models.items() for k in range(max(sessions, 1))}
    times = yield from timing.time_in_turns(pool, feeds, repeats, warmup, label=lambda key: key[0])
    return {name: Stats.of(runs) for name, runs in timing.lowest_median(times).items()}


def _session(model: onnx.ModelProto | PartitionedModel, threads: int, name: str, extra: dict) -> Any:
    if isinstance(model, PartitionedModel):
        return model.session(threads, name)
    return timing.make_session(model, threads, name, **extra)

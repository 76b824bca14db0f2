"""Is a cached profile still true of this machine now? A quick fp32 timing decides.

A profile is cached by everything its times depend on that can be named (model, shapes, inputs,
ORT, provider, threads, CPU), but not by the load the machine was under: a profile cached during a
busy hour priced routes measured on a quiet one at +110 %. So the fp32 whole-model median is
stored with the profile (it is part of the fp32 variant's entry), and before a cached profile is
reused the fp32 model is timed again for a few runs. When the two differ by more than
``TOLERANCE`` the cached times are not used: everything is measured again (calibration, every
routine, adapts) and replaces them. Either way the profile says which, and by how much.

The quick timing is a function parameter (``measure``), so tests decide what "now" measures.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import onnx

__all__ = ["QUICK_RUNS", "TOLERANCE", "Freshness", "Measure", "check", "quick_fp32_ms"]

logger = logging.getLogger(__name__)

#: How far the fp32 median now may be from the cached one (as a share of it) for the cache to be reused.
TOLERANCE = 0.2
#: Timed runs of the quick check (after 3 warm-up runs).
QUICK_RUNS = 10

#: (model, feeds, threads, provider) -> the fp32 median in ms now.
Measure = Callable[[onnx.ModelProto, Mapping[str, np.ndarray], int, str], float]


@dataclass(frozen=True)
class Freshness:
    """The cached fp32 median beside the one measured now, and what follows from them."""

    cached_ms: float
    now_ms: float
    tolerance: float = TOLERANCE

    @property
    def change(self) -> float:
        """now / cached - 1 (+1.10 = 110 % slower now)."""
        return self.now_ms / self.cached_ms - 1.0 if self.cached_ms > 0 else float("inf")

    @property
    def fits(self) -> bool:
        return abs(self.change) <= self.tolerance

    def note(self) -> str:
        """One line for the profile's output."""
        both = f"fp32 {self.now_ms:.3f} ms now, {self.cached_ms:.3f} ms when cached ({self.change:+.0%}"
        if self.fits:
            return f"reused from the cache: {both}, within ±{self.tolerance:.0%})"
        return f"measured again: {both}, beyond ±{self.tolerance:.0%}: the machine's load changed)"


def check(cached_ms: float, model: onnx.ModelProto, feeds: Mapping[str, np.ndarray], threads: int, provider: str,
          measure: Measure | None = None, tolerance: float = TOLERANCE) -> Freshness:
    """Time the fp32 model now with ``measure`` (default ``quick_fp32_ms``) and compare with ``cached_ms``."""
    now = (measure or quick_fp32_ms)(model, feeds, threads, provider)
    fresh = Freshness(float(cached_ms), float(now), tolerance)
    (logger.info if fresh.fits else logger.warning)("profile cache: %s", fresh.note())
    return fresh


def quick_fp32_ms(model: onnx.ModelProto, feeds: Mapping[str, np.ndarray], threads: int, provider: str) -> float:
    """The fp32 median over ``QUICK_RUNS`` runs, with the profiler's session settings and its session rule
    (the fastest of ``timing.SESSIONS``, as the cached median was taken)."""
    from engine.measure.timing import SESSIONS, lowest_median, make_session, time_in_turns
    from engine.progress import run

    pool = {("fp32", k): make_session(model, threads, "cache check", provider=provider) for k in range(SESSIONS)}
    times = run(time_in_turns(pool, dict(feeds), QUICK_RUNS, 3, label=lambda _: "cache check"))
    return float(np.median(lowest_median(times)["fp32"]))

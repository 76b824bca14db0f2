"""The profile as plain typed values: latency stats, per-layer routine times and adapt costs.

Kept apart from the profiler that fills them, so prediction, DPRS and the session file read them
without importing the measuring code.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from engine.measure.timing import PROVIDER

__all__ = ["AdaptCost", "LayerProfile", "Profile", "Stats"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Stats:
    """Latency over repeats, in ms."""

    median: float
    p10: float
    p90: float

    @staticmethod
    def of(times: Sequence[float]) -> Stats:
        a = np.asarray(times, dtype=float)
        return Stats(float(np.median(a)), float(np.percentile(a, 10)), float(np.percentile(a, 90)))


@dataclass
class LayerProfile:
    """One node: fp32 time in the deployed model; for layers, time per routine and why some cannot run."""

    name: str
    op: str
    tunable: bool
    ms: float
    routines: dict[str, float] = field(default_factory=dict)
    unsupported: dict[str, str] = field(default_factory=dict)
    int8_ops: float | None = None  # time in the model with every layer and op in int8 (plans with "ops": "int8")
    # Ops only: time in each routine's whole-model run, where the layers around the op ran that routine
    # (fusions change with them: a bias Add fused into an fp32 MatMul runs on its own after an int8 one).
    context: dict[str, float] = field(default_factory=dict)


@dataclass
class AdaptCost:
    """A conversion on ``tensor``: seen in a routine's run (``routine`` set) or measured on a micro-model (None)."""

    tensor: str
    kind: str
    ms: float
    routine: str | None = None


@dataclass
class Profile:
    """Everything measured for one model on this machine; ``to_json`` gives plain JSON types."""

    end_to_end: Stats
    coverage: float
    layers: list[LayerProfile]
    adapts: list[AdaptCost]
    threads: int
    ort_version: str
    provider: str = PROVIDER
    cpu: str = ""
    model_sha256: str = ""
    input_shapes: dict[str, list[int]] = field(default_factory=dict)
    variants: dict[str, Stats] = field(default_factory=dict)  # end-to-end of each all-layers-in-routine model
    raw_coverage: float = 0.0  # the profiler's raw kernel sum / end-to-end median, before its cost is removed
    kernel_overhead_ms: float = 0.0  # the profiler cost removed from each fp32 kernel
    complete: bool = True
    # In-context / micro-model cost of each adapt kind, from the all-int8 run (see ``engine.measure.predict.context_scale``).
    adapt_scale: dict[str, float] = field(default_factory=dict)
    # Where it was measured: {} for this machine; a remote target's name, address, CPU, ORT and providers.
    target: dict[str, Any] = field(default_factory=dict)
    # What it was timed on (engine.optimize.timing_feeds): the source as said to the user, and a hash of the
    # inputs ("" for generated inputs): tune reuses a profile only when it was timed on the inputs tune times on.
    feeds: str = ""
    feeds_digest: str = ""
    # Whether cached times were reused or measured again, and why (engine.measure.freshness); "" when nothing was cached.
    cache: str = ""
    # Crossing a session border between execution providers: "SRC>DST" -> [fixed ms, ms per MB], a fit
    # of measured points (``engine.measure.provider_tables``); priced by ``engine.measure.provider_costs``.
    crossings: dict[str, list[float]] = field(default_factory=dict)
    # provider -> the factor its segments' micro-model times were scaled by to match its route in context.
    provider_scale: dict[str, float] = field(default_factory=dict)

    def layer(self, name: str) -> LayerProfile:
        return next(lp for lp in self.layers if lp.name == name)

    def adapt_ms(self, tensor: str, kind: str) -> float | None:
        """Cost of ``kind`` on ``tensor``: micro-measured, times the kind's in-context scale; None when not measured."""
        ms = next((a.ms for a in self.adapts if a.routine is None and a.tensor == tensor and a.kind == kind), None)
        return None if ms is None else ms * self.adapt_scale.get(kind, 1.0)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> Profile:
        d = dict(data)
        d["end_to_end"] = Stats(**d["end_to_end"])
        d["layers"] = [LayerProfile(**lp) for lp in d["layers"]]
        d["adapts"] = [AdaptCost(**a) for a in d["adapts"]]
        d["variants"] = {k: Stats(**v) for k, v in d.get("variants", {}).items()}
        return Profile(**d)

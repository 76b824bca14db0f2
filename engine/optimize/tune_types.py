"""The tune's options and results: what a user asks of ``engine.optimize.tune.tune_job`` and what it returns
(each round, the chosen route, the model). Kept apart from the pipeline so the CLI, the window's jobs
and the session file read them without the pipeline's imports."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import onnx

from engine.errors import SettingsError
from engine.evaluate.sensitivity import Sensitivity
from engine.evaluate.structural import is_structural
from engine.measure.profiler import Profile, ProfileOptions, Stats
from engine.measure.providers import CPU, routine_on
from engine.model.plan import Plan
from engine.model.session import CalibrationRecord
from engine.optimize import dprs
from engine.optimize.tune_providers import check_providers

__all__ = ["Round", "TuneOptions", "TuneResult"]


@dataclass(frozen=True)
class TuneOptions:
    """Limits and effort. ``max_drop`` is in the metric's units (0.01 = one point of accuracy)."""

    max_drop: float = 0.01
    memory_limit: int | None = None
    threads: int | None = None
    max_rounds: int = 5
    max_fill: int = 4  # rounds that add layers while the measured drop is under max_drop
    # fp16 is left out by default: ORT has almost no fp16 CPU kernels (it casts and runs fp32), and its
    # in-context times are attribution noise that lures DPRS into cast-heavy routes; add it for GPUs.
    routines: tuple[str, ...] = ("fp32", "int8", "int8_dynamic")
    repeats: int = 30  # timed runs per latency measurement
    profile: ProfileOptions | None = None  # None: ProfileOptions(threads=threads, routines=routines)
    # A remote target (engine.measure.remote.RemoteTarget): profile and latencies come from it, so DPRS
    # works on the target's routine tables; evaluation stays here. None: this machine.
    target: Any = None
    executor: Any = None  # engine.evaluate.executors.Executor for the sweep; None: in this process
    # int8 calibration methods the sweep tries per layer (engine.passes.calibration.METHODS); each int8
    # layer of the route uses the one with its smallest measured drop (same speed, so DPRS needs no choice)
    calibration: tuple[str, ...] = ("minmax",)
    # Also offer structural routines (prune:0.25/0.5 per prune group, rank:0.25/0.5 of break-even):
    # the sweep measures their drops, each variant is timed end to end (engine.optimize.structural).
    structural: bool = False
    # per-layer int8 methods the sweep tries on top (engine.passes.layer_variants.INT8_METHODS: "cle",
    # "bias_correction", "smoothquant"); the route's int8 layers use the variant with the smallest measured drop
    int8_methods: tuple[str, ...] = ()
    # Other execution providers whose routine tables DPRS may choose from per layer (engine.optimize.tune_providers)
    providers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_providers(self.providers, self.structural)
        if not (self.max_drop >= 0 and math.isfinite(self.max_drop)):
            raise SettingsError(f"max_drop {self.max_drop!r}: must be a number >= 0")
        if self.memory_limit is not None and self.memory_limit <= 0:
            raise SettingsError(f"memory_limit {self.memory_limit!r}: must be a positive number of bytes")
        if self.max_fill < 0:
            raise SettingsError(f"max_fill {self.max_fill!r}: must be 0 or more")
        if self.max_rounds < 1:
            raise SettingsError(f"max_rounds {self.max_rounds!r}: must be at least 1")
        if self.threads is not None and self.threads < 1:
            raise SettingsError(f"threads {self.threads!r}: must be at least 1")


@dataclass
class Round:
    """One solve-build-measure round."""

    routines: dict[str, str]
    ms_predicted: float
    ms_measured: Stats
    metric: float
    drop_predicted: float
    weight_bytes: int
    reverted: list[str] = field(default_factory=list)  # layers pinned to fp32 after this round
    added: list[str] = field(default_factory=list)  # layers this round added to fill the budget
    ops: str = "fp32"  # the plan's "ops": "int8" when the ops between layers were quantized too

    def to_json(self) -> dict[str, Any]:
        return {
            "routines": dict(self.routines), "ms_predicted": self.ms_predicted, "ms_measured": self.ms_measured.median,
            "ms_p10": self.ms_measured.p10, "ms_p90": self.ms_measured.p90, "metric": self.metric,
            "drop_predicted": self.drop_predicted, "weight_bytes": self.weight_bytes, "reverted": list(self.reverted),
            "ops": self.ops, "added": list(self.added),
        }


@dataclass
class TuneResult:
    """Baseline, the chosen route (predicted and measured), every round and the final model."""

    baseline_ms: Stats
    baseline_metric: float
    route: dprs.Route
    ms_predicted: float
    ms_measured: Stats
    metric: float
    rounds: list[Round]
    model: onnx.ModelProto
    plan: Plan
    profile: Profile
    sensitivity: Sensitivity
    feasible: bool = True
    note: str = ""
    calibration: CalibrationRecord | None = None  # where int8 calibration came from (engine.evaluate.calibration)
    reused: list[str] = field(default_factory=list)  # "profile: reused", "sensitivity: measured (why)"
    feeds: str = ""  # what every latency was timed on (engine.optimize.timing_feeds)

    @property
    def routines(self) -> dict[str, str]:
        return dict(self.route.routines)

    def to_json(self) -> dict[str, Any]:
        return {
            "baseline": {"ms": self.baseline_ms.median, "ms_p10": self.baseline_ms.p10, "ms_p90": self.baseline_ms.p90,
                         "metric": self.baseline_metric},
            "route": {"ms_predicted": self.ms_predicted, "ms_measured": self.ms_measured.median,
                      "ms_p10": self.ms_measured.p10, "ms_p90": self.ms_measured.p90, "metric": self.metric,
                      "drop": self.baseline_metric - self.metric, "routines": self.layer_routines(),
                      "ops": self.plan.ops},
            "rounds": len(self.rounds),
            "round_details": [r.to_json() for r in self.rounds],
            "feasible": self.feasible,
            "note": self.note,
            "calibration": self.calibration.source if self.calibration else "",
            "calibration_random": bool(self.calibration and self.calibration.random),
            "reused": list(self.reused),
            "timing_feeds": self.feeds,
        }

    def layer_routines(self) -> dict[str, str]:
        """The routine of every layer (ops left out: they always run fp32); a pruned or factored layer's is its
        structural routine (prune:r, rank:f), the plan's precision otherwise."""
        chosen = self.route.routines
        return {n: chosen[n] if is_structural(chosen.get(n, "")) else routine_on(s.precision or "fp32", s.provider or CPU)
                for n, s in self.plan.layers.items()}

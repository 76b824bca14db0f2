"""The session: everything LayerLab knows about one model, with one change event per field.

The GUI edits the plan through undoable commands that call ``Session.set_plan``; the session emits
``events.plan`` (a psygnal signal, see ``engine.model.events``); the worker runs engine jobs; their results land through ``set_profile``,
``set_sensitivity``, ``set_route`` and ``add_trial``; views repaint from the session. Nothing here
imports Qt or runs ONNX Runtime.

Field values are the engine's plain typed results (``Plan``, ``Profile``, ``Sensitivity``,
``Route``, ``Trial``), each with ``to_json``/``from_json`` so the session file is JSON, never pickle.
Saving and loading live in ``engine.io.session_file``.

An evaluator is a script: it runs only when ``evaluator_trusted`` is true. The user's own choice
(``set_evaluator``) is trusted; a session loaded from a file is trusted only when the evaluator is
in the local trust list. Code that runs an evaluator calls ``require_trusted_evaluator()`` first.
"""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Sequence
from typing import Any

from engine.errors import UntrustedEvaluatorError
from engine.model.events import SessionEvents, batched

__all__ = ["CalibrationRecord", "Session", "Trial", "Measurement"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Measurement:
    """A measured (or predicted) end-to-end result of one model variant."""

    ms: float | None = None
    ms_p10: float | None = None
    ms_p90: float | None = None
    metric: float | None = None
    bytes: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"ms": self.ms, "ms_p10": self.ms_p10, "ms_p90": self.ms_p90, "metric": self.metric, "bytes": self.bytes}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Measurement":
        return cls(**{k: data.get(k) for k in ("ms", "ms_p10", "ms_p90", "metric", "bytes")})


@dataclass(frozen=True)
class Trial:
    """One configuration the user (or tune) tried: the plan's JSON, predicted and measured results."""

    plan: dict[str, Any]
    routines: dict[str, str]
    predicted: Measurement
    measured: Measurement = field(default_factory=Measurement)
    label: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "plan": self.plan,
            "routines": self.routines,
            "predicted": self.predicted.to_json(),
            "measured": self.measured.to_json(),
            "label": self.label,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Trial":
        return cls(
            plan=dict(data.get("plan") or {}),
            routines=dict(data.get("routines") or {}),
            predicted=Measurement.from_json(data.get("predicted") or {}),
            measured=Measurement.from_json(data.get("measured") or {}),
            label=str(data.get("label", "")),
        )


@dataclass(frozen=True)
class CalibrationRecord:
    """Where the int8 calibration of the session's variants came from (``engine.evaluate.calibration``):
    the evaluator's ``calibration()``, samples split off from its scored ones, a given file, or random
    inputs (``random``: the report shows a warning); how many inputs, and their shapes per input name."""

    source: str
    random: bool = False
    count: int = 0
    shapes: dict[str, list[list[int]]] = field(default_factory=dict)  # input -> its distinct shapes

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "random": self.random, "count": self.count,
                "shapes": {k: [list(s) for s in v] for k, v in self.shapes.items()}}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "CalibrationRecord":
        shapes = data.get("shapes") or {}
        return cls(str(data["source"]), bool(data.get("random", False)), int(data.get("count") or 0),
                   {str(k): [[int(d) for d in s] for s in v] for k, v in shapes.items()})


class Session:
    """All state for one model. Setters replace a field and emit its signal; views never mutate fields.

    ``events`` is a ``SessionEvents`` (psygnal): ``session.events.plan.connect(callback)``.
    ``batch()`` holds the signals during a compound edit and emits each changed field once at the end.
    """

    FIELDS = (
        "model",
        "evaluator",
        "plan",
        "profile",
        "sensitivity",
        "route",
        "baseline",
        "current",
        "trials",
        "calibration",
        "selection",
        "notes",
        "dirty",
    )

    def __init__(self) -> None:
        self.events = SessionEvents()
        self.model_path: Path | None = None
        self.input_shapes: dict[str, tuple[int, ...]] = {}
        self.shape_notes: list[str] = []  # where the input shapes came from (engine.ir.resolve's sources)
        self.graph: Any = None  # engine.ir.graph.ModelGraph, rebuilt from model_path, never saved
        self.evaluator_path: Path | None = None
        self.evaluator_trusted = True  # False for an evaluator named by a session file nobody here agreed to
        self.machine: dict[str, Any] | None = None  # where profile was measured; None = this machine
        self.plan: Any = None  # engine.model.plan.Plan
        self.profile: Any = None  # engine.measure.profiler.Profile
        self.sensitivity: Any = None  # engine.evaluate.sensitivity.Sensitivity
        self.route: Any = None  # engine.optimize.dprs.Route (predicted, from cached tables)
        self.baseline: Measurement | None = None  # fp32, measured
        self.current: Measurement | None = None  # the current plan's variant, measured
        self.trials: list[Trial] = []
        self.calibration: CalibrationRecord | None = None  # how the measured int8 variants were calibrated
        self.selection: tuple[str, ...] = ()
        self.notes: str = ""
        self.path: Path | None = None  # where the session file lives
        self.dirty = False

    def batch(self) -> AbstractContextManager[None]:
        """``with session.batch(): ...``: every field set inside is announced once, when the block ends."""
        return batched(self.events, self.FIELDS)

    # --- setters: one per field, each emits ------------------------------------------------

    def _set(self, name: str, value: Any, *, attr: str | None = None, dirty: bool = True) -> None:
        setattr(self, attr or name, value)
        getattr(self.events, name).emit(value)
        if dirty and not self.dirty:
            self.dirty = True
            self.events.dirty.emit(True)

    def set_model(self, path: Path, graph: Any, input_shapes: dict[str, tuple[int, ...]] | None = None,
                  shape_notes: Sequence[str] = ()) -> None:
        """A new model: results that belonged to the old one are cleared first. ``shape_notes``: where the
        input shapes came from (given with --input, the evaluator's most frequent shape, batch 1 ...)."""
        self.model_path = Path(path)
        self.input_shapes = dict(input_shapes or {})
        self.shape_notes = [str(n) for n in shape_notes if n]
        with self.batch():  # views see the new model with the old results already gone
            for name in ("profile", "sensitivity", "route", "baseline", "current", "calibration"):
                self._set(name, None)
            self._set("trials", [])
            self._set("selection", ())
            self._set("model", graph, attr="graph")

    def set_evaluator(self, path: Path | None, *, trusted: bool = True) -> None:
        """The user picked ``path`` (trusted); ``trusted=False`` when it came from someone else's file."""
        self.evaluator_trusted = trusted
        self._set("evaluator", None if path is None else Path(path), attr="evaluator_path")

    def require_trusted_evaluator(self) -> Path:
        """The evaluator path; ``UntrustedEvaluatorError`` unless the user agreed to run it."""
        if self.evaluator_path is None:
            raise UntrustedEvaluatorError("this session has no evaluator")
        if not self.evaluator_trusted:
            raise UntrustedEvaluatorError(
                f"{self.evaluator_path}: evaluator comes from a session file; run it only after the user agrees"
            )
        return self.evaluator_path

    def set_plan(self, plan: Any) -> None:
        self._set("plan", plan)

    def set_profile(self, profile: Any) -> None:
        """A profile measured here: the session's machine becomes this one."""
        self.machine = None
        self._set("profile", profile)

    def set_sensitivity(self, sensitivity: Any) -> None:
        self._set("sensitivity", sensitivity)

    def set_route(self, route: Any) -> None:
        self._set("route", route)

    def set_baseline(self, measurement: Measurement | None) -> None:
        self._set("baseline", measurement)

    def set_current(self, measurement: Measurement | None) -> None:
        self._set("current", measurement)

    def add_trial(self, trial: Trial) -> None:
        self._set("trials", [*self.trials, trial])

    def set_calibration(self, record: CalibrationRecord | None) -> None:
        """Where the int8 calibration of the variants measured in this session came from."""
        self._set("calibration", record)

    def set_selection(self, names: tuple[str, ...]) -> None:
        """Selection is view state: it is announced but does not make the session dirty."""
        self._set("selection", tuple(names), dirty=False)

    def set_notes(self, notes: str) -> None:
        self._set("notes", notes)

    def mark_saved(self, path: Path) -> None:
        self.path = Path(path)
        self.dirty = False
        self.events.dirty.emit(False)

"""One calibration for every int8 variant LayerLab builds, and the one function that builds them.

Sensitivity, Measure, Tune, Export, ``apply``, ``bench`` and ``tune -o`` all calibrate int8 on the
same inputs: the evaluator's ``calibration()``, else the samples split off from its scored ones
(``engine.evaluate.contract.split_indices``), else an explicit file (``apply --calib``). Only when
none of these exists are the inputs random, and then a warning says so: one stderr line on the CLI
(logged once per source), a note on the result for the window and the report.

The same plan with the same calibration builds the same bytes: what Export writes is what Measure
and Tune measured.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from engine.evaluate.contract import Evaluator
from engine.ir.graph import ModelGraph
from engine.model.plan import Plan
from engine.model.session import CalibrationRecord
from engine.passes.manager import ApplyResult, apply_plan

__all__ = ["RANDOM_WARNING", "Calibration", "build_variant", "calibration_for", "describe", "uses_int8"]

logger = logging.getLogger(__name__)

#: What every channel says when int8 calibrates on random inputs.
RANDOM_WARNING = ("int8 calibrated on random inputs: accuracy will suffer "
                  "(give the evaluator a calibration() or at least 4 samples, or apply --calib)")

_RANDOM_COUNT = 4
_warned: set[str] = set()


@dataclass(frozen=True)
class Calibration:
    """The inputs int8 calibrates on and where they come from."""

    samples: list[dict[str, np.ndarray]] = field(repr=False)
    source: str
    random: bool = False

    @property
    def warning(self) -> str | None:
        return RANDOM_WARNING if self.random else None

    def record(self) -> CalibrationRecord:
        """What a session and its report keep of it: the source, whether random, how many inputs, their shapes."""
        shapes: dict[str, list[list[int]]] = {}
        for sample in self.samples:
            for name, array in sample.items():
                seen = shapes.setdefault(name, [])
                if list(np.shape(array)) not in seen:
                    seen.append(list(np.shape(array)))
        return CalibrationRecord(self.source, self.random, len(self.samples), shapes)


def calibration_for(graph: ModelGraph, evaluator: Evaluator | None = None,
                    samples: Sequence[dict[str, np.ndarray]] | None = None, source: str = "") -> Calibration:
    """The calibration of ``graph``: ``samples`` when given (``source`` names them), else the evaluator's
    (``Evaluator.calibration``: never a scored sample), else random inputs at the graph's shapes (warned)."""
    if samples:
        return Calibration(list(samples), source or f"{len(samples)} given inputs")
    if evaluator is not None:
        own = evaluator.calibration()
        if own:
            return Calibration(list(own), evaluator.calibration_source)
    from engine.passes.precision import random_calibration

    why = evaluator.calibration_source if evaluator is not None else "random inputs (no evaluator)"
    if why not in _warned:  # one stderr line per source, not one per variant
        _warned.add(why)
        logger.warning("%s: %s", graph.label, RANDOM_WARNING)
    return Calibration(random_calibration(graph.model, _RANDOM_COUNT), why, random=True)  # at the graph's shapes


def build_variant(graph: ModelGraph, plan: Plan, calibration: Calibration) -> ApplyResult:
    """``apply_plan`` with ``calibration``; the random-calibration warning joins the notes when int8 is built."""
    result = apply_plan(graph, plan, calibration.samples)
    if calibration.random and uses_int8(graph, plan):
        result.notes.insert(0, RANDOM_WARNING)
    return result


def uses_int8(graph: ModelGraph, plan: Plan) -> bool:
    """Whether ``plan`` builds any int8 (a layer, or the ops), and so needs calibration."""
    return plan.ops == "int8" or any(plan.settings_for(n.name).precision == "int8" for n in graph.layers)


def describe(record: CalibrationRecord) -> str:
    """'<source>; 32 inputs at input=1x1x8x8' for reports and status lines (the random warning is apart:
    ``RANDOM_WARNING``, shown where ``record.random``)."""
    shapes = ", ".join(f"{name}=" + " or ".join("x".join(map(str, s)) for s in seen) for name, seen in record.shapes.items())
    return f"{record.source}; {record.count} input(s)" + (f" at {shapes}" if shapes else "")

"""The results panel: predicted and measured latency, speedup over the fp32 baseline, metric, drop, model size.

Everything is read from the session (route = prediction, current = measured, baseline = fp32);
what is not known yet says so ("not measured yet") instead of showing a zero, and a cell that a
waiting or running job is about to fill says so ("profiling…", "running…", "measuring…"; the
window calls ``set_pending`` with the kinds of its jobs).
"""

from __future__ import annotations

import logging
import math
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QGridLayout, QLabel, QWidget

__all__ = ["QtStatus", "format_ms", "format_bytes", "speedup_text"]

logger = logging.getLogger(__name__)

_ROWS = ("latency", "speedup", "metric", "drop", "size")
_TITLES = {"latency": "Latency", "speedup": "Speedup vs fp32", "metric": "Metric", "drop": "Drop", "size": "Model size"}


def _known(value: Any) -> bool:
    return value is not None and isinstance(value, (int, float)) and math.isfinite(value)


def format_ms(ms: float | None) -> str:
    if not _known(ms):
        return ""
    return f"{ms:.3f} ms" if ms < 10 else f"{ms:.1f} ms"


def format_bytes(n: int | None) -> str:
    if not _known(n):
        return ""
    for unit, size in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def speedup_text(baseline_ms: float | None, ms: float | None, p10: float | None = None, p90: float | None = None) -> str:
    """'1.32x faster' / '1.08x slower', with the p10–p90 range of the ratio when the spread is known."""
    from engine.report.words import speed_words

    return speed_words(baseline_ms, ms, p10, p90)


class QtStatus(QWidget):
    """A small table: rows latency / speedup / metric / drop / size, columns fp32, predicted, measured."""

    def __init__(self, session: Any, prediction: Any = None, parent: Any = None) -> None:
        super().__init__(parent)
        self.session = session
        self.prediction = prediction or (lambda: None)  # -> engine.jobs.prediction.Prediction of the current plan
        grid = QGridLayout(self)
        grid.setHorizontalSpacing(16)
        self.cells: dict[tuple[str, str], QLabel] = {}
        for col, head in enumerate(("", "fp32 baseline", "predicted", "measured")):
            label = QLabel(f"<b>{head}</b>")
            grid.addWidget(label, 0, col)
        for row, key in enumerate(_ROWS, start=1):
            grid.addWidget(QLabel(_TITLES[key]), row, 0)
            for col, which in enumerate(("baseline", "predicted", "measured"), start=1):
                cell = QLabel()
                cell.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
                grid.addWidget(cell, row, col)
                self.cells[(key, which)] = cell
        self.note = QLabel()
        self.note.setWordWrap(True)
        self.note.setStyleSheet("color: #666")
        grid.addWidget(self.note, len(_ROWS) + 1, 0, 1, 4)
        grid.setRowStretch(len(_ROWS) + 2, 1)
        self._pending: set[str] = set()
        self._callback = lambda _: self.refresh()
        for name in ("model", "route", "baseline", "current", "plan", "evaluator"):
            getattr(session.events, name).connect(self._callback)
        self.refresh()

    def close_view(self) -> None:
        self.session.events.disconnect(self._callback)

    def set_pending(self, kinds: set[str]) -> None:
        """The kinds of job ("profile", "sensitivity", "measure", "tune") that wait or run now."""
        if kinds != self._pending:
            self._pending = set(kinds)
            self.refresh()

    def text(self, key: str, which: str) -> str:
        """What a cell shows (for tests and the screenshot check)."""
        return self.cells[(key, which)].text()

    def refresh(self) -> None:
        s = self.session
        base, route, current = s.baseline, s.route, s.current
        base_ms = getattr(base, "ms", None)
        base_metric = getattr(base, "metric", None)
        pred_ms = getattr(route, "latency_ms", None)
        pred_drop = getattr(route, "drop", None)
        pred_metric = base_metric - pred_drop if _known(base_metric) and _known(pred_drop) else None
        cur_ms, cur_metric = getattr(current, "ms", None), getattr(current, "metric", None)
        cur_drop = base_metric - cur_metric if _known(base_metric) and _known(cur_metric) else None
        none = "no model" if s.graph is None else ""
        values = {
            ("latency", "baseline"): format_ms(base_ms) or none or "not profiled yet",
            ("latency", "predicted"): format_ms(pred_ms) or none or "not profiled yet",
            ("latency", "measured"): format_ms(cur_ms) or none or "not measured yet",
            ("speedup", "baseline"): "1.00x (fp32)" if _known(base_ms) else "",
            ("speedup", "predicted"): speedup_text(getattr(self.prediction(), "fp32_ms", None) or base_ms, pred_ms),
            ("speedup", "measured"): speedup_text(base_ms, cur_ms, getattr(current, "ms_p10", None),
                                                  getattr(current, "ms_p90", None)),
            ("metric", "baseline"): _metric(base_metric) or none or ("needs an evaluator" if s.evaluator_path is None
                                                                     else "not measured yet"),
            ("metric", "predicted"): _metric(pred_metric),
            ("metric", "measured"): _metric(cur_metric) or ("" if current is None else "no evaluator"),
            ("drop", "baseline"): "0" if _known(base_metric) else "",
            ("drop", "predicted"): _drop(pred_drop),
            ("drop", "measured"): _drop(cur_drop),
            ("size", "baseline"): format_bytes(getattr(base, "bytes", None)),
            ("size", "predicted"): "",
            ("size", "measured"): format_bytes(getattr(current, "bytes", None)),
        }
        if current is None and s.graph is not None:
            values[("metric", "measured")] = values[("size", "measured")] = "not measured yet"
        if s.graph is not None:
            self._show_pending(values, _known(base_ms), _known(base_metric))
        for key, text in values.items():
            self.cells[key].setText(text)
        notes = [str(getattr(route, "detail", "") or "")]
        if s.evaluator_path is None and _has_int8(s.plan, route):
            from engine.evaluate.calibration import RANDOM_WARNING

            notes.append(f"No evaluator: {RANDOM_WARNING}")
        self.note.setText("\n".join(n for n in notes if n))

    def _show_pending(self, values: dict[tuple[str, str], str], have_ms: bool, have_metric: bool) -> None:
        """Cells a pending job will fill say so; numbers already known stay until it replaces them."""
        pending = self._pending
        if "profile" in pending and not have_ms:
            values[("latency", "baseline")] = values[("latency", "predicted")] = "profiling…"
        if pending & {"sensitivity", "tune"} and not have_metric:
            values[("metric", "baseline")] = "running…"
        if pending & {"measure", "tune"}:  # the measured column belongs to the plan before the edit
            for key in ("latency", "metric", "size"):
                values[(key, "measured")] = "measuring…"
            values[("speedup", "measured")] = values[("drop", "measured")] = ""


def _has_int8(plan: Any, route: Any) -> bool:
    """Whether the plan (or the route DPRS chose for its auto layers) builds int8, which needs calibration."""
    if getattr(plan, "ops", "fp32") == "int8":
        return True
    routines = getattr(route, "routines", None) or {}
    return "int8" in routines.values() or any(getattr(s, "precision", None) == "int8"
                                              for s in getattr(plan, "layers", {}).values())


def _metric(value: float | None) -> str:
    return f"{value:.4f}" if _known(value) else ""


def _drop(value: float | None) -> str:
    return f"{value:+.4f}".replace("+", "") if _known(value) else ""

"""The status-bar part that shows a running job: what it does, a progress bar, the ETA and a Cancel button.

Chained jobs (profile, then sensitivity, then measure) hand the widget on: ``attach`` moves it to
the next job, and only the end of the job it shows hides it, so a job that ends after the next one
has started (its ``ended`` arrives late) cannot hide the next one's progress and Cancel.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QWidget

from engine.progress import Progress
from gui.qt_worker import QtJob

__all__ = ["QtJobStatus", "eta_text"]

logger = logging.getLogger(__name__)


def eta_text(progress: Progress, elapsed_s: float) -> str:
    """'ETA 12 s' from the rate so far; '' while it cannot be estimated."""
    if not progress.total or not progress.done or elapsed_s <= 0:
        return ""
    remaining = elapsed_s / progress.done * (progress.total - progress.done)
    if remaining >= 90:
        return f"ETA {remaining / 60:.0f} min"
    return f"ETA {remaining:.0f} s"


class QtJobStatus(QWidget):
    """Hidden while idle; ``attach(job)`` shows that job's progress until it ends or another job is attached."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.label = QLabel()
        self.bar = QProgressBar()
        self.bar.setFixedWidth(180)
        self.eta = QLabel()
        self.cancel_button = QPushButton("Cancel")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        for w in (self.label, self.bar, self.eta, self.cancel_button):
            layout.addWidget(w)
        self.job: QtJob | None = None
        self._start = 0.0
        self.cancel_button.clicked.connect(self._cancel)
        self.hide()

    def attach(self, job: QtJob) -> None:
        if self.job is not None and self.job is not job:
            self._detach(self.job)
        self.job = job
        self._start = time.monotonic()
        self.label.setText(job.label)
        self.bar.setRange(0, 0)  # busy until the first progress record says how much there is
        self.eta.setText("")
        self.cancel_button.setEnabled(True)
        job.progress.connect(self._on_progress)
        job.ended.connect(self._on_ended)
        self.show()

    def _detach(self, job: QtJob) -> None:
        for signal, slot in ((job.progress, self._on_progress), (job.ended, self._on_ended)):
            try:
                signal.disconnect(slot)
            except (RuntimeError, TypeError):  # already gone with its job
                pass

    def _on_progress(self, p: Progress) -> None:
        if self.sender() is not None and self.sender() is not self.job:
            return  # a late record of a job this widget no longer shows
        if p.total:
            self.bar.setRange(0, p.total)
            self.bar.setValue(p.done)
        self.eta.setText(eta_text(p, time.monotonic() - self._start))
        if p.message:
            self.label.setText(f"{self.job.label if self.job else ''}: {p.message}")

    def _cancel(self) -> None:
        if self.job is not None:
            self.cancel_button.setEnabled(False)
            self.label.setText("cancelling…")
            self.job.cancel()

    def _on_ended(self) -> None:
        ended = self.sender()
        if ended is not None and ended is not self.job:
            return  # the previous job's end, after the next job took the widget over
        if self.job is not None:
            self._detach(self.job)
        self.job = None
        self.hide()

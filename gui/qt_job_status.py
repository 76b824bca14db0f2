"""The status-bar part that shows a running job: what it does, a progress bar, the ETA and a Cancel button."""

from __future__ import annotations

import logging
import time
from typing import Any

from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QWidget

from engine.progress import Progress
from gui.qt_worker import QtWorker

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
    """Hidden while idle; ``attach(worker)`` shows that worker's progress until it ends."""

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
        self.worker: QtWorker | None = None
        self._start = 0.0
        self.cancel_button.clicked.connect(self._cancel)
        self.hide()

    def attach(self, worker: QtWorker) -> None:
        self.worker = worker
        self._start = time.monotonic()
        self.label.setText(worker.label)
        self.bar.setRange(0, 0)  # busy until the first progress record says how much there is
        self.eta.setText("")
        self.cancel_button.setEnabled(True)
        worker.progress.connect(self._on_progress)
        worker.ended.connect(self._on_ended)
        self.show()

    def _on_progress(self, p: Progress) -> None:
        if p.total:
            self.bar.setRange(0, p.total)
            self.bar.setValue(p.done)
        self.eta.setText(eta_text(p, time.monotonic() - self._start))
        if p.message:
            self.label.setText(f"{self.worker.label if self.worker else ''}: {p.message}")

    def _cancel(self) -> None:
        if self.worker is not None:
            self.cancel_button.setEnabled(False)
            self.label.setText("cancelling…")
            self.worker.cancel()

    def _on_ended(self) -> None:
        self.worker = None
        self.hide()

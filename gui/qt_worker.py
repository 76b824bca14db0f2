"""Qt side of ``engine.jobs.worker``: a QTimer drains the worker's pipe and re-emits what it finds as signals.

The job itself runs in another process; nothing here blocks the event loop. Signals:
``started()``, ``progress(Progress)``, ``finished(result)``, ``errored(message, detail)`` (errors
and crashes), ``cancelled(partial)``; ``ended()`` follows any of the last three, exactly once.
"""

from __future__ import annotations

import logging
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal

from engine.progress import Progress
from engine.jobs.worker import Outcome, Worker

__all__ = ["QtWorker"]

logger = logging.getLogger(__name__)

_POLL_MS = 40


class QtWorker(QObject):
    """Run ``target`` ("module:function") with ``kwargs`` in a worker process; relay it as signals."""

    started = Signal()
    progress = Signal(object)
    finished = Signal(object)
    errored = Signal(str, str)
    cancelled = Signal(object)
    ended = Signal()

    def __init__(self, target: str, kwargs: dict[str, Any] | None = None, label: str = "",
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.label = label or target
        self._worker = Worker(target, dict(kwargs or {}))
        self._timer = QTimer(self)
        self._timer.setInterval(_POLL_MS)
        self._timer.timeout.connect(self._poll)
        self.last_progress: Progress | None = None

    def start(self) -> None:
        self._worker.start()
        self._timer.start()
        self.started.emit()

    def cancel(self) -> None:
        """Ask the job to stop; it ends (``cancelled``) within about a second."""
        self._worker.cancel()

    def wait(self, timeout: float | None = None) -> Outcome | None:
        """Block until the job ends (no signals are emitted for what this drains); for shutdown and scripts."""
        self._timer.stop()
        return self._worker.wait(timeout)

    @property
    def running(self) -> bool:
        return self._worker.running

    @property
    def outcome(self) -> Outcome | None:
        return self._worker.outcome

    def _poll(self) -> None:
        for event in self._worker.poll():
            if isinstance(event, Progress):
                self.last_progress = event
                self.progress.emit(event)
                continue
            self._timer.stop()
            if event.status == "finished":
                self.finished.emit(event.result)
            elif event.status == "cancelled":
                self.cancelled.emit(event.result)
            else:
                self.errored.emit(event.message, event.detail)
            self.ended.emit()

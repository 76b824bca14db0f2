"""Qt side of ``engine.jobs.worker``: the window's one worker process, and a handle with signals per job.

``QtWorker`` owns the ``Worker`` (one process, jobs queued) and a QTimer that drains it while jobs
run or wait; nothing here blocks the event loop. ``submit`` returns a ``QtJob`` whose signals are
``started()``, ``progress(Progress)``, ``finished(result)``, ``errored(message, detail)`` (errors
and crashes), ``cancelled(partial)``; ``ended()`` follows any of the last three, exactly once.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal

from engine.jobs.worker import Outcome, Started, Worker
from engine.progress import Progress

__all__ = ["QtJob", "QtWorker"]

logger = logging.getLogger(__name__)

_POLL_MS = 40


class QtJob(QObject):
    """One submitted job: its signals, its last progress and, once it runs, the worker's pid."""

    started = Signal()
    progress = Signal(object)
    finished = Signal(object)
    errored = Signal(str, str)
    cancelled = Signal(object)
    ended = Signal()

    def __init__(self, owner: "QtWorker", job_id: int, name: str, label: str) -> None:
        super().__init__(owner)
        self._owner = owner
        self.job_id = job_id
        self.name = name
        self.label = label or name
        self.pid: int | None = None
        self.last_progress: Progress | None = None
        self.outcome: Outcome | None = None

    def cancel(self) -> None:
        """Drop it if it waits; ask it to stop if it runs (it ends, ``cancelled``, within about a second)."""
        self._owner.cancel(self)

    def wait(self, timeout: float | None = None) -> Outcome | None:
        """Block until it ends (its signals are still emitted); for shutdown, scripts and tests."""
        return self._owner.wait(self, timeout)

    @property
    def running(self) -> bool:
        """True until it has ended (waiting in the queue counts)."""
        return self.outcome is None

    def _deliver(self, event: Started | Progress | Outcome) -> None:
        if isinstance(event, Started):
            self.pid = event.pid
            self.started.emit()
        elif isinstance(event, Progress):
            self.last_progress = event
            self.progress.emit(event)
        else:
            self.outcome = event
            if event.status == "finished":
                self.finished.emit(event.result)
            elif event.status == "cancelled":
                self.cancelled.emit(event.result)
            else:
                self.errored.emit(event.message, event.detail)
            self.ended.emit()


class QtWorker(QObject):
    """The window's worker process: ``submit(name, kwargs, label)`` queues a catalogue job and returns its QtJob."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.worker = Worker()
        self._jobs: dict[int, QtJob] = {}
        self._timer = QTimer(self)
        self._timer.setInterval(_POLL_MS)
        self._timer.timeout.connect(self.poll)

    def submit(self, name: str, kwargs: dict[str, Any] | None = None, label: str = "") -> QtJob:
        job_id = self.worker.submit(name, kwargs)
        job = QtJob(self, job_id, name, label)
        self._jobs[job_id] = job
        self._timer.start()
        return job

    def cancel(self, job: QtJob) -> None:
        self.worker.cancel(job.job_id)

    def wait(self, job: QtJob, timeout: float | None = None) -> Outcome | None:
        """Block until ``job`` ends, relaying through ``poll`` so its signals still fire; None on timeout."""
        end = None if timeout is None else time.monotonic() + timeout
        while job.outcome is None and (end is None or time.monotonic() < end):
            self.poll()
            if job.outcome is None:
                time.sleep(0.01)
        return job.outcome

    @property
    def pid(self) -> int | None:
        return self.worker.pid

    @property
    def current(self) -> QtJob | None:
        """The job that runs now, if any."""
        job_id = self.worker.running
        return self._jobs.get(job_id) if job_id is not None else None

    def busy(self) -> bool:
        return self.worker.busy()

    def waiting(self) -> list[QtJob]:
        return [self._jobs[i] for i in self.worker.waiting if i in self._jobs]

    def poll(self) -> None:
        """Relay what the worker did as the jobs' signals; the timer stops once nothing runs or waits."""
        for job_id, event in self.worker.poll():
            job = self._jobs.get(job_id)
            if job is None:
                continue
            if isinstance(event, Outcome):
                del self._jobs[job_id]
            try:
                job._deliver(event)
            except Exception:  # a broken handler must not stop the relay of the other jobs
                logger.exception("handling %s of %s failed", type(event).__name__, job.label)
        if not self.worker.busy() and not self._jobs:
            self._timer.stop()

    def close(self, timeout: float = 2.0) -> None:
        """Stop the running job (up to ``timeout``) and end the process; waiting jobs are dropped unannounced."""
        self._timer.stop()
        self._jobs.clear()
        self.worker.close(timeout)

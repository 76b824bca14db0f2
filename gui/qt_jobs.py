"""The window's job plumbing: which job replaces which, what the status bar and the Results cells show.

``QtJobRunner`` sits between the window and its ``QtWorker`` (one worker process, jobs queued). It
knows each waiting or running job's *kind* ("profile", "measure" …) so a newer job of a kind
replaces the older one, attaches the running job to the status bar's progress widget, tells the
Results panel which kinds are pending (its cells then say "measuring…"), and hands a cancelled
job's partial result to whoever asked for it.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Collection

from PySide6.QtCore import QObject

from gui.qt_job_status import QtJobStatus
from gui.qt_worker import QtJob, QtWorker

__all__ = ["QtJobRunner"]

logger = logging.getLogger(__name__)


class QtJobRunner(QObject):
    """Runs catalogue jobs in ``worker`` for a window; reports through ``set_status`` and ``show_error``."""

    def __init__(self, worker: QtWorker, job_status: QtJobStatus, set_pending: Callable[[set[str]], None],
                 set_status: Callable[[str], None], status: Callable[[], str],
                 show_error: Callable[[str, str], None], parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.worker = worker
        self._job_status = job_status
        self._set_pending = set_pending
        self._set_status = set_status
        self._status = status
        self._show_error = show_error
        self._kinds: dict[int, str | None] = {}  # job id -> kind, while it waits or runs

    def run(self, name: str, kwargs: dict[str, Any], label: str, on_result: Callable[[Any], None],
            kind: str | None = None, on_partial: Callable[[Any], None] | None = None) -> QtJob:
        """Queue catalogue job ``name``; ``on_result`` gets its result.

        Jobs run one at a time (they time things: two at once on two cores would spoil both). Without
        ``kind`` the job replaces whatever runs and waits; with a ``kind`` it queues, replacing an
        earlier job of the same kind (running: cancelled; waiting: dropped). ``on_partial`` gets what
        a cancelled job returned (a profile or a sweep keeps the layers it finished).
        """
        for other in self._pending_jobs():
            if kind is None or self._kinds.get(other.job_id) == kind:
                other.cancel()
        job = self.worker.submit(name, kwargs, label)
        job.started.connect(lambda: self._started(job))
        job.finished.connect(lambda result: self._finished(job, on_result, result))
        job.errored.connect(lambda message, detail: self._show_error(f"{label} failed: {message}", detail))
        job.cancelled.connect(lambda partial: self._cancelled(job, on_partial, partial))
        job.ended.connect(lambda: self._ended(job))
        self._kinds[job.job_id] = kind
        if self.worker.current is job:  # nothing ahead of it: show it now, not when the process answers
            self._started(job)
        self._changed()
        return job

    def cancel(self, everything: bool = False, keep: Collection[str] = ()) -> None:
        """Cancel the running job; with ``everything`` the waiting ones are dropped too; jobs of a kind in
        ``keep`` go on (a session of the same model reopened keeps its layer options coming)."""
        for job in self._pending_jobs() if everything else [self.worker.current]:
            if job is not None and self._kinds.get(job.job_id) not in keep:
                job.cancel()

    def close(self) -> None:
        """Stop the running job and the worker process (the window is closing)."""
        self._kinds.clear()
        self.worker.close(timeout=2.0)

    def _pending_jobs(self) -> list[QtJob]:
        return [j for j in [self.worker.current, *self.worker.waiting()] if j is not None]

    def _started(self, job: QtJob) -> None:
        if self._job_status.job is not job:
            self._job_status.attach(job)
            self._set_status(f"{job.label}…")

    def _finished(self, job: QtJob, on_result: Callable[[Any], None], result: Any) -> None:
        try:
            on_result(result)
        except Exception as exc:  # a bad result must not take the window down
            logger.exception("handling the result of %s failed", job.label)
            self._show_error(f"{job.label}: {exc}", "")
            return
        if self._status() == f"{job.label}…":  # the result handler said nothing more specific
            self._set_status(f"{job.label}: done")

    def _cancelled(self, job: QtJob, on_partial: Callable[[Any], None] | None, partial: Any) -> None:
        if job.pid is None and job.last_progress is None:
            return  # dropped before it started: nothing to say
        self._set_status(f"{job.label}: cancelled")
        if on_partial is not None and partial is not None:
            try:
                on_partial(partial)
            except Exception as exc:
                logger.exception("keeping the partial result of %s failed", job.label)
                self._show_error(f"{job.label}: {exc}", "")

    def _ended(self, job: QtJob) -> None:
        self._kinds.pop(job.job_id, None)
        self._changed()

    def _changed(self) -> None:
        self._set_pending({k for k in self._kinds.values() if k is not None})

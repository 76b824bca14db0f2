"""One persistent worker process that runs catalogue jobs in turn, so a native crash never takes the caller down.

A job is a name from ``engine.jobs.catalogue.JOBS`` plus picklable keyword arguments. The process
lives as long as its ``Worker``: it imports ONNX Runtime once, and the catalogue's loaders keep the
model and evaluator it loaded, so the next job on the same model starts at once. Jobs wait in a
queue here in the caller and go to the process one at a time (they time things: two at once on two
cores would spoil both).

The process sends what happens through a one-way pipe; the caller drains it with ``poll()``
(non-blocking, for a GUI timer) or ``wait()`` (blocking, for scripts, tests and shutdown). Each event
is ``(job_id, event)`` with ``event`` a ``Started``, a ``Progress`` or, last and once, an ``Outcome``.

``cancel(job_id)``: a waiting job is dropped; the running one is asked to stop, which it does at its
next yield (``engine.progress.run`` throws ``Cancelled`` into it, and it may return what it measured
so far). If it has not stopped ``CANCEL_GRACE_S`` later (stuck in native code) the process is killed
and a fresh one started. A process that dies (a segfault in ORT) ends its job as "crashed" with one
line, and a fresh process runs the rest of the queue. No Qt here: ``gui.qt_worker`` wraps this in signals.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from engine.errors import LayerLabError
from engine.jobs import catalogue
from engine.progress import Cancelled, Progress, run

__all__ = ["Outcome", "Started", "Worker", "CANCEL_GRACE_S"]

logger = logging.getLogger(__name__)

#: How long a cancelled job may take to reach its next yield before the process is killed.
CANCEL_GRACE_S = 1.0
_NO_JOB = -1


@dataclass(frozen=True)
class Started:
    """The job left the queue and runs in process ``pid``."""

    pid: int


@dataclass(frozen=True)
class Outcome:
    """How a job ended: ``status`` is "finished", "error", "cancelled" or "crashed".

    ``result`` is the job's return value (finished) or its partial result (cancelled, when the job
    returned one); ``message`` is one line for the user; ``detail`` the worker's traceback, if any.
    """

    status: str
    result: Any = None
    message: str = ""
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "finished"


@dataclass
class _Job:
    job_id: int
    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)


class Worker:
    """The worker process and its queue: ``submit`` jobs, ``poll()`` for what happened, ``close()`` at the end."""

    def __init__(self) -> None:
        self._ctx = multiprocessing.get_context("spawn")
        self._cancel_id = self._ctx.Value("q", _NO_JOB, lock=False)  # the job the process should stop
        self._process: Any = None
        self._requests: Any = None
        self._replies: Any = None
        self._queue: deque[_Job] = deque()
        self._running: _Job | None = None
        self._cancel_deadline: float | None = None
        self._dropped: list[tuple[int, Outcome]] = []  # cancelled while waiting: reported at the next poll
        self._next_id = 0
        self.restarts = 0

    # --- control ----------------------------------------------------------------------------

    def submit(self, name: str, kwargs: dict[str, Any] | None = None) -> int:
        """Queue catalogue job ``name``; returns its id. LayerLabError for a name the catalogue does not have."""
        catalogue.resolve(name)
        self._next_id += 1
        self._queue.append(_Job(self._next_id, name, dict(kwargs or {})))
        self._dispatch()
        return self._next_id

    def cancel(self, job_id: int) -> None:
        """Drop a waiting job, or ask the running one to stop (killed and restarted after ``CANCEL_GRACE_S``)."""
        for job in list(self._queue):
            if job.job_id == job_id:
                self._queue.remove(job)
                self._dropped.append((job_id, Outcome("cancelled", message="cancelled before it started")))
                return
        if self._running is not None and self._running.job_id == job_id and self._cancel_deadline is None:
            self._cancel_id.value = job_id
            self._cancel_deadline = time.monotonic() + CANCEL_GRACE_S
            logger.info("cancelling %s (job %d)", self._running.name, job_id)

    @property
    def pid(self) -> int | None:
        """The worker process's id while it lives."""
        return self._process.pid if self._process is not None and self._process.is_alive() else None

    @property
    def running(self) -> int | None:
        """The id of the job the process runs, if any."""
        return self._running.job_id if self._running is not None else None

    @property
    def waiting(self) -> list[int]:
        """Ids of the queued jobs, in the order they will run."""
        return [job.job_id for job in self._queue]

    def busy(self) -> bool:
        return self._running is not None or bool(self._queue)

    def close(self, timeout: float = 2.0) -> None:
        """Drop the queue, stop the running job (waiting up to ``timeout``) and end the process."""
        self._queue.clear()
        if self._running is not None:
            self.cancel(self._running.job_id)
            self.wait(self._running.job_id, timeout)
        self._stop_process(gently=True)

    # --- relaying ---------------------------------------------------------------------------

    def poll(self) -> list[tuple[int, Started | Progress | Outcome]]:
        """Everything that happened since the last call, without blocking."""
        events: list[tuple[int, Started | Progress | Outcome]] = list(self._dropped)
        self._dropped.clear()
        if self._process is None:
            return events
        try:
            while self._replies.poll():
                self._receive(self._replies.recv(), events)
        except (EOFError, OSError):
            pass  # the process is gone; is_alive below says so
        except Exception as exc:  # a half-written message from a process that died mid-send
            logger.warning("unreadable message from the worker: %s", exc)
        if self._running is not None and not self._process.is_alive():
            self._process.join(0.1)
            self._end(self._crash_outcome(), events)
            self._restart()
        elif self._running is not None and self._cancel_deadline is not None and time.monotonic() > self._cancel_deadline:
            logger.warning("%s did not stop within %.1f s; restarting the worker", self._running.name, CANCEL_GRACE_S)
            self._end(Outcome("cancelled", message="cancelled (the worker was restarted)"), events)
            self._restart()
        self._dispatch()
        return events

    def wait(self, job_id: int, timeout: float | None = None) -> Outcome | None:
        """Block until job ``job_id`` ends (draining everything meanwhile); None if ``timeout`` passed first."""
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            for event_id, event in self.poll():
                if event_id == job_id and isinstance(event, Outcome):
                    return event
            if job_id != self.running and job_id not in self.waiting:
                return None  # it ended before this call; its outcome went to an earlier poll
            if end is not None and time.monotonic() > end:
                return None
            if self._replies is not None:
                self._replies.poll(0.01)

    def _receive(self, message: tuple, events: list) -> None:
        kind, job_id = message[0], message[1]
        if self._running is None or job_id != self._running.job_id:
            logger.debug("late %s message for job %d", kind, job_id)
            return
        if kind == "started":
            events.append((job_id, Started(message[2])))
        elif kind == "progress":
            events.append((job_id, message[2]))
        elif kind == "finished":
            self._end(Outcome("finished", result=message[2]), events)
        elif kind == "cancelled":
            self._end(Outcome("cancelled", result=message[2], message="cancelled"), events)
        elif kind == "error":
            self._end(Outcome("error", message=message[2], detail=message[3]), events)
        else:
            logger.warning("unknown message %r from the worker", kind)

    def _end(self, outcome: Outcome, events: list) -> None:
        job = self._running
        assert job is not None
        self._running, self._cancel_deadline = None, None
        events.append((job.job_id, outcome))
        logger.info("%s (job %d) ended: %s %s", job.name, job.job_id, outcome.status, outcome.message)

    def _crash_outcome(self) -> Outcome:
        code = self._process.exitcode
        if self._cancel_deadline is not None:
            return Outcome("cancelled", message="cancelled (the worker was restarted)")
        name = ""
        if code is not None and code < 0:
            try:
                name = f", {signal.Signals(-code).name}"
            except ValueError:
                pass
        return Outcome("crashed", message=f"worker crashed (exit code {code}{name}); it was restarted")

    # --- the process --------------------------------------------------------------------------

    def _dispatch(self) -> None:
        if self._running is not None or not self._queue:
            return
        if self._process is None or not self._process.is_alive():
            self._start_process()
        job = self._queue.popleft()
        try:
            self._requests.send((job.job_id, job.name, job.kwargs))
        except Exception as exc:  # unpicklable arguments: that job fails, the worker carries on
            self._running = job
            events: list = []
            self._end(Outcome("error", message=f"the job's arguments could not be sent ({_one_line(exc)})"), events)
            self._dropped.extend(events)
            return
        self._running = job

    def _start_process(self) -> None:
        requests_read, self._requests = self._ctx.Pipe(duplex=False)
        self._replies, replies_write = self._ctx.Pipe(duplex=False)
        self._process = self._ctx.Process(target=_serve, args=(requests_read, replies_write, self._cancel_id),
                                          daemon=True, name="layerlab-worker")
        self._process.start()
        requests_read.close()  # the process holds the only other ends: EOF then means it is gone
        replies_write.close()
        logger.info("worker process %s started", self._process.pid)

    def _restart(self) -> None:
        self._stop_process(gently=False)
        self.restarts += 1
        self._start_process()  # warm (ORT imported) before the next job asks

    def _stop_process(self, gently: bool) -> None:
        if self._process is None:
            return
        for conn in (self._requests, self._replies):
            try:
                conn.close()  # the process reads EOF and exits
            except OSError:
                pass
        if gently:
            self._process.join(1.0)
        if self._process.is_alive():
            self._process.kill()
            if gently:
                self._process.join(2.0)
            else:  # a restart: the caller (the window's GUI thread) must not wait for the kill to land
                threading.Thread(target=self._process.join, name="layerlab-reaper", daemon=True).start()
        self._process = self._requests = self._replies = None


# --- the process side ----------------------------------------------------------------------------


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, LayerLabError):
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _run_one(job_id: int, name: str, kwargs: dict[str, Any], replies: Any, cancel_id: Any) -> tuple:
    """Run one job; the message that ends it."""
    try:
        job = catalogue.resolve(name)(**kwargs)
        if hasattr(job, "send") and hasattr(job, "throw"):  # a generator job
            result = run(job, on_progress=lambda p: replies.send(("progress", job_id, p)),
                         should_stop=lambda: cancel_id.value == job_id)
        else:
            result = job
        return ("finished", job_id, result)
    except Cancelled as exc:
        return ("cancelled", job_id, exc.partial)
    except (BrokenPipeError, ConnectionError):
        raise  # relaying progress failed: the caller is gone
    except BaseException as exc:  # noqa: BLE001 - everything becomes one line for the user
        return ("error", job_id, _one_line(exc), traceback.format_exc())


def _serve(requests: Any, replies: Any, cancel_id: Any) -> None:
    """The worker process: run each job it is sent, relay its yields, send exactly one ending message per job."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C in a terminal is for the parent to handle
    try:
        import onnxruntime  # noqa: F401 - once, here, so no job pays for it
    except ImportError:
        pass
    while True:
        try:
            job_id, name, kwargs = requests.recv()
        except (EOFError, OSError):
            return  # the caller closed the pipe: the worker is done
        try:
            replies.send(("started", job_id, os.getpid()))
            message = _run_one(job_id, name, kwargs, replies, cancel_id)
            try:
                replies.send(message)
            except (BrokenPipeError, ConnectionError):
                raise
            except Exception as exc:  # the result would not pickle: say so rather than crash silently
                replies.send(("error", job_id, f"the job's result could not be sent back ({_one_line(exc)})",
                              traceback.format_exc()))
        except (BrokenPipeError, ConnectionError):
            return  # the caller closed the worker mid-job: nobody is listening

"""Run one engine job in a separate process, so a native crash or hang never takes the caller down.

A job is named by import path (``"engine.measure.profiler:profile_job"``) plus picklable keyword arguments,
because a spawned child cannot receive a closure. The function may be a generator (it yields
``Progress`` and returns its result, see ``engine.progress``) or a plain function (its return value is
the result). The child sends what happens through a one-way pipe; the caller drains it with
``poll()`` (non-blocking, for a GUI timer) or ``wait()`` (blocking, for scripts and tests).

``cancel()`` sets a stop flag that the child checks after every yield (``engine.progress.run`` then
throws ``Cancelled`` into the generator, which may return what it measured so far); a child that has
not stopped one second later is terminated. No Qt here: ``gui.qt_worker`` wraps this in signals.
"""

from __future__ import annotations

import importlib
import logging
import multiprocessing
import signal
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

from engine.errors import LayerLabError
from engine.progress import Cancelled, Progress, run

__all__ = ["Outcome", "Worker", "CANCEL_GRACE_S"]

logger = logging.getLogger(__name__)

#: How long a cancelled job may take to reach its next yield before the process is terminated.
CANCEL_GRACE_S = 1.0


@dataclass(frozen=True)
class Outcome:
    """How a job ended: ``status`` is "finished", "error", "cancelled" or "crashed".

    ``result`` is the job's return value (finished) or its partial result (cancelled, when the job
    returned one); ``message`` is one line for the user; ``detail`` the child's traceback, if any.
    """

    status: str
    result: Any = None
    message: str = ""
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "finished"


@dataclass
class Worker:
    """One job in one spawned process; create it, ``start()``, then ``poll()`` until it returns an Outcome."""

    target: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if ":" not in self.target:
            raise LayerLabError(f"worker: job {self.target!r} must be given as 'module:function'")
        self._ctx = multiprocessing.get_context("spawn")
        self._process: Any = None
        self._conn: Any = None
        self._stop: Any = None
        self._cancel_deadline: float | None = None
        self._outcome: Outcome | None = None

    # --- control ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the child process (once)."""
        if self._process is not None:
            raise LayerLabError(f"worker: job {self.target!r} was already started")
        receive, send = self._ctx.Pipe(duplex=False)
        self._stop = self._ctx.Event()
        self._process = self._ctx.Process(
            target=_child_main, args=(self.target, self.kwargs, send, self._stop), daemon=True,
            name=f"layerlab-{self.target}",
        )
        self._process.start()
        send.close()  # the child holds the only write end: EOF then means the child is gone
        self._conn = receive
        logger.info("started %s in process %s", self.target, self._process.pid)

    def cancel(self) -> None:
        """Ask the job to stop; ``poll()`` terminates the process if it has not stopped within a second."""
        if self._process is None or self._outcome is not None or self._cancel_deadline is not None:
            return
        self._stop.set()
        self._cancel_deadline = time.monotonic() + CANCEL_GRACE_S
        logger.info("cancelling %s", self.target)

    @property
    def running(self) -> bool:
        return self._process is not None and self._outcome is None

    @property
    def outcome(self) -> Outcome | None:
        """The outcome once the job has ended, else None."""
        return self._outcome

    # --- relaying ---------------------------------------------------------------------------

    def poll(self) -> list[Progress | Outcome]:
        """Everything that happened since the last call, without blocking; an Outcome comes last, once."""
        if self._process is None or self._outcome is not None:
            return []
        events: list[Progress | Outcome] = []
        try:
            while self._outcome is None and self._conn.poll():
                self._receive(self._conn.recv(), events)
        except (EOFError, OSError):
            pass  # the child is gone; the exit code below says how
        except Exception as exc:  # a half-written message from a child that died mid-send
            logger.warning("unreadable message from %s: %s", self.target, exc)
        if self._outcome is None and not self._process.is_alive():
            self._process.join(0.1)
            self._finish(self._crash_outcome(), events)
        elif self._outcome is None and self._cancel_deadline is not None and time.monotonic() > self._cancel_deadline:
            logger.warning("%s did not stop within %.1f s; terminating it", self.target, CANCEL_GRACE_S)
            self._process.terminate()
            self._process.join(1.0)
            if self._process.is_alive():
                self._process.kill()
                self._process.join(1.0)
            self._finish(Outcome("cancelled", message="cancelled (the job was stopped)"), events)
        if self._outcome is not None:
            self._close()
        return events

    def wait(self, timeout: float | None = None, poll_interval: float = 0.02) -> Outcome | None:
        """Block until the job ends (draining the pipe meanwhile); None if ``timeout`` passed first."""
        end = None if timeout is None else time.monotonic() + timeout
        while self._outcome is None:
            self.poll()
            if self._outcome is None:
                if end is not None and time.monotonic() > end:
                    return None
                time.sleep(poll_interval)
        return self._outcome

    def _receive(self, message: tuple, events: list[Progress | Outcome]) -> None:
        kind = message[0]
        if kind == "progress":
            events.append(message[1])
        elif kind == "finished":
            self._finish(Outcome("finished", result=message[1]), events)
        elif kind == "cancelled":
            self._finish(Outcome("cancelled", result=message[1], message="cancelled"), events)
        elif kind == "error":
            self._finish(Outcome("error", message=message[1], detail=message[2]), events)
        else:
            logger.warning("unknown message %r from %s", kind, self.target)

    def _finish(self, outcome: Outcome, events: list[Progress | Outcome]) -> None:
        self._outcome = outcome
        events.append(outcome)
        logger.info("%s ended: %s %s", self.target, outcome.status, outcome.message)

    def _crash_outcome(self) -> Outcome:
        code = self._process.exitcode
        if self._cancel_deadline is not None:
            return Outcome("cancelled", message="cancelled")
        name = ""
        if code is not None and code < 0:
            try:
                name = f", {signal.Signals(-code).name}"
            except ValueError:
                pass
        return Outcome("crashed", message=f"worker crashed (exit code {code}{name})")

    def _close(self) -> None:
        try:
            self._conn.close()
        except OSError:
            pass
        if self._process.is_alive():  # it sent its outcome; give it a moment to exit cleanly
            self._process.join(1.0)
        if self._process.is_alive():
            self._process.terminate()


# --- the child side ----------------------------------------------------------------------------


def _resolve(target: str) -> Any:
    module_name, _, attr = target.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, LayerLabError):
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _child_main(target: str, kwargs: dict[str, Any], conn: Any, stop: Any) -> None:
    """Run in the spawned process: call the job, relay its yields, send exactly one ending message."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C in a terminal is for the parent to handle
    try:
        function = _resolve(target)
        job = function(**kwargs)
        if hasattr(job, "send") and hasattr(job, "throw"):  # a generator job
            result = run(job, on_progress=lambda p: conn.send(("progress", p)), should_stop=stop.is_set)
        else:
            result = job
        message: tuple = ("finished", result)
    except Cancelled as exc:
        message = ("cancelled", exc.partial)
    except BaseException as exc:  # noqa: BLE001 - everything becomes one line for the user
        message = ("error", _one_line(exc), traceback.format_exc())
    try:
        conn.send(message)
    except Exception as exc:  # the result would not pickle: say so rather than crash silently
        conn.send(("error", f"the job's result could not be sent back ({_one_line(exc)})", traceback.format_exc()))
    finally:
        conn.close()

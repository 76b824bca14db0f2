"""Long work as generators: each ``yield`` reports a ``Progress`` and is a point where the job may stop.

A job is an ordinary generator function that yields ``Progress`` records and *returns* its result.
Tests and the CLI drive it directly with ``run``; the GUI runs the same generator in a worker
process and relays the yields. Cancelling means not asking for the next record, so a job must
yield often (at least once a second) and keep what it has measured in its partial result.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import sys
import threading
import time
from dataclasses import dataclass
from typing import Callable, Generator, Iterator, TypeVar

__all__ = ["Progress", "Job", "run", "Cancelled", "stderr_progress", "forwarding", "report", "in_thread"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class Progress:
    """How far a job is: ``done`` of ``total`` steps (total 0 when unknown) and what it is doing."""

    done: int
    total: int
    message: str = ""

    @property
    def fraction(self) -> float | None:
        return self.done / self.total if self.total else None


#: A job: yields progress, returns its result.
Job = Generator[Progress, None, T]


class Cancelled(Exception):
    """Raised by ``run`` when ``should_stop`` asked the job to stop; ``partial`` holds what it had."""

    def __init__(self, partial: object = None) -> None:
        super().__init__("cancelled")
        self.partial = partial


def run(
    job: Job[T],
    on_progress: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> T:
    """Drive ``job`` to the end and return its result, reporting every yield to ``on_progress``."""
    while True:
        try:
            progress = next(job)
        except StopIteration as stop:
            return stop.value
        if on_progress is not None:
            on_progress(progress)
        if should_stop is not None and should_stop():
            try:
                job.throw(Cancelled())
            except Cancelled as exc:
                raise exc
            except StopIteration as stop:
                raise Cancelled(stop.value) from None
            raise Cancelled()


def stderr_progress(label: str) -> Callable[[Progress], None]:
    """A progress printer for the CLI: one updating line on stderr with the ETA."""
    start = time.monotonic()
    interactive = sys.stderr.isatty()
    last = [0.0]

    def show(p: Progress) -> None:
        now = time.monotonic()
        if not interactive and now - last[0] < 2.0 and p.done != p.total:
            return  # in logs, one line every two seconds is enough
        last[0] = now
        eta = ""
        if p.total and p.done:
            remaining = (now - start) / p.done * (p.total - p.done)
            eta = f" ETA {remaining:4.0f}s"
        bar = ""
        if p.total:
            filled = int(24 * p.done / p.total)
            bar = "[" + "#" * filled + "." * (24 - filled) + f"] {p.done}/{p.total}"
        line = f"{label} {bar}{eta} {p.message}"[:120]
        print(("\r" if interactive else "") + line.ljust(120 if interactive else 0), end="" if interactive else "\n", file=sys.stderr, flush=True)
        if interactive and p.total and p.done >= p.total:
            print(file=sys.stderr)

    return show


# --- progress from plain functions ------------------------------------------------------------
# A pass deep inside a plain function call (int8 of a huge graph inside apply_plan) reports with
# ``report``; whoever called the function listens with ``forwarding`` (the CLI) or runs it through
# ``in_thread`` (a job, so the window's worker relays it). Listeners are per thread.

_listeners = threading.local()


@contextlib.contextmanager
def forwarding(callback: Callable[[Progress], None]) -> Iterator[None]:
    """While inside, ``report`` in this thread passes its progress to ``callback``."""
    stack = _listeners.__dict__.setdefault("stack", [])
    stack.append(callback)
    try:
        yield
    finally:
        stack.remove(callback)


def report(progress: Progress) -> None:
    """Pass ``progress`` to the listeners of this thread (none: nothing happens)."""
    for callback in list(getattr(_listeners, "stack", ())):
        callback(progress)


def in_thread(fn: Callable[[], T], message: str = "working", poll: float = 0.25) -> Job[T]:
    """``fn()`` as a job: run in a thread, its ``report``s yielded as they come (a heartbeat at least every
    ``poll`` seconds, so a cancel is seen); its exception is raised here. Cancelled, the job stops waiting
    and the thread finishes on its own (its result is dropped)."""
    inbox: queue.Queue[Progress] = queue.Queue()
    outcome: dict[str, object] = {}

    def target() -> None:
        with forwarding(inbox.put):
            try:
                outcome["value"] = fn()
            except BaseException as exc:  # handed to the job's caller below
                outcome["error"] = exc

    worker = threading.Thread(target=target, name=f"layerlab-{message}", daemon=True)
    worker.start()
    last = Progress(0, 0, message)
    while worker.is_alive() or not inbox.empty():
        try:
            last = inbox.get(timeout=poll)
        except queue.Empty:
            pass
        yield last
    worker.join()
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]  # type: ignore[return-value]

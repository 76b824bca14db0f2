"""Event-loop stall watchdog: with ``LAYERLAB_STALL_LOG=FILE`` the window logs every GUI-thread gap over 100 ms.

A precise 20 ms heartbeat timer runs on the GUI thread; a late tick means the event loop was busy.
A daemon thread looks at the heartbeat every 25 ms and, while it is late, samples what the GUI thread is
running (its innermost LayerLab frames, from a ``faulthandler`` dump of the stacks), so the log says *what* stalled,
not only that something did. When the late tick arrives, one JSON line is appended to the file:
``{"ms": <gap beyond the tick interval>, "during": "<label or sampled frames>"}``. Code that knows what
it is doing can say so with ``with busy("exporting report"):``; the sampler then reports that label.

The cost is one timer tick per 20 ms and one thread waking per 25 ms: cheap enough to leave on.
"""

from __future__ import annotations

import faulthandler
import json
import logging
import os
import re
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from PySide6.QtCore import QObject, Qt, QTimer

__all__ = ["StallWatchdog", "install_from_env", "busy", "ENV", "THRESHOLD_MS"]

logger = logging.getLogger(__name__)

ENV = "LAYERLAB_STALL_LOG"
THRESHOLD_MS = 100.0
_TICK_MS = 20
_SAMPLE_S = 0.025
_labels: list[str] = []  # what the GUI thread says it is doing (innermost last)


@contextmanager
def busy(label: str) -> Iterator[None]:
    """Name the GUI-thread work inside the block, for the stall log."""
    _labels.append(label)
    try:
        yield
    finally:
        _labels.pop()


_THREAD = re.compile(r"^(?:Current thread|Thread) 0x([0-9a-f]+)", re.MULTILINE)
_FRAME = re.compile(r'^  File "(.*)", line (\d+|\?\?\?) in (.*)$', re.MULTILINE)


def _gui_stack(dump: str, thread_id: int) -> list[tuple[str, str, str]]:
    """(file, line, function) of ``thread_id``'s frames, innermost first, from a ``faulthandler`` dump."""
    marks = list(_THREAD.finditer(dump))
    for mark, after in zip(marks, [*marks[1:], None]):
        if int(mark.group(1), 16) == thread_id:
            return _FRAME.findall(dump[mark.end():after.start() if after is not None else len(dump)])
    return []


def _project_frames(frames: list[tuple[str, str, str]], limit: int = 3) -> str:
    """The innermost ``limit`` frames that belong to LayerLab (gui/, engine/), else the innermost frame."""
    picked: list[str] = []
    innermost = ""
    for path, line, function in frames:
        path = path.replace("\\", "/")
        where = f"{'/'.join(path.split('/')[-2:])}:{line} {function}"
        innermost = innermost or where
        if "/gui/" in path or "/engine/" in path:
            picked.append(where)
            if len(picked) == limit:
                break
    return " < ".join(picked) or innermost or "Qt (no Python frame)"


class StallWatchdog(QObject):
    """Append a JSON line to ``path`` for every event-loop gap over ``threshold_ms`` (create it on the GUI thread)."""

    def __init__(self, path: str | os.PathLike[str], threshold_ms: float = THRESHOLD_MS, parent: Any = None) -> None:
        super().__init__(parent)
        self.path = Path(path)
        self.threshold_ms = float(threshold_ms)
        self.stalls: list[dict[str, Any]] = []
        self._gui_thread = threading.get_ident()
        self._last = time.perf_counter()
        self._samples: list[str] = []  # what the GUI thread ran while late, one entry per sample
        self._running = True
        self._timer = QTimer(self)
        self._timer.setTimerType(Qt.TimerType.PreciseTimer)
        self._timer.setInterval(_TICK_MS)
        self._timer.timeout.connect(self._tick)
        self._timer.start()
        self._scratch = tempfile.TemporaryFile()  # faulthandler writes to a file descriptor
        self._thread = threading.Thread(target=self._sample_loop, name="layerlab-watchdog", daemon=True)
        self._thread.start()
        self.destroyed.connect(lambda *_: setattr(self, "_running", False))

    def stop(self) -> None:
        """Stop ticking and sampling (the window calls this when it closes)."""
        self._running = False
        self._timer.stop()

    def reset(self) -> None:
        """Forget the time before now (a test calls this after its own set-up work)."""
        self._last = time.perf_counter()
        self._samples = []

    def _dump(self) -> str:
        """Every thread's stack as text, read by ``faulthandler`` straight from the interpreter's frames.

        Not ``sys._current_frames()``: building frame objects of the GUI thread from this one corrupted
        memory now and then in Python 3.11 (Qt's timer dispatch then crashed on a dangling receiver,
        4 runs in 12 of the stall test; none in 12 without sampling, none with this)."""
        self._scratch.seek(0)
        self._scratch.truncate()
        faulthandler.dump_traceback(self._scratch, all_threads=True)
        self._scratch.seek(0)
        return self._scratch.read().decode("utf-8", "replace")

    def _sample_loop(self) -> None:
        late_s = self.threshold_ms / 1000 * 0.5
        while self._running:
            time.sleep(_SAMPLE_S)
            if time.perf_counter() - self._last < late_s:
                continue
            labels = " / ".join(_labels)
            self._samples.append(labels or _project_frames(_gui_stack(self._dump(), self._gui_thread)))

    def _tick(self) -> None:
        now = time.perf_counter()
        gap_ms = (now - self._last) * 1000 - _TICK_MS
        self._last = now
        samples, self._samples = self._samples, []
        if gap_ms <= self.threshold_ms:
            return
        sampled = max(set(samples), key=samples.count) if samples else ""  # where most of the gap went
        during = sampled or " / ".join(_labels) or "unknown"
        record = {"ms": round(gap_ms, 1), "during": during}
        self.stalls.append(record)
        try:
            with self.path.open("a", encoding="utf-8") as out:
                out.write(json.dumps(record) + "\n")
        except OSError as exc:  # the log is a diagnostic: never let it break the window
            logger.warning("stall log %s: %s", self.path, exc)
        self._last = time.perf_counter()  # the write is the watchdog's own cost, not the window's


def install_from_env(parent: Any) -> StallWatchdog | None:
    """A watchdog writing to ``$LAYERLAB_STALL_LOG`` when that is set, else None."""
    path = os.environ.get(ENV, "").strip()
    if not path:
        return None
    logger.info("logging event-loop stalls over %.0f ms to %s", THRESHOLD_MS, path)
    return StallWatchdog(path, parent=parent)

"""Pure-Python work on a background thread, its result handed to a callback on the GUI thread.

The thread never touches a Qt object: a ``QTimer`` on the GUI thread polls the futures while any is
pending and calls each callback there, in submission order. (Emitting a Qt signal from the thread's
done-callback races with the window's teardown: a layout or prediction finishing while its view is
deleted crashed the process.) After ``shutdown`` nothing is delivered.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from PySide6.QtCore import QObject, QTimer

__all__ = ["QtBackground", "POLL_MS"]

logger = logging.getLogger(__name__)

#: How often the GUI thread looks for finished work while some is pending (a tick costs microseconds).
POLL_MS = 10

Callback = Callable[[Any, BaseException | None], None]


class QtBackground(QObject):
    """One background thread; ``submit(work, callback)`` calls ``callback(result, error)`` on the GUI thread."""

    def __init__(self, parent: QObject | None, name: str) -> None:
        super().__init__(parent)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._waiting: list[tuple[Future, Callback]] = []
        self._timer = QTimer(self)
        self._timer.setInterval(POLL_MS)
        self._timer.timeout.connect(self._deliver)
        self._closed = False

    @property
    def pending(self) -> int:
        """Work submitted whose callback has not run yet (a cancelled one counts until its tick)."""
        return len(self._waiting)

    def submit(self, work: Callable[[], Any], callback: Callback) -> Future:
        """Run ``work()`` on the thread; ``callback(result, None)`` or ``callback(None, error)`` follows here.

        ``future.cancel()`` before it starts drops it silently (no callback)."""
        future = self._pool.submit(work)
        self._waiting.append((future, callback))
        if not self._closed:
            self._timer.start()
        return future

    def _deliver(self) -> None:
        while self._waiting and self._waiting[0][0].done():
            future, callback = self._waiting.pop(0)
            if future.cancelled():
                continue
            error = future.exception()
            callback(None if error is not None else future.result(), error)
        if not self._waiting:
            self._timer.stop()

    def shutdown(self, wait: bool = False) -> None:
        """Deliver nothing more; ``wait`` lets running work finish (a file being written), else it is abandoned."""
        self._closed = True
        self._timer.stop()
        self._waiting.clear()
        self._pool.shutdown(wait=wait, cancel_futures=not wait)

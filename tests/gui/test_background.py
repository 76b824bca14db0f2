"""QtBackground: results come back on the GUI thread, in order; nothing after shutdown; cancelled work is dropped."""

from __future__ import annotations

import threading

from gui.qt_background import QtBackground


def test_results_arrive_on_the_gui_thread_in_order(qtbot, qapp) -> None:
    background = QtBackground(None, "test-bg")
    got, gate = [], threading.Event()

    def note(result, error) -> None:
        got.append((result, type(error).__name__ if error else None, threading.current_thread() is threading.main_thread()))

    workers = []
    background.submit(lambda: (gate.wait(5), workers.append(threading.current_thread().name))[1] or "first", note)
    background.submit(lambda: 1 / 0, note)
    dropped = background.submit(lambda: "never", note)
    assert dropped.cancel()  # still queued behind the first: dropped without a callback
    assert background.pending == 3 and got == []
    gate.set()
    qtbot.waitUntil(lambda: background.pending == 0, timeout=5_000)
    assert got == [("first", None, True), (None, "ZeroDivisionError", True)]
    assert workers and workers[0].startswith("test-bg")
    background.shutdown()


def test_nothing_is_delivered_after_shutdown(qtbot) -> None:
    background = QtBackground(None, "test-bg")
    got, gate = [], threading.Event()
    future = background.submit(lambda: gate.wait(5), lambda result, error: got.append(result))
    background.shutdown()  # the view closes while its work still runs
    gate.set()
    future.result(timeout=5)
    qtbot.wait(50)
    assert got == [] and background.pending == 0

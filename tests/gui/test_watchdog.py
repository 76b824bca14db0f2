"""The stall watchdog: a blocked event loop becomes one JSON line naming what blocked it; a free one logs nothing."""

from __future__ import annotations

import json
import time

from PySide6.QtCore import QTimer

from gui.watchdog import StallWatchdog, busy, install_from_env


def _blocking_handler(seconds: float) -> None:
    time.sleep(seconds)


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_a_stall_is_logged_with_what_ran(qtbot, tmp_path) -> None:
    log = tmp_path / "stalls.jsonl"
    dog = StallWatchdog(log)
    qtbot.wait(200)
    dog.reset()
    QTimer.singleShot(0, lambda: _blocking_handler(0.4))
    qtbot.waitUntil(lambda: bool(_lines(log)), timeout=5000)
    dog.stop()
    (record,) = [r for r in _lines(log) if r["ms"] > 300]
    assert record["ms"] < 2000 and "_blocking_handler" in record["during"]


def test_a_label_names_the_work(qtbot, tmp_path) -> None:
    log = tmp_path / "stalls.jsonl"
    dog = StallWatchdog(log)

    def labelled() -> None:
        with busy("exporting the report"):
            time.sleep(0.3)

    QTimer.singleShot(0, labelled)
    qtbot.waitUntil(lambda: bool(_lines(log)), timeout=5000)
    dog.stop()
    assert any(r["during"] == "exporting the report" and r["ms"] > 200 for r in _lines(log))


def test_short_work_logs_nothing_and_env_switches_it_on(qtbot, tmp_path, monkeypatch) -> None:
    log = tmp_path / "stalls.jsonl"
    monkeypatch.delenv("LAYERLAB_STALL_LOG", raising=False)
    assert install_from_env(None) is None
    monkeypatch.setenv("LAYERLAB_STALL_LOG", str(log))
    dog = install_from_env(None)
    assert dog is not None and dog.path == log
    for _ in range(5):
        QTimer.singleShot(0, lambda: _blocking_handler(0.01))
        qtbot.wait(50)
    dog.stop()
    assert not [r for r in _lines(log) if "_blocking_handler" in r["during"]]

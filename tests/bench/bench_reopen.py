"""Benchmark for reopening a session in the window: a 1,000-node model, its profile and sensitivity.

Run ``QT_QPA_PLATFORM=offscreen python tests/bench/bench_reopen.py [--repeats 5]``: opens the model in
the window (no worker jobs), saves the session, then reopens it ``--repeats`` times and prints, per
reopen, the time until the window is idle again (file read, views repainted, prediction landed) and
the event-loop gaps over 100 ms the stall watchdog saw (``gui.watchdog``), with what was running.
Target: no gap over 100 ms.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a checkout

__all__ = ["main"]

logger = logging.getLogger(__name__)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    from PySide6.QtCore import QSettings, QTimer
    from PySide6.QtWidgets import QApplication

    from engine.model.session import Session
    from gui.qt_main_window import QtMainWindow
    from tests.bench.bench_pdf import big_session

    app = QApplication.instance() or QApplication([])
    folder = Path(tempfile.mkdtemp(prefix="layerlab-reopen-"))
    loaded = big_session(folder, args.blocks)
    os.environ["LAYERLAB_STALL_LOG"] = str(folder / "stalls.jsonl")
    window = QtMainWindow(Session(), QSettings(str(folder / "s.ini"), QSettings.Format.IniFormat))
    window.live.model_opened = lambda: None  # no worker jobs: the tables are given
    window.inspector.attach_jobs(lambda *a, **k: None)
    window.files.ask = lambda *_: False
    window.show()

    def until(done, seconds: float = 120.0) -> None:
        end = time.time() + seconds
        while not done() and time.time() < end:
            app.processEvents()
            time.sleep(0.002)

    idle = lambda: not window.files.busy() and not window.graph_view.building and not getattr(window.graph_view, "pending", False) \
        and window.live.current_prediction() is not None  # noqa: E731
    window.session.set_model(loaded.model_path, loaded.graph, loaded.input_shapes)
    until(lambda: not window.graph_view.building)
    for name in ("plan", "profile", "sensitivity", "route"):
        getattr(window.session, f"set_{name}")(getattr(loaded, name))
    until(idle)
    window.files.save_to(folder / "s.layerlab.json")
    until(lambda: not window.files.busy())
    print(f"{len(loaded.graph.nodes)} nodes, {len(loaded.graph.layers)} layers")
    for i in range(args.repeats):
        until(lambda: False, 0.3)
        window.watchdog.reset()
        before = len(window.watchdog.stalls)
        start = time.perf_counter()
        QTimer.singleShot(0, lambda: window.files.open_session(folder / "s.layerlab.json"))
        until(lambda: False, 0.05)
        until(idle)
        took = time.perf_counter() - start
        until(lambda: False, 0.15)  # a gap is logged at the next tick
        gaps = window.watchdog.stalls[before:]
        print(f"reopen {i + 1}: idle after {took:.2f} s; gaps over 100 ms: "
              + (", ".join(f"{g['ms']:.0f} ms ({g['during']})" for g in gaps) or "none"))
    window.close()


if __name__ == "__main__":
    main()

"""The window on a synthetic 1,000-node model: first paint in time, and no event-loop stall over 100 ms.

This is a behaviour test of the off-thread design: every action a user takes (select 20 layers, cycle
every colour mode, export the HTML and the PDF report, save and reopen the session) is started from the
event loop, and the watchdog (``LAYERLAB_STALL_LOG``) logs each gap over 100 ms. On a loaded 2-core
machine a gap can come from the scheduler rather than from the window, so an action that stalled is run
again: it fails only when it stalls on every one of three tries. A real stall (work on the GUI thread) repeats each
time, so a 0.5 s one is still caught (the last test proves it); a one-off scheduling hiccup is not
blamed on the window. First paint gets the same three tries.

The reports are written by a job in the worker process (``engine.jobs.report_job``): drawn on the window's
file thread, the PDF starved the GUI thread of the GIL for 0.2-0.6 s on every try. In the worker they
queue behind the job that runs, here the layer options of the 1,000 nodes (20-40 s on a loaded machine),
so an action may take minutes to settle.

The segfault this module showed about one run in six (Qt's timer dispatch on a dangling receiver,
while a big graph was built) came from the watchdog's sampler reading the GUI thread's frames with
``sys._current_frames()``; it reads a ``faulthandler`` dump now (``gui.watchdog``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

import onnx
import pytest
from PySide6.QtCore import QTimer

from engine.evaluate.sensitivity import LayerSensitivity, Sensitivity
from engine.ir.graph import load_model
from engine.measure.tables import LayerProfile, Profile, Stats
from engine.model.plan import Plan
from engine.model.session import Session
from gui.colour_modes import MODES
from gui.qt_main_window import QtMainWindow
from tests.builders import residual_net

_TRIES = 3
_LIMIT_MS = 100.0
_FIRST_PAINT_S = 2.0
_SETTLE_MS = 240_000  # the first report waits for the worker's layer-options job (20-40 s at load 7-9)


@pytest.fixture(scope="module")
def big_model(tmp_path_factory) -> tuple[Path, Any]:
    """~1,000 nodes: 200 residual blocks (conv-relu-conv-add-relu) between a stem and a classifier."""
    path = tmp_path_factory.mktemp("big") / "big.onnx"
    onnx.save(residual_net(blocks=200, channels=4, size=4, seed=3), str(path))
    return path, load_model(path, {"x": (1, 3, 4, 4)})


def _results(graph: Any) -> tuple[Profile, Sensitivity]:
    layers = graph.layers
    profile = Profile(Stats(10.0, 9.0, 11.0), 1.0,
                      [LayerProfile(n.name, n.op_type, True, 0.01 + (i % 17) / 100, {"fp32": 0.01 + (i % 17) / 100})
                       for i, n in enumerate(layers)], [], 2, "test")
    drops = Sensitivity(0.9, "accuracy", {n.name: LayerSensitivity(n.name, {"int8": (i % 13) / 1000})
                                          for i, n in enumerate(layers)}, True)
    return profile, drops


def _window(qtbot, settings, log: Path | None, monkeypatch) -> QtMainWindow:
    if log is not None:
        monkeypatch.setenv("LAYERLAB_STALL_LOG", str(log))
    window = QtMainWindow(Session(), settings)
    qtbot.addWidget(window)
    window.live.model_opened = lambda: None  # no profiling: the tables are given
    window.files.ask = lambda *_: False
    window.show()
    return window


def test_first_paint_of_a_thousand_nodes(qtbot, settings, big_model, monkeypatch) -> None:
    path, graph = big_model
    assert 950 <= len(graph.nodes) <= 1100
    times = []
    for _ in range(_TRIES):  # a loaded machine may be slow once; a slow window is slow every time
        window = _window(qtbot, settings, None, monkeypatch)
        qtbot.wait(50)
        start = time.perf_counter()
        with qtbot.waitSignal(window.graph_view.built, timeout=30_000):
            window.session.set_model(path, graph, {"x": (1, 3, 4, 4)})
        window.graph_view.viewport().repaint()  # the first paint of what the user sees
        times.append(time.perf_counter() - start)
        if times[-1] < _FIRST_PAINT_S:
            break
    view = window.graph_view
    assert view.layers_only and len(view.items) == len(graph.layers)  # a big model opens compact
    visible = view.mapToScene(view.viewport().rect()).boundingRect()
    assert view.transform().m11() >= 0.45 or visible.contains(view.scene().itemsBoundingRect())  # readable or fitted
    assert min(times) < _FIRST_PAINT_S, f"first paint took {times} s"


def _run(qtbot, window: QtMainWindow, action: Callable[[], Any], settle: Callable[[], bool]) -> list[dict]:
    """Start ``action`` from the event loop, wait until ``settle()``; the stalls logged meanwhile."""
    dog = window.watchdog
    qtbot.wait(30)
    dog.reset()
    before = len(dog.stalls)
    QTimer.singleShot(0, action)
    qtbot.wait(60)
    qtbot.waitUntil(settle, timeout=_SETTLE_MS)
    qtbot.wait(150)  # a stall ends at the next tick: give it time to be logged
    return dog.stalls[before:]


def _worst_of_tries(qtbot, window: QtMainWindow, action: Callable[[], Any], idle: Callable[[], bool]) -> tuple[list[float], list[dict]]:
    """The worst gap of each try of ``action`` (up to three, stopping at the first under the limit), and the last try's stalls."""
    done = {"n": 0}

    def counted() -> None:
        action()
        done["n"] += 1

    worst: list[float] = []
    stalls: list[dict] = []
    for _ in range(_TRIES):
        target = done["n"] + 1
        stalls = _run(qtbot, window, counted, lambda t=target: done["n"] >= t and idle())
        worst.append(max((s["ms"] for s in stalls), default=0.0))
        if worst[-1] <= _LIMIT_MS:
            break
    return worst, stalls


def _opened(qtbot, settings, big_model, log: Path, monkeypatch) -> QtMainWindow:
    path, graph = big_model
    window = _window(qtbot, settings, log, monkeypatch)
    profile, sensitivity = _results(graph)
    with qtbot.waitSignal(window.graph_view.built, timeout=30_000):
        window.session.set_model(path, graph, {"x": (1, 3, 4, 4)})
    window.session.set_plan(Plan())
    window.session.set_profile(profile)
    window.session.set_sensitivity(sensitivity)
    assert window.watchdog is not None
    return window


def test_no_stall_over_100_ms(qtbot, settings, big_model, tmp_path, monkeypatch) -> None:
    _, graph = big_model
    log = tmp_path / "stalls.jsonl"
    window = _opened(qtbot, settings, big_model, log, monkeypatch)
    view, files, live = window.graph_view, window.files, window.live
    # idle: no file work, no layout, and the prediction of the current plan has landed
    idle = lambda: not files.busy() and not view.building and live.current_prediction() is not None  # noqa: E731
    actions: list[tuple[str, Callable[[], Any]]] = []
    for name in [n.name for n in graph.layers][::20][:20]:
        actions.append((f"select {name}", lambda n=name: view.select([n], centre=True)))
    for mode in MODES:
        actions.append((f"colour by {mode}", lambda m=mode: view.set_colour_mode(m)))
    actions.append(("export HTML report", lambda: files.export("report", tmp_path / "r.report.html")))
    actions.append(("export PDF report", lambda: files.export("pdf", tmp_path / "r.report.pdf")))
    actions.append(("save session", lambda: files.save_to(tmp_path / "s.layerlab.json")))
    actions.append(("reopen session", lambda: files.open_session(tmp_path / "s.layerlab.json")))
    assert len([a for a in actions if a[0].startswith("select")]) == 20

    failures = []
    for label, action in actions:
        worst, stalls = _worst_of_tries(qtbot, window, action, idle)
        if min(worst) > _LIMIT_MS:
            failures.append(f"{label}: {worst} ms, during {stalls}")
    assert (tmp_path / "r.report.html").stat().st_size > 0
    assert (tmp_path / "r.report.pdf").read_bytes().startswith(b"%PDF")
    assert len(view.items) == len(graph.layers)  # the reopened session is drawn
    lines = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    assert all(set(r) == {"ms", "during"} for r in lines)
    assert not failures, "\n".join(failures)


def _deliberate_stall() -> None:
    time.sleep(0.5)


def test_a_real_stall_fails_on_every_try(qtbot, settings, big_model, tmp_path, monkeypatch) -> None:
    """The harness is not blind: work on the GUI thread stalls each of the three tries and is named."""
    window = _opened(qtbot, settings, big_model, tmp_path / "stalls.jsonl", monkeypatch)
    worst, stalls = _worst_of_tries(qtbot, window, _deliberate_stall, lambda: True)
    assert len(worst) == _TRIES and min(worst) > 400, worst
    assert any("_deliberate_stall" in s["during"] for s in stalls)

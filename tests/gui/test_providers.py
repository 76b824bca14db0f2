"""Execution providers in the window: the Target menu lists what the target's ONNX Runtime has (asked in the
worker), a checked provider goes into the next profile and the status bar, the Inspector shows a layer's
times per provider and moves it between providers as an undoable plan edit."""

from __future__ import annotations

from dataclasses import replace

from tests.engine.optimize.tables import fixed_profile
from tests.gui.test_inspector import _choose

_OV = "OpenVINOExecutionProvider"
_CPU = "CPUExecutionProvider"


def test_the_target_menu_asks_the_worker_and_lists_the_providers(window, qtbot) -> None:
    from engine.jobs.catalogue import available_providers_job
    from engine.progress import run

    menu = window.targets
    menu.rebuild()
    menu.providers_menu.aboutToShow.emit()  # opening the submenu asks the current target (this machine)
    qtbot.waitUntil(lambda: None in menu.available, timeout=20000)
    assert menu.available[None] == run(available_providers_job(None))
    entries = [a.text() for a in menu.providers_menu.actions()]
    assert entries[0] == "CPU (always)" and not menu.providers_menu.actions()[0].isEnabled()


def test_a_checked_provider_is_profiled_and_shown_in_the_status_bar(window, monkeypatch) -> None:
    menu = window.targets
    started = []
    monkeypatch.setattr(window.live, "profile", lambda: started.append(tuple(window.live.providers)))
    menu.set_available(None, [_CPU, _OV])
    menu.rebuild()
    ov = next(a for a in menu.providers_menu.actions() if a.text() == "OpenVINO")
    assert ov.isCheckable() and not ov.isChecked()
    ov.trigger()
    assert window.live.providers == (_OV,) and started == [(_OV,)]
    assert menu.label.text() == "Numbers from: this machine · CPU, OpenVINO"
    # the profile job gets them (engine.jobs.catalogue.profile_model_job's ``providers``)
    jobs = []
    monkeypatch.setattr(window.live, "_run_job", lambda name, kwargs, *a, **k: jobs.append((name, kwargs)))
    monkeypatch.undo()  # the real live.profile again
    monkeypatch.setattr(window.live, "_run_job", lambda name, kwargs, *a, **k: jobs.append((name, kwargs)))
    window.live.profile()
    assert jobs[-1][0] == "profile" and jobs[-1][1]["providers"] == (_OV,)
    # a target that lacks it drops it
    menu.set_available(None, [_CPU])
    assert window.live.providers == () and menu.label.text() == "Numbers from: this machine · CPU"


def _with_provider_times(session) -> None:
    graph = session.graph
    prof = fixed_profile(graph)
    layers = [replace(lp, routines={**lp.routines, "fp32@OpenVINO": 0.25, "int8@OpenVINO": 0.125}) if lp.name == "/conv2/Conv"
              else lp for lp in prof.layers]
    session.set_profile(replace(prof, layers=layers, crossings={f"{_CPU}>{_OV}": [0.01, 0.0], f"{_OV}>{_CPU}": [0.01, 0.0]}))


def test_the_inspector_shows_times_per_provider_and_moves_a_layer_undoably(window) -> None:
    session, inspector, stack = window.session, window.inspector, window.undo_stack
    _with_provider_times(session)
    window.graph_view.select(["/conv2/Conv"])
    combo, label = inspector.provider.combo, inspector.provider.label
    assert [combo.itemData(i) for i in range(combo.count())] == [_CPU, _OV] and combo.currentData() == _CPU
    assert label.text() == ("per provider (segment times):\n▶ CPU: fp32 1.500 ms, int8 0.150 ms\n"
                            "OpenVINO: fp32 0.250 ms, int8 0.125 ms\nplan: runs on CPU")
    _choose(combo, _OV)
    assert session.plan.settings_for("/conv2/Conv").provider == _OV and stack.undoText() == "Run on OpenVINO of /conv2/Conv"
    assert "▶ OpenVINO" in label.text() and label.text().endswith("plan: runs on OpenVINO")
    # the prediction prices the layer on OpenVINO, with its crossings in and out
    prediction = window.live.predict_now()
    assert prediction.routines["/conv2/Conv"] == "fp32@OpenVINO"
    stack.undo()
    assert session.plan.settings_for("/conv2/Conv").provider is None and combo.currentData() == _CPU
    window.graph_view.select(["/conv1/Conv"])  # no provider times for this one: CPU only, nothing to choose
    assert combo.count() == 1 and not combo.isEnabled() and not label.isVisibleTo(inspector)

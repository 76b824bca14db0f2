"""The window's sweep options: the structural check reaches the sweep job; the evaluator reaches the layer-options job."""

from __future__ import annotations

from engine.jobs import catalogue
from engine.progress import run


def test_the_structural_check_is_remembered_and_the_sweep_measures_structural_variants(window, settings, digits_eval) -> None:
    from engine.evaluate.sensitivity import SweepSettings

    calls: dict[str, dict] = {}
    window.live._run_job = lambda name, kwargs, *args, **kw: calls.setdefault(name, kwargs)
    window.open_evaluator(digits_eval)
    action = window.structural_action
    jobs = next(a.menu() for a in window.menuBar().actions() if a.text() == "&Jobs")
    assert action.isCheckable() and not action.isChecked() and action in jobs.actions()
    window.live.sweep_settings = SweepSettings(routines=("fp16",), layers=("/conv1/Conv",))  # keep the run short
    window.live.sensitivity()
    assert calls[catalogue.SENSITIVITY]["structural"] is False
    action.trigger()  # checked
    assert window.live.sweep_structural and str(settings.value("sweep/structural")) == "true"
    calls.clear()
    window.live.sensitivity()
    kwargs = calls[catalogue.SENSITIVITY]
    assert kwargs["structural"] is True
    # the job the worker would run with these arguments measures the structural variants of the layer
    result = run(catalogue.resolve(catalogue.SENSITIVITY)(**kwargs))
    drops = result.layers["/conv1/Conv"].drops
    assert {"fp16", "prune:0.25", "prune:0.5"} <= set(drops)
    action.trigger()  # unchecked again
    assert not window.live.sweep_structural and str(settings.value("sweep/structural")) == "false"


def test_a_new_window_reads_the_structural_check_from_its_settings(qtbot, session, settings) -> None:
    from gui.qt_main_window import QtMainWindow

    settings.setValue("sweep/structural", "true")
    w = QtMainWindow(session, settings)
    qtbot.addWidget(w)
    assert w.structural_action.isChecked() and w.live.sweep_structural


def test_layer_options_are_recomputed_on_the_evaluators_calibration(window, digits_eval) -> None:
    from gui.layer_options import facts_for, store_facts

    calls: list[dict] = []
    window.inspector._run_job = lambda name, kwargs, label, done, **kw: calls.append({"name": name, **kwargs, "done": done})
    window.open_evaluator(digits_eval)
    assert calls and calls[-1]["name"] == catalogue.LAYER_FACTS and calls[-1]["evaluator"] == str(digits_eval)
    request = {k: v for k, v in calls[-1].items() if k not in ("name", "done")}
    facts = run(catalogue.resolve(catalogue.LAYER_FACTS)(**request))
    assert facts.evaluator == str(digits_eval) and facts.rank["/fc1/Gemm"].data_aware
    plain = facts_for(window.session.graph)
    try:
        calls[-1]["done"](facts)  # what the worker hands back
        window.graph_view.select(["/fc1/Gemm"])
        window.inspector.refresh()
        assert "calibration data" in window.inspector.energy_plot.getPlotItem().titleLabel.text
        calls.clear()
        window.inspector._request_facts()  # the same evaluator: the cached facts stand
        assert calls == []
    finally:
        store_facts(plain)  # other tests expect the weights' curves of the shared digits graph


def test_tune_takes_the_structural_check_too(window, digits_eval, monkeypatch) -> None:
    import pytest

    import engine.optimize.tune as tune

    calls: dict[str, dict] = {}
    window.live._run_job = lambda name, kwargs, *args, **kw: calls.setdefault(name, kwargs)
    window.open_evaluator(digits_eval)
    seen = []

    class Stop(Exception):
        pass

    def fake_tune_job(graph, evaluator, options, *rest):  # what the worker's tune job would run with
        seen.append(options.structural)
        raise Stop
        yield

    monkeypatch.setattr(tune, "tune_job", fake_tune_job)
    for checked in (False, True):
        window.structural_action.setChecked(checked)
        calls.clear()
        window.live.tune()
        kwargs = calls[catalogue.TUNE]
        assert kwargs["structural"] is checked
        with pytest.raises(Stop):
            run(catalogue.resolve(catalogue.TUNE)(**kwargs))
    assert seen == [False, True]

"""Tune in the window: the budget box, the job in the worker, one undoable plan change, trials per round."""

from __future__ import annotations

import pytest

from engine.model.plan import Plan
from engine.measure.profiler import ProfileOptions
from engine.optimize.tune import TuneOptions
from gui.qt_main_window import QtMainWindow


@pytest.fixture
def fast_tune(tmp_path) -> TuneOptions:
    profile = ProfileOptions(warmup=1, repeats=3, profile_runs=2, cache_dir=tmp_path / "cache",
                             routines=("fp32", "int8", "int8_dynamic"))
    return TuneOptions(repeats=3, max_rounds=2, profile=profile)


def test_the_budget_is_remembered(window, qtbot, settings, session) -> None:
    assert window.max_drop_box.value() == pytest.approx(0.01) and window.live.max_drop == pytest.approx(0.01)
    window.max_drop_box.setValue(0.05)
    assert window.live.max_drop == pytest.approx(0.05)
    again = QtMainWindow(session, settings)
    qtbot.addWidget(again)
    assert again.max_drop_box.value() == pytest.approx(0.05) and again.live.max_drop == pytest.approx(0.05)


def test_tune_without_an_evaluator_says_so(window) -> None:
    assert window.tune_action.isEnabled()
    window.tune_action.trigger()
    assert window.job is None and "evaluator" in window.status_text.text()


def test_tune_lands_as_one_undoable_plan_change_with_its_rounds(window, qtbot, digits_eval, fast_tune) -> None:
    s = window.session
    first = s.graph.layers[0].name
    before = Plan.from_dict({"default": {"precision": "auto"}, "layers": {first: {"precision": "fp32"}}})
    s.set_plan(before)
    window.open_evaluator(digits_eval)
    window.live.tune_options = fast_tune
    window.max_drop_box.setValue(0.02)
    window.tune_action.trigger()
    jobs = [j for j in [window.job, *window.jobs.worker.waiting()] if j is not None]  # layer options may go first
    assert any(j.label.startswith("Tuning") for j in jobs), [j.label for j in jobs]
    qtbot.waitUntil(lambda: any(t.label.startswith("tune round") for t in s.trials), timeout=180_000)
    assert not window.last_error
    tuned = s.plan
    assert window.undo_stack.count() == 1 and window.undo_stack.text(0).startswith("tune")
    assert tuned.settings_for(first).precision == "fp32"  # pinned before the tune: stays pinned
    assert all(tuned.settings_for(n.name).precision in ("fp32", "int8", "int8_dynamic") for n in s.graph.layers)
    rounds = [t for t in s.trials if t.label.startswith("tune round")]
    assert rounds and all(t.measured.ms > 0 and t.routines[first] == "fp32" for t in rounds)
    assert s.baseline.metric is not None and s.profile is not None and s.sensitivity is not None
    assert {n: r for n, r in s.route.routines.items() if n in tuned.layers} == {
        n.name: tuned.settings_for(n.name).precision for n in s.graph.layers}
    assert window.status_text.text().startswith("tuned:")
    assert s.current is not None and s.current.metric is not None  # tune measured this very variant
    assert not window.live._measure_timer.isActive()  # so no second Measure of it
    window.undo_stack.undo()
    assert s.plan == before
    window.undo_stack.redo()
    assert s.plan == tuned

"""The live engine: profile and sensitivity after opening, instant prediction, debounced Measure, trials, charts, status."""

from __future__ import annotations

import re

import pytest

from engine.model.plan import Plan
from engine.measure.profiler import ProfileOptions
from engine.model.session import Measurement, Session, Trial
from gui.plan_commands import SetPlanCommand
from gui.qt_charts import layer_bars
from gui.qt_main_window import QtMainWindow

SHAPES = {"input": (1, 1, 8, 8)}


@pytest.fixture
def fast(tmp_path):
    return ProfileOptions(warmup=1, repeats=3, profile_runs=2, cache_dir=tmp_path / "cache")


def _new_window(qtbot, settings, fast) -> QtMainWindow:
    w = QtMainWindow(Session(), settings)
    qtbot.addWidget(w)
    w.live.profile_options = fast
    w.live.measure_repeats = 3
    w.show()
    return w


def _int8(window, name: str) -> None:
    after = Plan.from_dict({"layers": {name: {"precision": "int8"}}})
    window.undo_stack.push(SetPlanCommand(window.session, window.session.plan, after, "int8"))


def test_opening_profiles_and_sweeps_then_the_status_shows_the_baseline(qtbot, settings, fast, digits_model,
                                                                       digits_eval) -> None:
    w = _new_window(qtbot, settings, fast)
    w.open_evaluator(digits_eval)
    w.open_model(digits_model)  # no shapes given: the symbolic batch becomes 1
    qtbot.waitUntil(lambda: w.session.sensitivity is not None, timeout=120_000)
    s = w.session
    assert s.input_shapes == SHAPES and s.profile is not None and not w.last_error
    assert s.baseline.ms == s.profile.end_to_end.median and s.baseline.metric == s.sensitivity.baseline
    assert w.results.text("latency", "baseline").endswith("ms")
    assert w.results.text("latency", "measured") == "not measured yet"
    assert w.results.text("metric", "baseline") == f"{s.sensitivity.baseline:.4f}"
    names, base, current = layer_bars(s)
    assert names == [n.name for n in s.graph.layers] and base == current  # an fp32 plan runs fp32 routines


def test_opening_does_not_mark_the_session_dirty(qtbot, settings, fast, digits_model) -> None:
    w = _new_window(qtbot, settings, fast)
    w.live.profile_options = None
    w.live.profile = lambda: None  # only the opening itself is under test
    job = w.open_model(digits_model)
    with qtbot.waitSignal(job.ended, timeout=60_000):
        pass
    assert w.session.graph is not None and not w.session.dirty and "*" not in w.windowTitle()


def test_an_edit_predicts_at_once_and_measures_a_second_later(window, qtbot, fast) -> None:
    window.live.profile_options = fast
    window.live.measure_repeats = 3
    job = window.live.profile()
    with qtbot.waitSignal(job.ended, timeout=120_000):
        pass
    first = window.session.graph.layers[0].name
    qtbot.waitUntil(lambda: window.live.current_prediction() is not None, timeout=10_000)  # of the new profile
    before = window.session.route.latency_ms
    _int8(window, first)
    qtbot.waitUntil(lambda: window.session.route.routines[first] == "int8", timeout=10_000)  # no job needed
    route = window.session.route
    assert route.latency_ms != before
    assert window.results.text("latency", "predicted").endswith("ms")
    assert window.session.current is None and window.live._measure_timer.isActive()
    qtbot.waitUntil(lambda: window.session.current is not None, timeout=60_000)
    trial = window.session.trials[-1]
    assert trial.plan["layers"][first]["precision"] == "int8" and trial.routines[first] == "int8"
    assert trial.measured.ms > 0 and trial.predicted.ms == pytest.approx(route.latency_ms)
    assert window.results.text("latency", "measured").endswith("ms")
    # timed in turns with fp32 in the same job: the baseline is that fp32, the ratio carries its spread
    base, cur = window.session.baseline, window.session.current
    words = window.results.text("speedup", "measured")
    assert re.fullmatch(r"\d+\.\d\dx (faster|slower|\(same\)) \(p10–p90 \d+\.\d\d–\d+\.\d\dx\)", words), words
    ratio = base.ms / cur.ms
    assert words.startswith(f"{ratio:.2f}x faster" if ratio > 1.005 else f"{1 / ratio:.2f}x" if ratio < 0.995 else "1.00x")
    assert "random inputs" in window.results.note.text()  # no evaluator: int8 calibrated on random inputs


def test_a_result_for_an_older_plan_never_lands_on_the_new_one(window, qtbot) -> None:
    from engine.jobs.catalogue import PlanMeasurement, predict_plan

    window.live.auto_measure = False
    names = [n.name for n in window.session.graph.layers]
    _int8(window, names[0])
    old = window.session.plan
    prediction = predict_plan(window.session.graph, old)
    fresh = PlanMeasurement(old.to_dict(), Measurement(1.0, 0.9, 1.1, None, 10), Measurement(2.0, 1.9, 2.1, None, 40))
    window.live._measured(old, prediction, fresh)
    assert window.session.current.ms == 1.0 and window.session.baseline.ms == 2.0
    assert window.results.text("speedup", "measured") == "2.00x faster (p10–p90 1.82–2.22x)"
    _int8(window, names[1])  # a new plan: the old measurement no longer describes it
    assert window.session.current is None
    assert window.results.text("latency", "measured") == "not measured yet"
    window.live._measured(old, prediction, fresh)  # a late result for the older plan
    assert window.session.current is None and window.session.trials[-1].label.endswith("(older plan)")
    window.undo_stack.undo()  # back to the measured plan: its result may land again
    window.live._measured(old, prediction, fresh)
    assert window.session.current.ms == 1.0


def test_quick_edits_measure_only_the_last_plan(window, qtbot) -> None:
    window.live.measure_repeats = 3
    names = [n.name for n in window.session.graph.layers]
    _int8(window, names[0])
    _int8(window, names[1])  # restarts the wait: the first plan is never measured
    qtbot.waitUntil(lambda: window.session.current is not None, timeout=60_000)
    qtbot.wait(300)
    assert len(window.session.trials) == 1 and set(window.session.trials[0].plan["layers"]) == {names[1]}


def test_a_newer_measure_replaces_a_running_one(window, qtbot) -> None:
    window.live.auto_measure = False
    window.live.measure_repeats = 3
    window.live.predict_now()  # Measure builds the variant from the prediction's routines
    first = window.live.measure()
    second = window.live.measure()
    with qtbot.waitSignal(second.ended, timeout=60_000):
        pass
    assert first.outcome is None or first.outcome.status == "cancelled"
    assert len(window.session.trials) == 1


def test_clicking_a_trial_restores_its_plan_undoably(window, qtbot) -> None:
    window.live.auto_measure = False
    name = window.session.graph.layers[0].name
    plan = Plan.from_dict({"layers": {name: {"precision": "int8"}}})
    window.session.set_baseline(Measurement(ms=2.0, metric=0.9))
    window.session.add_trial(Trial(plan.to_dict(), {name: "int8"}, Measurement(ms=1.0), Measurement(ms=1.2, metric=0.85)))
    qtbot.waitUntil(lambda: len(window.charts.scatter.points()) == 1)  # the charts redraw on the next turn
    assert window.charts.scatter.points()[0].pos().x() == pytest.approx(1.2)
    window.charts.restore(0)
    assert window.session.plan.settings_for(name).precision == "int8"
    assert window.session.current.ms == 1.2 and not window.live._measure_timer.isActive()
    window.undo_stack.undo()
    assert window.session.plan.settings_for(name).precision == "fp32"


def test_profile_measure_and_tune_take_one_thread_count(window, digits_eval) -> None:
    """Baseline, predicted and measured compare only at one thread count: the profile options' goes to all three."""
    from engine.jobs import catalogue

    calls: dict[str, dict] = {}
    window.live._run_job = lambda name, kwargs, *args, **kw: calls.setdefault(name, kwargs)
    window.open_evaluator(digits_eval)
    for threads in (1, None):  # None: each job takes the physical cores, the same way
        calls.clear()
        window.live.profile_options = ProfileOptions(threads=threads, repeats=3)
        window.live.profile()
        window.live.predict_now()  # Measure builds the variant from the prediction's routines
        window.live.measure()
        window.live.tune()
        got = {catalogue.PROFILE: calls[catalogue.PROFILE]["options"].threads,
               catalogue.MEASURE: calls[catalogue.MEASURE]["threads"], catalogue.TUNE: calls[catalogue.TUNE]["threads"]}
        assert got == dict.fromkeys(got, threads)


def test_an_evaluator_from_outside_the_session_folder_runs_only_once_the_user_opens_it(window, digits_eval,
                                                                                      tmp_path, monkeypatch) -> None:
    import shutil

    monkeypatch.setenv("LAYERLAB_CACHE", str(tmp_path / "cache"))  # the trust list lives there: never the user's

    from engine.io.session_file import load_session, save_session
    from gui.qt_file_actions import adopt

    elsewhere = tmp_path / "elsewhere" / "theirs.npz"
    elsewhere.parent.mkdir()
    shutil.copy(digits_eval, elsewhere)
    s = window.session
    s.set_evaluator(elsewhere)
    (tmp_path / "sessions").mkdir()
    save_session(s, tmp_path / "sessions" / "s.layerlab.json")
    (tmp_path / "cache" / "trusted_evaluators.json").unlink(missing_ok=True)  # someone else's file, then
    loaded = load_session(tmp_path / "sessions" / "s.layerlab.json")
    assert not loaded.evaluator_trusted and loaded.evaluator_path.resolve() == elsewhere.resolve()
    adopt(s, loaded)
    calls = []
    window.live._run_job = lambda name, kwargs, *args, **kw: calls.append(name)
    assert window.live.sensitivity() is None and window.live.tune() is None and calls == []
    status = window.status_text.text()
    assert str(elsewhere.resolve()) in status and "not run" in status  # the full path, not only its name
    window.open_evaluator(elsewhere)  # the user's own choice: now it runs
    window.live.sensitivity()
    assert calls == ["sensitivity"]


def _blocking_predictions(monkeypatch, release):
    """``predict_plan`` that, for a plan with int8 layers, waits until ``release`` is set: the edit must not wait."""
    import threading

    from gui import qt_live_engine

    real, calls = qt_live_engine.predict_plan, []

    def predict(graph, plan, *args):
        calls.append(threading.current_thread() is threading.main_thread())
        if any(s.precision == "int8" for s in plan.layers.values()):
            release.wait(10)
        return real(graph, plan, *args)

    monkeypatch.setattr(qt_live_engine, "predict_plan", predict)
    return calls


def test_the_prediction_never_blocks_the_event_loop(window, qtbot, monkeypatch) -> None:
    import threading

    window.live.auto_measure = False
    release = threading.Event()
    calls = _blocking_predictions(monkeypatch, release)
    started = []
    monkeypatch.setattr(window.live, "_run_job", lambda name, kwargs, *a, **k: started.append(kwargs["routines"]))
    name = window.session.graph.layers[0].name
    _int8(window, name)  # returns while the prediction is still waiting: it runs off the GUI thread
    assert not release.is_set() and window.live.current_prediction() is None
    assert window.live.measure() is None  # Measure waits for the routines of this plan ...
    release.set()
    qtbot.waitUntil(lambda: window.session.route is not None and window.session.route.routines.get(name) == "int8",
                    timeout=10_000)
    assert window.live.current_prediction().routines[name] == "int8" and calls and not any(calls)  # never on the GUI thread
    assert [r[name] for r in started] == ["int8"]  # ... and starts once it landed


def test_a_prediction_for_an_older_plan_never_lands(window, qtbot, monkeypatch) -> None:
    import threading

    window.live.auto_measure = False
    release = threading.Event()
    _blocking_predictions(monkeypatch, release)
    landed = []
    window.session.events.route.connect(lambda route: landed.append(dict(route.routines)))
    name = window.session.graph.layers[0].name
    _int8(window, name)  # slow: still computing when ...
    window.undo_stack.undo()  # ... the user goes back to all fp32
    release.set()
    qtbot.waitUntil(lambda: bool(landed), timeout=10_000)
    qtbot.wait(200)
    assert landed and all(r.get(name) == "fp32" for r in landed)  # the int8 plan's route never landed
    assert window.session.route.routines[name] == "fp32"

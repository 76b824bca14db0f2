"""The window's jobs: one worker process for all of them, chained progress, pending cells, cancelled partial results."""

from __future__ import annotations

from engine.measure.profiler import ProfileOptions
from engine.model.session import Session
from gui.qt_main_window import QtMainWindow
from tests.engine.jobs import toy_jobs as toy


def _record_jobs(window: QtMainWindow) -> list:
    """Every QtJob the window submits, in order (wraps the real submit)."""
    jobs: list = []
    submit = window.jobs.worker.submit

    def recording(*args, **kwargs):
        job = submit(*args, **kwargs)
        jobs.append(job)
        return job

    window.jobs.worker.submit = recording
    return jobs


def test_open_profile_sensitivity_and_measure_share_one_worker_process(qtbot, settings, tmp_path, digits_model,
                                                                      digits_eval) -> None:
    w = QtMainWindow(Session(), settings)
    qtbot.addWidget(w)
    w.live.profile_options = ProfileOptions(warmup=1, repeats=3, profile_runs=2, cache_dir=tmp_path / "cache")
    w.live.measure_repeats = 3
    w.show()
    jobs = _record_jobs(w)
    w.open_evaluator(digits_eval)
    w.open_model(digits_model)
    qtbot.waitUntil(lambda: w.session.sensitivity is not None, timeout=180_000)
    qtbot.waitUntil(lambda: w.live.current_prediction() is not None, timeout=10_000)  # Measure uses its routines
    measure = w.live.measure()
    with qtbot.waitSignal(measure.ended, timeout=120_000):
        pass
    names = [j.name for j in jobs]
    for name in ("open_model", "profile", "sensitivity", "measure"):
        assert name in names
    finished = [j for j in jobs if j.outcome is not None and j.outcome.ok and j.name != "layer_facts"]
    assert {"open_model", "profile", "sensitivity", "measure"} <= {j.name for j in finished}
    pids = {j.pid for j in finished}
    assert len(pids) == 1 and None not in pids and w.jobs.worker.pid in pids
    assert w.jobs.worker.worker.restarts == 0 and not w.last_error


def test_chained_jobs_keep_progress_and_cancel_visible(window, qtbot) -> None:
    first = window.run_job(toy.COUNTING, {"n": 2}, "First", lambda _: None, kind="first")
    second = window.run_job(toy.SLOW, {"steps": 200, "pause": 0.05}, "Second", lambda _: None, kind="second")
    with qtbot.waitSignal(first.ended, timeout=60_000):
        pass
    qtbot.waitUntil(lambda: second.last_progress is not None and second.last_progress.done >= 3, timeout=60_000)
    status = window.job_status
    assert status.job is second and status.isVisible()
    assert status.cancel_button.isVisible() and status.cancel_button.isEnabled()
    assert status.bar.maximum() == 200 and status.bar.value() >= 3
    with qtbot.waitSignal(second.cancelled, timeout=5_000):
        status.cancel_button.click()
    assert not status.isVisible() and not window.busy()


def test_a_late_end_of_the_previous_job_does_not_hide_the_next(window, qtbot) -> None:
    first = window.run_job(toy.SLOW, {"steps": 200, "pause": 0.05}, "First", lambda _: None, kind="first")
    second = window.run_job(toy.SLOW, {"steps": 200, "pause": 0.05}, "Second", lambda _: None, kind="second")
    window.job_status.attach(second)  # the next job took the widget before the first one's end arrived
    first.ended.emit()
    assert window.job_status.isVisible() and window.job_status.job is second
    window.cancel_job(everything=True)
    with qtbot.waitSignal(first.ended, timeout=5_000):
        pass


def test_jobs_queue_in_order_in_the_one_process(window, qtbot) -> None:
    started: list[str] = []
    jobs = [window.run_job(toy.PID, {"tag": str(i)}, f"job {i}", lambda _: None, kind=f"k{i}") for i in range(3)]
    for job in jobs:
        job.started.connect(lambda job=job: started.append(job.label))
    with qtbot.waitSignal(jobs[-1].ended, timeout=60_000):
        pass
    assert started[-2:] == ["job 1", "job 2"]  # job 0 may have started before the connection
    assert len({j.outcome.result for j in jobs}) == 1  # one process ran them all


def test_results_cells_say_what_a_pending_job_will_fill(window, qtbot, digits_eval) -> None:
    results = window.results
    assert results.text("metric", "baseline") == "needs an evaluator"
    window.session.set_evaluator(digits_eval)
    assert results.text("metric", "baseline") == "not measured yet"
    results.set_pending({"sensitivity", "profile"})
    assert results.text("metric", "baseline") == "running…" and results.text("latency", "baseline") == "profiling…"
    results.set_pending(set())
    window.live.auto_measure = False
    window.live.measure_repeats = 3
    window.live.predict_now()  # Measure builds the variant from the prediction's routines
    job = window.live.measure()
    assert results.text("latency", "measured") == "measuring…"  # queued or running: either way it is coming
    with qtbot.waitSignal(job.ended, timeout=120_000):
        pass
    assert results.text("latency", "measured").endswith("ms")


def test_a_cancelled_sweep_keeps_the_layers_it_finished(window, qtbot) -> None:
    """The window hands a cancelled sweep's partial result to the live engine, which keeps it (the engine's
    own sweep returning its partial result on cancel is tested in tests/engine/evaluate/test_sensitivity.py)."""
    live, layers = window.live, [n.name for n in window.session.graph.layers]
    job = window.run_job(toy.PARTIAL_SWEEP, {"names": layers}, "Sensitivity", window.session.set_sensitivity,
                         kind="sensitivity", on_partial=live._partial_sensitivity)
    qtbot.waitUntil(lambda: job.last_progress is not None and job.last_progress.done >= 2, timeout=60_000)
    with qtbot.waitSignal(job.cancelled, timeout=5_000):
        window.job_status.cancel_button.click()
    sens = window.session.sensitivity
    assert sens is not None and not sens.complete
    assert 2 <= len(sens.layers) < len(layers) and list(sens.layers) == layers[:len(sens.layers)]
    assert f"kept {len(sens.layers)} layers, {len(layers) - len(sens.layers)} missing" in window.status_text.text()


def test_a_cancelled_profile_keeps_what_it_timed_once_fp32_is_in(window) -> None:
    from engine.measure.tables import LayerProfile, Profile, Stats

    graph = window.session.graph

    def partial(median: float) -> Profile:
        layers = [LayerProfile(n.name, n.op_type, n.tunable, 0.1, {"fp32": 0.1, "int8": 0.05} if n.tunable else {})
                  for n in graph.nodes]
        return Profile(Stats(median, median, median), 1.0, layers, [], 1, "test", complete=False)

    window.live._partial_profile(partial(0.0))  # cancelled before the fp32 run: nothing worth keeping
    assert window.session.profile is None
    kept = partial(2.0)
    window.live._partial_profile(kept)
    assert window.session.profile is kept and window.session.baseline.ms == 2.0
    assert window.status_text.text() == "Profiling cancelled: kept fp32 and int8"


def test_reopening_a_session_of_the_same_model_keeps_its_layer_options_job(window, qtbot, tmp_path) -> None:
    """The layer options of the model on screen stay valid: a reopen of its session does not cancel them."""
    from engine.jobs import catalogue

    window.live.model_opened = lambda: None  # no profile job: only the two below are in the queue
    facts = window.run_job(toy.SLOW, {"steps": 60, "pause": 0.05}, "Layer options", lambda _: None, kind="layer_facts")
    other = window.run_job(toy.SLOW, {"steps": 60, "pause": 0.05}, "Other", lambda _: None, kind="other")
    jobs = _record_jobs(window)
    window.files.ask = lambda *_: False
    window.files.save_to(tmp_path / "s.layerlab.json")
    qtbot.waitUntil(lambda: not window.files.busy(), timeout=10_000)
    graph = window.session.graph
    window.files.open_session(tmp_path / "s.layerlab.json")
    qtbot.waitUntil(lambda: not window.files.busy() and not other.running, timeout=10_000)
    assert window.session.graph is graph  # the same file at the same shapes: not loaded again
    assert other.outcome.status == "cancelled"
    assert catalogue.LAYER_FACTS not in [j.name for j in jobs]
    qtbot.waitUntil(lambda: not facts.running, timeout=30_000)
    assert facts.outcome.status == "finished"  # never cancelled

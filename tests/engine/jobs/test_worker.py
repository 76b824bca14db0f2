"""The worker: one persistent process runs catalogue jobs in turn; progress, results, errors, cancel, crashes, queue."""

from __future__ import annotations

import os
import time

import pytest

from engine.errors import LayerLabError
from engine.jobs import catalogue, loaded
from engine.jobs.worker import CANCEL_GRACE_S, Outcome, Started, Worker
from engine.progress import Progress
from tests.engine.jobs import toy_jobs as toy


@pytest.fixture
def worker():
    w = Worker()
    yield w
    w.close()


def _events(worker: Worker, job_id: int, timeout: float = 60.0) -> tuple[list, Outcome]:
    """Everything job ``job_id`` reported, until its outcome."""
    seen: list = []
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for event_id, event in worker.poll():
            if event_id != job_id:
                continue
            if isinstance(event, Outcome):
                return seen, event
            seen.append(event)
        time.sleep(0.01)
    raise AssertionError(f"job {job_id} did not end within {timeout} s")


def _run(worker: Worker, name: str, **kwargs) -> tuple[list[Progress], Outcome]:
    seen, outcome = _events(worker, worker.submit(name, kwargs))
    return [e for e in seen if isinstance(e, Progress)], outcome


def _wait_progress(worker: Worker, job_id: int, count: int = 1) -> None:
    seen = 0
    end = time.monotonic() + 60
    while seen < count and time.monotonic() < end:
        seen += sum(1 for i, e in worker.poll() if i == job_id and isinstance(e, Progress))
        time.sleep(0.01)
    assert seen >= count


def test_progress_and_result_are_relayed(worker) -> None:
    progress, outcome = _run(worker, toy.COUNTING, n=4)
    assert [p.done for p in progress] == [1, 2, 3, 4]
    assert progress[-1].message == "step 4"
    assert outcome.ok and outcome.result == {"total": 40}


def test_a_plain_function_is_a_job_too(worker) -> None:
    progress, outcome = _run(worker, toy.PLAIN, x=21)
    assert progress == [] and outcome.status == "finished" and outcome.result == 42


def test_jobs_share_one_process_and_run_in_the_order_queued(worker) -> None:
    ids = [worker.submit(toy.PID, {"tag": str(i)}) for i in range(4)]
    assert worker.running == ids[0] and worker.waiting == ids[1:]
    order, pids = [], {}
    end = time.monotonic() + 60
    while len(pids) < 4 and time.monotonic() < end:
        for job_id, event in worker.poll():
            if isinstance(event, Started):
                order.append(job_id)
            elif isinstance(event, Outcome):
                assert event.ok
                pids[job_id] = event.result
        time.sleep(0.01)
    assert order == ids  # first in, first run
    assert len(set(pids.values())) == 1 and worker.pid in pids.values()


def test_cancel_returns_the_partial_result_and_the_process_stays(worker) -> None:
    pid = _run(worker, toy.PID)[1].result
    job = worker.submit(toy.SLOW, {})
    _wait_progress(worker, job, 3)
    start = time.monotonic()
    worker.cancel(job)
    outcome = worker.wait(job, timeout=5)
    assert outcome is not None and outcome.status == "cancelled"
    assert time.monotonic() - start < CANCEL_GRACE_S  # stopped at its next yield, not killed
    assert outcome.result["partial"] >= 3
    assert _run(worker, toy.PID)[1].result == pid and worker.restarts == 0


def test_cancel_drops_a_waiting_job(worker) -> None:
    first = worker.submit(toy.SLOW, {"steps": 5, "pause": 0.05})
    second = worker.submit(toy.COUNTING, {"n": 2})
    third = worker.submit(toy.COUNTING, {"n": 3})
    worker.cancel(second)
    assert worker.waiting == [third]
    results = {}
    end = time.monotonic() + 60
    while len(results) < 3 and time.monotonic() < end:
        results.update({i: e for i, e in worker.poll() if isinstance(e, Outcome)})
        time.sleep(0.01)
    assert results[second].status == "cancelled" and results[second].result is None
    assert results[first].ok and results[third].result == {"total": 30}


def test_cancel_kills_and_restarts_a_worker_stuck_in_native_code(worker) -> None:
    job = worker.submit(toy.STUCK, {})
    _wait_progress(worker, job)
    stuck_pid = worker.pid
    worker.cancel(job)
    outcome = worker.wait(job, timeout=5)
    assert outcome is not None and outcome.status == "cancelled" and "restarted" in outcome.message
    assert worker.restarts == 1
    progress, after = _run(worker, toy.COUNTING, n=2)
    assert after.ok and after.result == {"total": 20} and worker.pid not in (None, stuck_pid)


def test_an_exception_becomes_one_line_with_the_traceback_as_detail(worker) -> None:
    _, outcome = _run(worker, toy.FAILING)
    assert outcome.status == "error"
    assert outcome.message == "ValueError: bad weights in layer conv_3"
    assert "Traceback" in outcome.detail and "failing_job" in outcome.detail


def test_a_layerlab_error_keeps_its_own_message(worker) -> None:
    _, outcome = _run(worker, toy.LAYERLAB_ERROR)
    assert outcome.status == "error" and outcome.message == "model.onnx: not an ONNX model"


@pytest.mark.parametrize(("name", "expected"), [(toy.EXITING, "exit code 3)"), (toy.SEGFAULT, "exit code -11, SIGSEGV"),
                                                (toy.ABORT, "exit code -6, SIGABRT")])
def test_a_crash_is_one_line_and_a_fresh_worker_runs_the_queue(worker, name: str, expected: str) -> None:
    crashing = worker.submit(name, {})
    after = worker.submit(toy.COUNTING, {"n": 2})  # queued behind the crash
    seen, outcome = _events(worker, crashing)
    crashed_pid = next(e.pid for e in seen if isinstance(e, Started))
    assert [p.done for p in seen if isinstance(p, Progress)] == [1]
    assert outcome.status == "crashed" and "\n" not in outcome.message
    assert outcome.message.startswith("worker crashed (") and expected in outcome.message
    assert worker.restarts == 1
    seen, outcome = _events(worker, after)
    assert outcome.ok and next(e.pid for e in seen if isinstance(e, Started)) != crashed_pid


def test_an_unpicklable_result_is_an_error_not_a_hang(worker) -> None:
    _, outcome = _run(worker, toy.UNPICKLABLE)
    assert outcome.status == "error" and "could not be sent back" in outcome.message


def test_only_catalogue_jobs_run(worker) -> None:
    with pytest.raises(LayerLabError, match="no job called 'engine.ir.graph:load_model'"):
        worker.submit("engine.ir.graph:load_model", {})
    assert catalogue.resolve(catalogue.PROFILE) is catalogue.profile_model_job


def test_a_worker_keeps_the_model_it_loaded(tmp_path, digits_model, digits_eval) -> None:
    import shutil

    model = tmp_path / "m.onnx"
    shutil.copy(digits_model, model)
    shapes = {"input": (1, 1, 8, 8)}
    graph = loaded.load_graph(model, shapes)
    assert loaded.load_graph(model, dict(shapes)) is graph  # the next job on the same model finds it loaded
    assert loaded.load_graph(model, {"input": (2, 1, 8, 8)}) is not graph  # other shapes: another graph
    evaluator = loaded.load_job_evaluator(digits_eval, model, shapes)
    assert loaded.load_job_evaluator(digits_eval, model, shapes) is evaluator
    stat = model.stat()  # rewritten in place: a new mtime
    os.utime(model, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert loaded.load_graph(model, shapes) is not graph
    assert loaded.load_job_evaluator(digits_eval, model, shapes) is not evaluator  # labels may follow the model

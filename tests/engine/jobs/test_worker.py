"""The worker runs jobs in a spawned process: progress, results, errors, cancel and crashes all reach the parent."""

from __future__ import annotations

import ctypes
import os
import time

import pytest

from engine.errors import LayerLabError, ModelError
from engine.progress import Cancelled, Progress
from engine.jobs.worker import Outcome, Worker

HERE = "tests.engine.jobs.test_worker"


# --- toy jobs: module-level so the spawned child can import them by name ---------------------------


def counting_job(n: int = 3):
    for i in range(n):
        yield Progress(i + 1, n, f"step {i + 1}")
    return {"total": n * 10}


def plain_function(x: int) -> int:
    return x * 2


def slow_job(steps: int = 1000, pause: float = 0.05):
    done = 0
    try:
        for i in range(steps):
            time.sleep(pause)
            done = i + 1
            yield Progress(done, steps, "")
    except Cancelled:
        return {"partial": done}
    return {"partial": done}


def stuck_job():
    yield Progress(0, 1, "about to hang")
    time.sleep(60)  # never reaches the next yield: cancel must terminate the process
    return None


def failing_job():
    yield Progress(1, 2, "")
    raise ValueError("bad weights in layer conv_3\nsecond line")


def layerlab_error_job():
    raise ModelError("model.onnx: not an ONNX model")
    yield  # pragma: no cover


def exiting_job():
    yield Progress(1, 2, "")
    os._exit(3)


def segfault_job():
    yield Progress(1, 2, "")
    ctypes.string_at(0)


def unpicklable_job():
    return lambda: None


# --- tests ---------------------------------------------------------------------------------------


def _run(target: str, timeout: float = 30.0, **kwargs) -> tuple[list[Progress], Outcome]:
    worker = Worker(f"{HERE}:{target}", kwargs)
    worker.start()
    progress: list[Progress] = []
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for event in worker.poll():
            if isinstance(event, Outcome):
                return progress, event
            progress.append(event)
        time.sleep(0.01)
    worker.cancel()
    raise AssertionError(f"{target} did not end within {timeout} s")


def test_progress_and_result_are_relayed() -> None:
    progress, outcome = _run("counting_job", n=4)
    assert [p.done for p in progress] == [1, 2, 3, 4]
    assert progress[-1].message == "step 4"
    assert outcome.ok and outcome.result == {"total": 40}


def test_a_plain_function_is_a_job_too() -> None:
    progress, outcome = _run("plain_function", x=21)
    assert progress == [] and outcome.status == "finished" and outcome.result == 42


def test_cancel_returns_the_partial_result() -> None:
    worker = Worker(f"{HERE}:slow_job", {})
    worker.start()
    seen = 0
    while seen < 3:
        seen += sum(isinstance(e, Progress) for e in worker.poll())
        time.sleep(0.01)
    worker.cancel()
    outcome = worker.wait(timeout=5)
    assert outcome is not None and outcome.status == "cancelled"
    assert outcome.result["partial"] >= 3
    assert not worker.running


def test_cancel_terminates_a_job_that_does_not_yield() -> None:
    worker = Worker(f"{HERE}:stuck_job", {})
    worker.start()
    while not any(isinstance(e, Progress) for e in worker.poll()):
        time.sleep(0.01)
    worker.cancel()
    outcome = worker.wait(timeout=5)
    assert outcome is not None and outcome.status == "cancelled"
    assert worker._process.exitcode is not None  # the process is gone, not left hanging


def test_an_exception_becomes_one_line_with_the_traceback_as_detail() -> None:
    _, outcome = _run("failing_job")
    assert outcome.status == "error"
    assert outcome.message == "ValueError: bad weights in layer conv_3"
    assert "Traceback" in outcome.detail and "failing_job" in outcome.detail


def test_a_layerlab_error_keeps_its_own_message() -> None:
    _, outcome = _run("layerlab_error_job")
    assert outcome.status == "error" and outcome.message == "model.onnx: not an ONNX model"


@pytest.mark.parametrize(("target", "expected"), [("exiting_job", "exit code 3"), ("segfault_job", "exit code -11")])
def test_a_crashing_child_is_reported_and_the_parent_survives(target: str, expected: str) -> None:
    progress, outcome = _run(target)
    assert [p.done for p in progress] == [1]
    assert outcome.status == "crashed"
    assert outcome.message.startswith("worker crashed (") and expected in outcome.message


def test_an_unpicklable_result_is_an_error_not_a_hang() -> None:
    _, outcome = _run("unpicklable_job")
    assert outcome.status == "error" and "could not be sent back" in outcome.message


def test_an_unknown_job_is_an_error() -> None:
    _, outcome = _run("no_such_job")
    assert outcome.status == "error" and "no_such_job" in outcome.message
    with pytest.raises(LayerLabError, match="module:function"):
        Worker("not a path")


def test_loading_a_model_through_the_worker(digits_model) -> None:
    worker = Worker("engine.ir.graph:load_model", {"path": str(digits_model)})
    worker.start()
    outcome = worker.wait(timeout=60)
    assert outcome is not None and outcome.ok
    assert len(outcome.result.layers) == 7

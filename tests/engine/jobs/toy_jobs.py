"""Jobs that exist only for the tests: counting, slow, stuck, failing and crashing ones.

``tests/conftest.py`` names this module in ``LAYERLAB_JOB_PLUGINS``, so the catalogue (in the test
process and in every worker process it spawns) registers these under ``test.*`` names. The window
and the CLI never see them.
"""

from __future__ import annotations

import ctypes
import os
import time

from engine.errors import ModelError
from engine.jobs.catalogue import register
from engine.progress import Cancelled, Progress

__all__ = ["COUNTING", "SLOW", "STUCK", "FAILING", "LAYERLAB_ERROR", "EXITING", "SEGFAULT", "ABORT", "UNPICKLABLE",
           "PLAIN", "PID", "PARTIAL_SWEEP"]


def counting_job(n: int = 3):
    for i in range(n):
        yield Progress(i + 1, n, f"step {i + 1}")
    return {"total": n * 10}


def plain_function(x: int) -> int:
    return x * 2


def pid_job(tag: str = ""):
    yield Progress(0, 1, tag)
    return os.getpid()


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
    time.sleep(60)  # never reaches the next yield: cancel must kill the worker
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


def abort_job():
    yield Progress(1, 2, "")
    os.abort()


def partial_sweep_job(names: list[str], pause: float = 0.2):
    """A sweep that finishes one layer per ``pause`` and, cancelled, returns the layers it finished."""
    from engine.evaluate.sensitivity import LayerSensitivity, Sensitivity

    result = Sensitivity(0.9, "acc")
    try:
        for i, name in enumerate(names):
            time.sleep(pause)
            result.layers[name] = LayerSensitivity(name, {"int8": 0.01 * (i + 1)})
            yield Progress(i + 1, len(names), f"{name} done")
        result.complete = True
    except Cancelled:
        pass
    return result


def unpicklable_job():
    return lambda: None


COUNTING, PLAIN, PID, SLOW, STUCK = "test.counting", "test.plain", "test.pid", "test.slow", "test.stuck"
FAILING, LAYERLAB_ERROR, EXITING = "test.failing", "test.layerlab_error", "test.exiting"
SEGFAULT, ABORT, UNPICKLABLE = "test.segfault", "test.abort", "test.unpicklable"
PARTIAL_SWEEP = "test.partial_sweep"

for _name, _function in {COUNTING: counting_job, PLAIN: plain_function, PID: pid_job, SLOW: slow_job,
                         STUCK: stuck_job, FAILING: failing_job, LAYERLAB_ERROR: layerlab_error_job,
                         EXITING: exiting_job, SEGFAULT: segfault_job, ABORT: abort_job,
                         UNPICKLABLE: unpicklable_job, PARTIAL_SWEEP: partial_sweep_job}.items():
    register(_name, _function)

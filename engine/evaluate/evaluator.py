"""Evaluators: where accuracy comes from, and running a model on them with ONNX Runtime.

An evaluator is a Python file with ``samples()``, ``metric(outputs, labels)`` and optionally
``calibration()`` (the contract is in the README), or an ``.npz`` with ``input:<name>`` arrays and
optional ``labels``. Without labels the evaluator measures fidelity to the fp32 model's outputs:
its labels are the reference model's outputs. Everything a user's evaluator does wrong becomes a
``LayerLabError`` naming the evaluator file and, where there is one, the sample index.

Loading a script runs it: callers that got the path from a session file ask the user first.
The ``Evaluator`` contract lives in ``engine.evaluate.contract``, the ``.npz`` evaluator and
``fidelity_scores`` in ``engine.evaluate.npz``; all are re-exported here.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import onnx

from engine.errors import LayerLabError
from engine.evaluate.contract import CALIBRATION_DEFAULT, EvalResult, Evaluator, Sample, describe_error
from engine.evaluate.npz import _npz_evaluator, fidelity_scores
from engine.progress import Job, Progress, run

__all__ = [
    "Sample",
    "Evaluator",
    "EvalResult",
    "load_evaluator",
    "evaluate",
    "evaluate_job",
    "create_session",
    "fidelity_scores",
    "ensure_reference",
    "run_samples",
    "CALIBRATION_DEFAULT",
]

logger = logging.getLogger(__name__)

_PROGRESS_EVERY_S = 0.25
_LEVELS = {"all": "ORT_ENABLE_ALL", "extended": "ORT_ENABLE_EXTENDED", "basic": "ORT_ENABLE_BASIC", "none": "ORT_DISABLE_ALL"}

ModelLike = onnx.ModelProto | bytes | str | os.PathLike


def load_evaluator(path: str | os.PathLike[str], *, fidelity: str = "auto") -> Evaluator:
    """An evaluator from a ``.py`` file (the contract) or an ``.npz`` (``input:<name>``, optional ``labels``).

    ``fidelity`` chooses the metric of a label-less ``.npz``: ``top1`` (agreement of argmax over the
    last axis of the first output), ``cosine``, or ``auto`` (top1 when that axis has 2+ entries).
    """
    path = Path(path)
    if not path.is_file():
        raise LayerLabError(f"{path}: no such evaluator file")
    if path.suffix == ".npz":
        return _npz_evaluator(path, fidelity)
    if path.suffix != ".py":
        raise LayerLabError(f"{path}: an evaluator is a .py file or an .npz, not {path.suffix or 'a file without suffix'}")
    module = _import_script(path)
    functions = {}
    for fn in ("samples", "metric", "calibration"):
        value = getattr(module, fn, None)
        if value is None and fn != "calibration":
            raise LayerLabError(f"{path}: the evaluator has no {fn}() function")
        if value is not None and not callable(value):
            raise LayerLabError(f"{path}: {fn} must be a function, got {type(value).__name__}")
        functions[fn] = value
    return Evaluator(
        name=path.stem if path.stem != "evaluator" else path.parent.name,
        label=str(path),
        samples=functions["samples"],
        metric=functions["metric"],
        calibration=functions["calibration"],
        metric_name=str(getattr(module, "METRIC_NAME", "metric")),
    )


def create_session(model: ModelLike, *, threads: int = 0, optimization: str = "all", label: str = "<model>") -> Any:
    """An ONNX Runtime CPU session for ``model`` (proto, bytes or path); ``threads`` 0 = ORT's default.

    ``optimization`` is ORT's graph optimization level: all, extended, basic or none.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(0, int(threads))
    options.log_severity_level = 3
    # Its threads sleep when a run ends instead of spinning ~25-100 ms: a latency timed right after scoring
    # would share the cores with them (see engine.measure.timing.make_session)
    options.add_session_config_entry("session.force_spinning_stop", "1")
    if optimization not in _LEVELS:
        raise LayerLabError(f"optimization {optimization!r}: must be one of {', '.join(_LEVELS)}")
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _LEVELS[optimization])
    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else model
    if isinstance(data, os.PathLike):
        data = str(data)
    try:
        return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise LayerLabError(f"{label}: ONNX Runtime cannot load the model ({describe_error(exc)})") from None


def evaluate(
    model: ModelLike, evaluator: Evaluator, *, threads: int = 0, keep_outputs: bool = False, optimization: str = "all"
) -> EvalResult:
    """Run ``model`` on every sample and score it with the evaluator's metric."""
    return run(evaluate_job(model, evaluator, threads=threads, keep_outputs=keep_outputs, optimization=optimization))


def evaluate_job(
    model: ModelLike, evaluator: Evaluator, *, threads: int = 0, keep_outputs: bool = False, optimization: str = "all"
) -> Job[EvalResult]:
    """``evaluate`` as a job: yields Progress while it runs the samples."""
    if evaluator.needs_reference:
        raise LayerLabError(f"{evaluator.label}: no labels, so fidelity mode needs the fp32 reference outputs first")
    session = create_session(model, threads=threads, optimization=optimization)
    samples = evaluator.samples()
    outputs: list[list[np.ndarray]] = []
    runner = run_samples(session, [inputs for inputs, _ in samples], evaluator.label)
    while True:
        try:
            progress = next(runner)
        except StopIteration as stop:
            outputs = stop.value
            break
        yield progress
    labels = [label for _, label in samples]
    value = evaluator.metric(outputs, labels)
    details = fidelity_scores(outputs, labels) if evaluator.fidelity else {}
    return EvalResult(value, len(samples), outputs if keep_outputs else None, details)


def ensure_reference(
    evaluator: Evaluator, reference_model: ModelLike, *, threads: int = 0, optimization: str = "all"
) -> None:
    """Fidelity mode: run the fp32 ``reference_model`` once and use its outputs as the labels."""
    if evaluator.needs_reference:
        session = create_session(reference_model, threads=threads, optimization=optimization)
        feeds = [inputs for inputs, _ in evaluator.samples()]
        evaluator.with_reference(run(run_samples(session, feeds, evaluator.label)))


def run_samples(
    session: Any, feeds: Sequence[Mapping[str, np.ndarray]], label: str, output_names: list[str] | None = None,
    first: int = 0,
) -> Job[list[list[np.ndarray]]]:
    """Run ``session`` on each feed (cast to the model's input dtypes); yields Progress about 4x a second.

    ``first``: the index of ``feeds[0]`` among the samples, for messages."""
    specs = {i.name: _numpy_dtype(i.type) for i in session.get_inputs()}
    outputs = []
    last = time.monotonic()
    for index, inputs in enumerate(feeds, start=first):
        missing = [name for name in specs if name not in inputs]
        if missing:
            raise LayerLabError(f"{label}: sample {index}: no value for model input {missing[0]!r} (has {sorted(inputs)})")
        feed = {name: _cast(inputs[name], specs[name]) for name in specs}
        try:
            outputs.append(session.run(output_names, feed))
        except Exception as exc:
            raise LayerLabError(f"{label}: sample {index}: the model rejected the inputs ({describe_error(exc)})") from None
        now = time.monotonic()
        if now - last > _PROGRESS_EVERY_S:
            last = now
            yield Progress(index + 1, first + len(feeds), "running samples")
    return outputs


# --- helpers -----------------------------------------------------------------------------------


def _import_script(path: Path) -> Any:
    name = f"layerlab_evaluator_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise LayerLabError(f"{path}: cannot load as a Python module")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        raise LayerLabError(f"{path}: syntax error at line {exc.lineno}: {exc.msg}") from None
    except Exception as exc:
        raise LayerLabError(f"{path}: running the evaluator failed ({describe_error(exc)})") from None
    return module


def _numpy_dtype(ort_type: str) -> np.dtype | None:
    names = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16,
             "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(uint8)": np.uint8,
             "tensor(int8)": np.int8, "tensor(bool)": np.bool_}
    found = names.get(ort_type)
    return np.dtype(found) if found is not None else None


def _cast(array: np.ndarray, dtype: np.dtype | None) -> np.ndarray:
    # Evaluators often build float64 arrays; the model's dtype is what ORT accepts.
    return array if dtype is None or array.dtype == dtype else array.astype(dtype)

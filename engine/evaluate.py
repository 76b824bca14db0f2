"""Evaluators: where accuracy comes from, and running a model on them with ONNX Runtime.

An evaluator is a Python file with ``samples()``, ``metric(outputs, labels)`` and optionally
``calibration()`` (the contract is in the README), or an ``.npz`` with ``input:<name>`` arrays and
optional ``labels``. Without labels the evaluator measures fidelity to the fp32 model's outputs:
its labels are the reference model's outputs. Everything a user's evaluator does wrong becomes a
``LayerLabError`` naming the evaluator file and, where there is one, the sample index.

Loading a script runs it: callers that got the path from a session file ask the user first.
The ``.npz`` evaluator and ``fidelity_scores`` live in ``engine.evaluate_npz`` (re-exported here).
"""

from __future__ import annotations

import importlib.util
import itertools
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import onnx

from engine.errors import LayerLabError
from engine.evaluate_npz import _npz_evaluator, fidelity_scores
from engine.jobs import Job, Progress, run

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

#: How many leading samples calibrate int8 when the evaluator has no ``calibration()``.
CALIBRATION_DEFAULT = 32
_PROGRESS_EVERY_S = 0.25
_LEVELS = {"all": "ORT_ENABLE_ALL", "extended": "ORT_ENABLE_EXTENDED", "basic": "ORT_ENABLE_BASIC", "none": "ORT_DISABLE_ALL"}

Sample = tuple[dict[str, np.ndarray], Any]
ModelLike = onnx.ModelProto | bytes | str | os.PathLike


@dataclass
class EvalResult:
    """The metric (higher is better) over ``n`` samples; ``outputs`` when asked for; fidelity extras."""

    metric: float
    n: int
    outputs: list[list[np.ndarray]] | None = None
    details: dict[str, float] = field(default_factory=dict)


class Evaluator:
    """Samples, a metric and calibration inputs, validated and cached; errors name ``label``."""

    def __init__(
        self,
        name: str,
        label: str,
        samples: Callable[[], Iterable[Any]],
        metric: Callable[[list[list[np.ndarray]], list], Any],
        calibration: Callable[[], Iterable[Any]] | None = None,
        metric_name: str = "metric",
        fidelity: bool = False,
    ) -> None:
        self.name = name
        self.label = label  # the file, as messages name it
        self.metric_name = metric_name
        self.fidelity = fidelity  # labels are the reference model's outputs
        self._samples_fn = samples
        self._metric_fn = metric
        self._calibration_fn = calibration
        self._samples: list[Sample] | None = None
        self._calibration: list[dict[str, np.ndarray]] | None = None

    def samples(self) -> list[Sample]:
        """``(inputs, label)`` pairs in the evaluator's fixed order (read once, then cached)."""
        if self._samples is None:
            self._samples = self._read_samples()
        return self._samples

    def labels(self) -> list:
        return [label for _, label in self.samples()]

    def metric(self, outputs: list[list[np.ndarray]], labels: list | None = None) -> float:
        """The evaluator's metric as a finite float; errors name the first sample that fails alone."""
        labels = self.labels() if labels is None else labels
        try:
            value = self._metric_fn(outputs, labels)
        except Exception as exc:
            where = self._first_bad_sample(outputs, labels)
            raise LayerLabError(f"{self.label}: metric() raised {_describe(exc)}{where}") from None
        number = _as_float(value)
        if number is None:
            raise LayerLabError(f"{self.label}: metric() must return a number, got {type(value).__name__}")
        if not math.isfinite(number):
            where = self._first_bad_sample(outputs, labels)
            raise LayerLabError(f"{self.label}: metric() returned {number}{where}")
        return number

    def calibration(self) -> list[dict[str, np.ndarray]]:
        """Input dicts for int8 calibration: ``calibration()`` or the first samples' inputs."""
        if self._calibration is None:
            if self._calibration_fn is None:
                self._calibration = [inputs for inputs, _ in self.samples()[:CALIBRATION_DEFAULT]]
            else:
                self._calibration = self._read_calibration()
        return self._calibration

    def with_reference(self, outputs: Sequence[Sequence[np.ndarray]]) -> None:
        """Fidelity mode: set the fp32 outputs that serve as labels (one entry per sample)."""
        samples = self.samples()
        if len(outputs) != len(samples):
            raise LayerLabError(f"{self.label}: {len(outputs)} reference outputs for {len(samples)} samples")
        self._samples = [(inputs, [np.asarray(o) for o in out]) for (inputs, _), out in zip(samples, outputs)]

    @property
    def needs_reference(self) -> bool:
        """True for a fidelity evaluator whose reference outputs are not set yet."""
        return self.fidelity and any(label is None for _, label in self.samples())

    # --- validation ------------------------------------------------------------------------

    def _read_samples(self) -> list[Sample]:
        out: list[Sample] = []
        try:
            iterator = iter(self._samples_fn())
        except Exception as exc:
            raise LayerLabError(f"{self.label}: samples() raised {_describe(exc)}") from None
        for index in itertools.count():
            try:
                item = next(iterator)
            except StopIteration:
                break
            except Exception as exc:
                raise LayerLabError(f"{self.label}: samples() raised {_describe(exc)} at sample {index}") from None
            if not isinstance(item, (tuple, list)) or len(item) != 2:
                raise LayerLabError(
                    f"{self.label}: sample {index}: expected (inputs: dict[str, ndarray], label), got {type(item).__name__}"
                )
            out.append((self._inputs(item[0], f"sample {index}"), item[1]))
        if not out:
            raise LayerLabError(f"{self.label}: samples() yielded no samples")
        return out

    def _read_calibration(self) -> list[dict[str, np.ndarray]]:
        assert self._calibration_fn is not None
        out = []
        try:
            for index, item in enumerate(self._calibration_fn()):
                out.append(self._inputs(item, f"calibration sample {index}"))
        except LayerLabError:
            raise
        except Exception as exc:
            raise LayerLabError(f"{self.label}: calibration() raised {_describe(exc)} at sample {len(out)}") from None
        if not out:
            raise LayerLabError(f"{self.label}: calibration() yielded no inputs")
        return out

    def _inputs(self, inputs: Any, where: str) -> dict[str, np.ndarray]:
        if not isinstance(inputs, Mapping):
            raise LayerLabError(f"{self.label}: {where}: inputs must be a dict name -> ndarray, got {type(inputs).__name__}")
        arrays = {}
        for key, value in inputs.items():
            array = np.asarray(value)
            if array.dtype == object or not isinstance(key, str):
                raise LayerLabError(f"{self.label}: {where}: input {key!r} is not a numeric array")
            arrays[key] = array
        return arrays

    def _first_bad_sample(self, outputs: list, labels: list) -> str:
        """Look for the first sample on which the metric alone raises or is not finite."""
        for k in range(min(len(outputs), len(labels))):
            try:
                value = _as_float(self._metric_fn([outputs[k]], [labels[k]]))
            except Exception:
                return f" (first failing sample: {k})"
            if value is None or not math.isfinite(value):
                return f" (first failing sample: {k})"
        return f" (on all {len(outputs)} samples; no single sample fails alone)"


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
    if optimization not in _LEVELS:
        raise LayerLabError(f"optimization {optimization!r}: must be one of {', '.join(_LEVELS)}")
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _LEVELS[optimization])
    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else model
    if isinstance(data, os.PathLike):
        data = str(data)
    try:
        return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise LayerLabError(f"{label}: ONNX Runtime cannot load the model ({_describe(exc)})") from None


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
            raise LayerLabError(f"{label}: sample {index}: the model rejected the inputs ({_describe(exc)})") from None
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
        raise LayerLabError(f"{path}: running the evaluator failed ({_describe(exc)})") from None
    return module


def _as_float(value: Any) -> float | None:
    if isinstance(value, (bool, np.bool_)):
        return float(value)
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    if isinstance(value, np.ndarray) and value.size == 1 and value.dtype.kind in "iuf":
        return float(value.reshape(()))
    return None


def _numpy_dtype(ort_type: str) -> np.dtype | None:
    names = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16,
             "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(uint8)": np.uint8,
             "tensor(int8)": np.int8, "tensor(bool)": np.bool_}
    found = names.get(ort_type)
    return np.dtype(found) if found is not None else None


def _cast(array: np.ndarray, dtype: np.dtype | None) -> np.ndarray:
    # Evaluators often build float64 arrays; the model's dtype is what ORT accepts.
    return array if dtype is None or array.dtype == dtype else array.astype(dtype)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300]}" if text else type(exc).__name__

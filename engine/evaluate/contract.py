"""The evaluator contract: samples, a metric (higher is better) and calibration inputs.

``Evaluator`` wraps a user's functions; everything they do wrong becomes a ``LayerLabError`` naming
the evaluator and, where there is one, the sample index. Loading scripts and running models on an
evaluator live in ``engine.evaluate.evaluator``; the ``.npz`` evaluator in ``engine.evaluate.npz``.
"""

from __future__ import annotations

import itertools
import logging
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from engine.errors import LayerLabError

__all__ = ["CALIBRATION_DEFAULT", "CALIBRATION_SHARE", "EvalResult", "Evaluator", "Sample", "describe_error", "split_indices"]

logger = logging.getLogger(__name__)

#: At most this many samples are split off to calibrate int8 when the evaluator has no ``calibration()``.
CALIBRATION_DEFAULT = 32
#: ... and at most this share of them: the rest are scored. Fewer than 1/CALIBRATION_SHARE samples: none
#: can be spared, and int8 calibrates on random inputs (with a warning).
CALIBRATION_SHARE = 4


def split_indices(n: int) -> list[int]:
    """Indices of the samples split off for calibration out of ``n``: evenly spaced (a file sorted by
    class still calibrates on every class), never more than a quarter nor ``CALIBRATION_DEFAULT``."""
    k = min(CALIBRATION_DEFAULT, n // CALIBRATION_SHARE)
    if k <= 0:
        return []
    stride = n / k
    return [int(stride * i + stride / 2) for i in range(k)]

Sample = tuple[dict[str, np.ndarray], Any]


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
        self._split = 0  # samples split off for calibration (no calibration() given)
        self._index: list[int] = []  # the evaluator's own index of each scored sample (errors name it)

    def samples(self) -> list[Sample]:
        """The scored ``(inputs, label)`` pairs in the evaluator's fixed order (read once, then cached).

        Without ``calibration()`` a few evenly spaced samples are split off for calibration
        (``split_indices``) and are not among these: calibration never sees a scored sample.
        """
        if self._samples is None:
            read = self._read_samples()
            if self._calibration_fn is None:
                held = set(split_indices(len(read)))
                self._calibration = [inputs for k, (inputs, _) in enumerate(read) if k in held]
                self._split = len(held)
                self._index = [k for k in range(len(read)) if k not in held]
                read = [sample for k, sample in enumerate(read) if k not in held]
            self._samples = read
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
            raise LayerLabError(f"{self.label}: metric() raised {describe_error(exc)}{where}") from None
        number = _as_float(value)
        if number is None:
            raise LayerLabError(f"{self.label}: metric() must return a number, got {type(value).__name__}")
        if not math.isfinite(number):
            where = self._first_bad_sample(outputs, labels)
            raise LayerLabError(f"{self.label}: metric() returned {number}{where}")
        return number

    def calibration(self) -> list[dict[str, np.ndarray]]:
        """Input dicts for int8 calibration: ``calibration()``, else the samples split off from scoring;
        empty when there are too few samples to spare any (the caller calibrates on random inputs and warns)."""
        if self._calibration is None:
            if self._calibration_fn is None:
                self.samples()  # splits
            else:
                self._calibration = self._read_calibration()
        assert self._calibration is not None
        return self._calibration

    @property
    def calibration_source(self) -> str:
        """Where int8 calibration comes from, for the user: calibration(), the split, or random inputs."""
        if self._calibration_fn is not None:
            return f"the evaluator's calibration() ({len(self.calibration())} inputs)"
        scored = len(self.samples())
        if self._split:
            return f"{self._split} samples split off from the evaluator's {self._split + scored} (not scored)"
        return f"random inputs (only {scored} sample(s): none can be spared from scoring)"

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
            raise LayerLabError(f"{self.label}: samples() raised {describe_error(exc)}") from None
        for index in itertools.count():
            try:
                item = next(iterator)
            except StopIteration:
                break
            except Exception as exc:
                raise LayerLabError(f"{self.label}: samples() raised {describe_error(exc)} at sample {index}") from None
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
            raise LayerLabError(f"{self.label}: calibration() raised {describe_error(exc)} at sample {len(out)}") from None
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

    def _own_index(self, k: int) -> int:
        return self._index[k] if k < len(self._index) else k

    def _first_bad_sample(self, outputs: list, labels: list) -> str:
        """Look for the first sample on which the metric alone raises or is not finite."""
        for k in range(min(len(outputs), len(labels))):
            try:
                value = _as_float(self._metric_fn([outputs[k]], [labels[k]]))
            except Exception:
                return f" (first failing sample: {self._own_index(k)})"
            if value is None or not math.isfinite(value):
                return f" (first failing sample: {self._own_index(k)})"
        return f" (on all {len(outputs)} samples; no single sample fails alone)"


def _as_float(value: Any) -> float | None:
    if isinstance(value, (bool, np.bool_)):
        return float(value)
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    if isinstance(value, np.ndarray) and value.size == 1 and value.dtype.kind in "iuf":
        return float(value.reshape(()))
    return None


def describe_error(exc: BaseException) -> str:
    """An exception as a short phrase for a one-line error."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300]}" if text else type(exc).__name__

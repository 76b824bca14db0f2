"""The built-in ``.npz`` evaluator and the fidelity scores that compare outputs with a reference's.

An ``.npz`` holds ``input:<name>`` arrays (first axis: samples) and optionally ``labels``: with
labels the metric is top-1 accuracy, without them the evaluator measures fidelity to the fp32
model's first floating-point output (``fidelity_scores``). ``engine.evaluate.evaluator.load_evaluator`` is the entry point and
re-exports ``fidelity_scores``.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from engine.errors import LayerLabError
from engine.evaluate.contract import Evaluator, Sample, describe_error


__all__ = ["fidelity_scores", "scored_output"]

logger = logging.getLogger(__name__)


def scored_output(reference: Sequence[Sequence[np.ndarray]]) -> int:
    """The output fidelity compares: the first floating-point one. Exports copy integer inputs to outputs
    (minilm-l3's first output is ``Identity(input_ids)``): scored, those agree whatever the model computes."""
    first = reference[0] if len(reference) else []
    return next((k for k, v in enumerate(first) if np.asarray(v).dtype.kind in "fc"), 0)


def fidelity_scores(outputs: Sequence[Sequence[np.ndarray]], reference: Sequence[Sequence[np.ndarray]]) -> dict[str, float]:
    """Top-1 agreement (argmax over the last axis of the first floating-point output: ``scored_output``),
    mean cosine and SQNR (dB) vs ``reference``."""
    agree, positions, cosines = 0, 0, []
    signal = noise = 0.0
    k = scored_output(reference)
    for out, ref in zip(outputs, reference):
        a = np.asarray(out[k], dtype=np.float64)
        b = np.asarray(ref[k], dtype=np.float64)
        if a.shape != b.shape:
            raise ValueError(f"output shape {a.shape} differs from the reference's {b.shape}")
        if a.ndim and a.shape[-1] > 1:
            agree += int((a.argmax(-1) == b.argmax(-1)).sum())
            positions += int(np.prod(a.shape[:-1], dtype=np.int64))
        denom = float(np.linalg.norm(a) * np.linalg.norm(b))
        cosines.append(float((a * b).sum()) / denom if denom else float(np.array_equal(a, b)))
        signal += float((b * b).sum())
        noise += float(((a - b) ** 2).sum())
    scores = {"cosine": float(np.mean(cosines)) if cosines else 0.0}
    if positions:
        scores["top1_agreement"] = agree / positions
    scores["sqnr_db"] = 10 * math.log10(signal / noise) if noise > 0 and signal > 0 else float("inf")
    return scores


def _npz_evaluator(path: Path, fidelity: str) -> Evaluator:

    if fidelity not in ("auto", "top1", "cosine"):
        raise LayerLabError(f"fidelity {fidelity!r}: must be auto, top1 or cosine")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except Exception as exc:
        raise LayerLabError(f"{path}: not a readable .npz ({describe_error(exc)})") from None
    inputs = {key[len("input:"):]: value for key, value in arrays.items() if key.startswith("input:")}
    if not inputs:
        raise LayerLabError(f"{path}: no arrays named input:<name> (has {', '.join(arrays) or 'nothing'})")
    counts = {len(v) if v.ndim else 0 for v in inputs.values()}
    if len(counts) != 1 or 0 in counts:
        raise LayerLabError(f"{path}: the input:<name> arrays must share a first (sample) dimension")
    n = counts.pop()
    labels = arrays.get("labels")
    if labels is not None and len(labels) != n:
        raise LayerLabError(f"{path}: {len(labels)} labels for {n} samples")

    def samples() -> Iterable[Sample]:
        for k in range(n):
            yield {name: value[k : k + 1] for name, value in inputs.items()}, (None if labels is None else labels[k])

    if labels is not None:
        return Evaluator(path.stem, str(path), samples, _top1_accuracy, metric_name="top1_accuracy")
    kind = fidelity

    def metric(outputs: list[list[np.ndarray]], reference: list) -> float:
        scores = fidelity_scores(outputs, reference)
        use = "top1_agreement" if kind == "top1" or (kind == "auto" and "top1_agreement" in scores) else "cosine"
        if use not in scores:
            raise ValueError("top-1 agreement needs a last axis of 2 or more entries")
        return scores[use]

    return Evaluator(path.stem, str(path), samples, metric, metric_name="fidelity", fidelity=True)


def _top1_accuracy(outputs: list[list[np.ndarray]], labels: list) -> float:
    """Mean over samples of the fraction of argmax(last axis of the first output) equal to the label."""
    if len(outputs) != len(labels):
        raise ValueError(f"{len(outputs)} outputs for {len(labels)} labels")
    scores = []
    for out, label in zip(outputs, labels):
        predicted = np.asarray(out[0]).argmax(-1).reshape(-1)
        expected = np.asarray(label).reshape(-1)
        if predicted.size != expected.size:
            raise ValueError(f"{predicted.size} predictions for {expected.size} labels")
        scores.append(float((predicted == expected).mean()))
    return float(np.mean(scores))

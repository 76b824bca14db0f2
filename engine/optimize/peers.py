"""The tools a user would otherwise quantize with, as ``bench`` rows beside LayerLab's route.

``nncf``: NNCF's post-training quantization of the ONNX model (``nncf.quantize``, its defaults: the
PERFORMANCE preset, fast bias correction), calibrated on the same inputs as every other int8 row
(``subset_size`` = their count, so NNCF sees them all and nothing else). ``nncf-ac``: NNCF's
``quantize_with_accuracy_control`` at the bench's max drop (absolute), validated on the evaluator's
scored samples with the evaluator's metric: the same samples and metric LayerLab's tune measures its
drops on. NNCF gets the model ORT's quantizer gets (opset >= 13 for per-channel weights, shapes
inferred: ``engine.passes.precision.prepare``), with every Cast of a constant folded into the constant
(exact): NNCF 3.4's ``eliminate_nop_cast`` fails on a Cast that reads an initializer (ppocr-rec has
some). NNCF is an optional extra (``pip install 'layerlab[peers]'``); asking for it without it
installed is one clear line.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import onnx

from engine.errors import LayerLabError, SettingsError
from engine.evaluate.contract import Evaluator, describe_error
from engine.evaluate.evaluator import create_session, run_samples
from engine.passes.base import clone
from engine.progress import Job, Progress, run

__all__ = ["PEERS", "check_peers", "for_nncf", "nncf_quantize", "nncf_accuracy_control", "peer_models", "validation_fn"]

logger = logging.getLogger(__name__)

#: peer tools ``bench --peers`` knows
PEERS = ("nncf",)


def check_peers(peers: Sequence[str]) -> None:
    """Refuse unknown peers, and peers that are not installed, in one line each."""
    for peer in peers:
        if peer not in PEERS:
            raise SettingsError(f"--peers {peer!r}: choose from {', '.join(PEERS)}")
        try:
            __import__(peer)
        except ImportError:
            raise SettingsError(f"--peers {peer}: {peer} is not installed (pip install 'layerlab[peers]')") from None


def _nncf() -> Any:
    check_peers(["nncf"])
    import nncf

    return nncf


def for_nncf(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` prepared as for ORT's quantizer, each Cast of an initializer replaced by the cast initializer."""
    from onnx import helper, numpy_helper

    from engine.passes.precision import prepare

    model = prepare(clone(model))
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    folded = []
    for n in graph.node:
        if n.op_type == "Cast" and n.input[0] in inits and n.output[0] not in {o.name for o in graph.output}:
            to = next(int(helper.get_attribute_value(a)) for a in n.attribute if a.name == "to")
            value = numpy_helper.to_array(inits[n.input[0]]).astype(helper.tensor_dtype_to_np_dtype(to))
            graph.initializer.append(numpy_helper.from_array(value, n.output[0]))
            folded.append(n)
    for n in folded:
        graph.node.remove(n)
    kept = {t for n in graph.node for t in n.input}
    stale = [t for t in graph.initializer if t.name not in kept and t.name not in {i.name for i in graph.input}]
    for t in stale:
        graph.initializer.remove(t)
    for vi in [vi for vi in graph.value_info if vi.name in {n.output[0] for n in folded}]:
        graph.value_info.remove(vi)
    return model


def nncf_quantize(model: onnx.ModelProto, calibration: Sequence[dict[str, np.ndarray]]) -> onnx.ModelProto:
    """``nncf.quantize`` with its defaults on exactly ``calibration`` (``model`` as ``for_nncf`` gives it)."""
    nncf = _nncf()
    try:
        with contextlib.redirect_stdout(sys.stderr):  # NNCF's progress bars: stdout carries bench --json
            return nncf.quantize(for_nncf(model), nncf.Dataset(list(calibration)), subset_size=len(calibration))
    except Exception as exc:  # NNCF's own errors are many types; the user needs the one line
        raise LayerLabError(f"nncf.quantize failed: {describe_error(exc)}") from None


def validation_fn(evaluator: Evaluator, threads: int = 0) -> Callable[[onnx.ModelProto, Iterable[Any]], tuple[float, list[float]]]:
    """NNCF's ``validation_fn(model, items) -> (metric, per-item metrics)`` on the evaluator's scored samples.

    Items are indices into ``evaluator.samples()``; the metric is the evaluator's own over those items.
    NNCF calls it with one item at a time while it ranks quantizers, so the last model's session is kept."""
    samples = evaluator.samples()
    kept: list[Any] = [None, None]  # the model (held, so its id is not reused) and its session

    def validate(model: onnx.ModelProto, items: Iterable[Any]) -> tuple[float, list[float]]:
        if kept[0] is not model:
            kept[:] = [model, create_session(model, threads=threads, label="NNCF's model")]
        picked = [samples[int(i)] for i in items]
        outputs = run(run_samples(kept[1], [inputs for inputs, _ in picked], evaluator.label))
        labels = [label for _, label in picked]
        per_item = [evaluator.metric([out], [label]) for out, label in zip(outputs, labels)]
        return evaluator.metric(outputs, labels), per_item

    return validate


def nncf_accuracy_control(model: onnx.ModelProto, calibration: Sequence[dict[str, np.ndarray]], evaluator: Evaluator,
                          max_drop: float, threads: int = 0) -> onnx.ModelProto:
    """``nncf.quantize_with_accuracy_control`` at ``max_drop`` (absolute), validated by ``validation_fn``."""
    nncf = _nncf()
    indices = list(range(len(evaluator.samples())))
    try:
        with contextlib.redirect_stdout(sys.stderr):  # as in nncf_quantize
            return nncf.quantize_with_accuracy_control(
                for_nncf(model), nncf.Dataset(list(calibration)), nncf.Dataset(indices), validation_fn(evaluator, threads),
                max_drop=max_drop, drop_type=nncf.DropType.ABSOLUTE, subset_size=len(calibration))
    except LayerLabError:
        raise
    except Exception as exc:
        raise LayerLabError(f"nncf.quantize_with_accuracy_control failed: {describe_error(exc)}") from None


def peer_models(model: onnx.ModelProto, calibration: Sequence[dict[str, np.ndarray]], evaluator: Evaluator,
                peers: Sequence[str], *, max_drop: float, accuracy_control: bool = False,
                threads: int = 0) -> Job[dict[str, onnx.ModelProto]]:
    """Row name -> the peer's quantized model: ``nncf``, and ``nncf-ac`` when ``accuracy_control``."""
    check_peers(peers)
    out: dict[str, onnx.ModelProto] = {}
    if "nncf" in peers:
        yield Progress(0, 1, "NNCF quantize")
        out["nncf"] = nncf_quantize(model, calibration)
        if accuracy_control:
            yield Progress(0, 1, f"NNCF quantize with accuracy control (max drop {max_drop})")
            out["nncf-ac"] = nncf_accuracy_control(model, calibration, evaluator, max_drop, threads)
    return out

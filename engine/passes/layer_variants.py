"""Per-layer precision variants for the sensitivity sweep: int8 (QDQ U8S8 per-channel), int8_dynamic, fp16.

A thin caller of ``engine.passes.precision.PrecisionPass``: the sweep builds hundreds of
variants of one base model, so ``VariantBuilder`` keeps one ``CalibrationCache`` for all of them;
calibration runs once and every int8 variant uses the same ranges. The changed layer keeps its node
name and output names, so the rest of the graph is untouched. Once the ranges are known, a single
layer's int8 variant is quantized on its own and spliced back (``engine.passes.int8_splice``):
the same nodes as quantizing the whole model with only that layer chosen, at a fraction of the cost.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import onnx

from engine.errors import LayerLabError
from engine.ir.ops import op_facts
from engine.passes.base import clone
from engine.passes.calibration import RangeSet
from engine.passes.int8_splice import SingleLayerInt8
from engine.passes.precision import ROUTINES, CalibrationCache, PrecisionPass, _static_int8, prepare, unconverted

__all__ = ["ROUTINES", "applicable", "VariantBuilder"]

logger = logging.getLogger(__name__)


def applicable(op_type: str, routine: str) -> bool:
    """Whether ``routine`` exists for a layer of ``op_type``."""
    if routine == "int8":
        return op_facts(op_type).quantizable
    if routine == "int8_dynamic":
        return op_type in ("MatMul", "Gemm")
    if routine == "fp16":
        return True
    raise LayerLabError(f"routine {routine!r}: must be one of {', '.join(ROUTINES)}")


class VariantBuilder:
    """Builds ``base`` with a set of layers in one routine, calibrating int8 once per builder."""

    def __init__(self, base: onnx.ModelProto, calibration: Sequence[dict[str, np.ndarray]]) -> None:
        self.base = base
        self._calibration = CalibrationCache(calibration)
        self._splicer: SingleLayerInt8 | None = None
        self._ranges: RangeSet | None = None  # the prepared base's ranges, kept by the cache

    def __enter__(self) -> "VariantBuilder":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Nothing to release; kept so callers can use the builder as a context manager."""

    def build(self, layers: Sequence[str], routine: str, method: str = "minmax") -> onnx.ModelProto:
        """``base`` with ``layers`` in ``routine`` and every other node as it was; ``method``: int8's
        calibration method for these layers (``engine.passes.calibration.METHODS``)."""
        if routine not in ROUTINES:
            raise LayerLabError(f"routine {routine!r}: must be one of {', '.join(ROUTINES)}")
        if routine == "int8" and len(layers) == 1:
            spliced = self._single_int8(layers[0], method)
            if spliced is not None:
                return spliced
        extra = {"int8_calibration": {layer: method for layer in layers}} if routine == "int8" else {}
        result = PrecisionPass(calibration=self._calibration, **{routine: layers}, **extra)(self.base)
        for note in result.notes:
            logger.info("%s of %s: %s", routine, ", ".join(layers)[:200], note)
        return result.model

    def _single_int8(self, layer: str, method: str = "minmax") -> onnx.ModelProto | None:
        """The layer quantized alone and spliced back; None before calibration or where the splice does not apply."""
        if self._splicer is None:
            self._splicer = SingleLayerInt8(prepare(clone(self.base)))
        if self._ranges is None:
            # The first whole-model run calibrates; its ranges are kept under the prepared model's bytes.
            ranges = self._calibration.ranges_for(self._splicer.base)
            if ranges is None:
                return None
            self._ranges = ranges
        if method not in self._ranges.ranges:  # computed once, kept by the cache with the MinMax ranges
            self._calibration.ranges(self._splicer.base, (method,))
        alone = self._splicer.one_node_model(layer)
        if alone is None:
            return None
        # Only the layer's own tensors: ORT computes quantization parameters for every range it is given.
        touched = {v.name for v in list(alone.graph.input) + list(alone.graph.output)}
        quantized = _static_int8(alone, [layer], self._calibration, self._ranges.pick({t: method for t in touched}, only=touched))
        model = self._splicer.splice(layer, quantized)
        if model is not None and unconverted(model, [layer], "int8"):
            logger.info("int8 of %s: ONNX Runtime left the layer in fp32", layer)
        return model

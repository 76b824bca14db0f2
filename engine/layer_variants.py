"""Per-layer precision variants for the sensitivity sweep: int8 (QDQ U8S8 per-channel), int8_dynamic, fp16.

A thin caller of ``engine.transforms.precision.PrecisionPass``: the sweep builds hundreds of
variants of one base model, so ``VariantBuilder`` keeps one ``CalibrationCache`` for all of them;
calibration runs once and every int8 variant uses the same ranges. The changed layer keeps its node
name and output names, so the rest of the graph is untouched.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import onnx

from engine.errors import LayerLabError
from engine.ops import op_facts
from engine.transforms.precision import ROUTINES, CalibrationCache, PrecisionPass

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

    def __enter__(self) -> "VariantBuilder":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Nothing to release; kept so callers can use the builder as a context manager."""

    def build(self, layers: Sequence[str], routine: str) -> onnx.ModelProto:
        """``base`` with ``layers`` in ``routine`` and every other node as it was."""
        if routine not in ROUTINES:
            raise LayerLabError(f"routine {routine!r}: must be one of {', '.join(ROUTINES)}")
        result = PrecisionPass(calibration=self._calibration, **{routine: layers})(self.base)
        for note in result.notes:
            logger.info("%s of %s: %s", routine, ", ".join(layers)[:200], note)
        return result.model

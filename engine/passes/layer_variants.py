"""Per-layer precision variants for the sensitivity sweep: int8 (QDQ U8S8 per-channel), int8_dynamic, fp16.

A thin caller of ``engine.passes.precision.PrecisionPass``: the sweep builds hundreds of
variants of one base model, so ``VariantBuilder`` keeps one ``CalibrationCache`` for all of them;
calibration runs once and every int8 variant uses the same ranges. The changed layer keeps its node
name and output names, so the rest of the graph is untouched. Once the ranges are known, a single
layer's int8 variant is quantized on its own and spliced back (``engine.passes.int8_splice``):
the same nodes as quantizing the whole model with only that layer chosen, at a fraction of the cost.

``int8_variants`` adds the per-layer int8 methods (``INT8_METHODS``): bias correction of the layer
(``engine.passes.bias_correction``, on the same calibration samples) and cross-layer equalization of
the Conv pair the layer starts (``engine.passes.cle``, exact), alone and together. They run the same
int8 kernels, so they cost what int8 costs; only their drops differ. A variant is named
``method[+cle][+bias_correction]`` (``variant_name``), as the plan's layer settings spell it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence

import numpy as np
import onnx

from engine.errors import LayerLabError
from engine.ir.ops import op_facts
from engine.passes.base import clone
from engine.passes.bias_correction import correct_biases
from engine.passes.cle import CLEPass, find_pairs
from engine.passes.calibration import RangeSet
from engine.passes.int8_splice import SingleLayerInt8
from engine.passes.precision import ROUTINES, CalibrationCache, PrecisionPass, _static_int8, prepare, unconverted

__all__ = ["INT8_METHODS", "ROUTINES", "applicable", "parse_variant", "variant_name", "VariantBuilder"]

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


#: per-layer int8 methods the sweep can try on top of each calibration method
INT8_METHODS = ("cle", "bias_correction")


def variant_name(method: str, cle: bool = False, bias_correction: bool = False) -> str:
    """``minmax``, ``entropy+bias_correction``, ``minmax+cle+bias_correction``..."""
    return "+".join([method] + ["cle"] * cle + ["bias_correction"] * bias_correction)


def parse_variant(name: str) -> tuple[str, bool, bool]:
    """(calibration method, cle, bias_correction) of a ``variant_name``."""
    method, *extras = name.split("+")
    unknown = [e for e in extras if e not in INT8_METHODS]
    if unknown:
        raise LayerLabError(f"int8 variant {name!r}: unknown method {unknown[0]!r} (choose from {', '.join(INT8_METHODS)})")
    return method, "cle" in extras, "bias_correction" in extras


class VariantBuilder:
    """Builds ``base`` with a set of layers in one routine, calibrating int8 once per builder."""

    def __init__(self, base: onnx.ModelProto, calibration: Sequence[dict[str, np.ndarray]]) -> None:
        self.base = base
        self._calibration = CalibrationCache(calibration)
        self._splicer: SingleLayerInt8 | None = None
        self._ranges: RangeSet | None = None  # the prepared base's ranges, kept by the cache
        self._samples = list(calibration)
        self._fp32: onnx.ModelProto | None = None  # the prepared base: bias correction's reference
        self._pair_starts: set[str] | None = None  # first convs of the CLE pairs
        self._equalized: tuple[str, VariantBuilder] | None = None  # the last layer's CLE'd builder (the sweep goes layer by layer)

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

    def variants(self, layer: str, routine: str, calibration: Sequence[str] = ("minmax",),
                 methods: Sequence[str] = ()) -> Iterator[tuple[str, onnx.ModelProto]]:
        """(variant name, model) of each variant the sweep measures for ``layer`` in ``routine``: int8 has
        one per calibration method and int8 method (``int8_variants``); other routines one, named minmax."""
        if routine != "int8":
            yield "minmax", self.build([layer], routine)
            return
        for method in calibration:
            yield from self.int8_variants(layer, method, methods)

    def int8_variants(self, layer: str, method: str = "minmax", methods: Sequence[str] = ()) -> Iterator[tuple[str, onnx.ModelProto]]:
        """(variant name, model) of ``layer`` in int8 with ``method``: plain, then with each of ``methods``
        (``INT8_METHODS``) and both, leaving out those that do not apply (no bias to correct, no CLE pair)."""
        unknown = [m for m in methods if m not in INT8_METHODS]
        if unknown:
            raise LayerLabError(f"int8 method {unknown[0]!r}: choose from {', '.join(INT8_METHODS)}")
        plain = self.build([layer], "int8", method)
        yield method, plain
        built: list[tuple[bool, VariantBuilder, onnx.ModelProto]] = [(False, self, plain)]
        if "cle" in methods:
            if self._pair_starts is None:
                self._pair_starts = {p.first for p in find_pairs(self.base)}
            if layer in self._pair_starts:
                builder = self._cle_builder(layer)
                equalized = builder.build([layer], "int8", method)
                yield variant_name(method, cle=True), equalized
                built.append((True, builder, equalized))
        if "bias_correction" in methods and self._samples:
            for cle, builder, model in built:
                corrected, done = builder.bias_corrected(model, layer)
                if done:
                    yield variant_name(method, cle, True), corrected

    def bias_corrected(self, model: onnx.ModelProto, layer: str) -> tuple[onnx.ModelProto, bool]:
        """``model`` (built by this builder) with ``layer``'s quantized bias corrected; whether it had one."""
        if self._fp32 is None:
            self._fp32 = prepare(clone(self.base))
        corrected, done = correct_biases(self._fp32, model, [layer], self._samples)
        return corrected, bool(done)

    def _cle_builder(self, layer: str) -> "VariantBuilder":
        """A builder on ``base`` with the pair ``layer`` starts equalized (calibrated on its own: ranges move)."""
        if self._equalized is None or self._equalized[0] != layer:
            self._equalized = (layer, VariantBuilder(CLEPass({layer})(self.base).model, self._samples))
        return self._equalized[1]

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

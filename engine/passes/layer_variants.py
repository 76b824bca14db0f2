"""Per-layer precision variants for the sensitivity sweep: int8 (QDQ U8S8 per-channel), int8_dynamic, fp16.

A thin caller of ``engine.passes.precision.PrecisionPass``: the sweep builds hundreds of
variants of one base model, so ``VariantBuilder`` keeps one ``CalibrationCache`` for all of them;
calibration runs once and every int8 variant uses the same ranges. The changed layer keeps its node
name and output names, so the rest of the graph is untouched. Once the ranges are known, a single
layer's int8 variant is quantized on its own and spliced back (``engine.passes.int8_splice``):
the same nodes as quantizing the whole model with only that layer chosen, at a fraction of the cost.

``int8_variants`` adds the per-layer int8 methods (``INT8_METHODS``): bias correction of the layer
(``engine.passes.bias_correction``, on the same calibration samples), cross-layer equalization of
the Conv pair the layer ends (its input's producer and itself) with high-bias absorption (``engine.passes.cle``: exact, but for a
ReLU6 replaced by ReLU as AIMET does, whose cost the measured drop includes) and SmoothQuant migration of a
MatMul/Gemm's activation outliers into its weights (``engine.passes.smoothquant``, alpha
``SMOOTHQUANT_ALPHA``, exact in fp32) and symmetric activation ranges for the tensors the layer reads
and writes (uint8 with zero point 128, ``engine.passes.precision.symmetric_ranges``), each alone and
with bias correction. They run the same int8
kernels, so they cost what int8 costs (SmoothQuant adds a Mul by 1/s before the layer when its input
is not a LayerNormalization output it alone reads: not priced, but tune's rounds measure it); only
their drops differ. A variant is named ``method[+cle|+smoothquant|+symmetric][+bias_correction]``
(``variant_name``), as the plan's layer settings spell it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np
import onnx

from engine.errors import LayerLabError
from engine.ir.graph import ModelGraph, Node
from engine.ir.routines import routine_problem
from engine.passes.base import clone
from engine.passes.bias_correction import correct_biases
from engine.passes.cle import CLEPass, find_pairs
from engine.passes.calibration import RangeSet
from engine.passes.int8_splice import SingleLayerInt8
from engine.passes.smoothquant import SmoothQuantPass, smoothable
from engine.passes.precision import (ROUTINES, CalibrationCache, PrecisionPass, _static_int8, prepare, symmetric_ranges,
                                     tensor_methods, unconverted)

__all__ = ["INT8_METHODS", "ROUTINES", "SMOOTHQUANT_ALPHA", "Int8Variant", "applicable", "parse_variant", "variant_name",
           "VariantBuilder"]

logger = logging.getLogger(__name__)


def applicable(graph: ModelGraph, node: Node, routine: str) -> bool:
    """Whether ``routine`` exists for layer ``node`` of ``graph`` (``routine_problem`` says why not)."""
    return not routine_problem(graph, node, routine)


#: per-layer int8 methods the sweep can try on top of each calibration method
INT8_METHODS = ("cle", "bias_correction", "smoothquant", "symmetric")
#: SmoothQuant's migration strength in the sweep's variant and the plans tune writes (the paper's default)
SMOOTHQUANT_ALPHA = 0.5


class Int8Variant(NamedTuple):
    """One int8 variant of a layer: its calibration method and the int8 methods applied."""

    method: str
    cle: bool = False
    bias_correction: bool = False
    smoothquant: bool = False
    symmetric: bool = False


def variant_name(method: str, cle: bool = False, bias_correction: bool = False, smoothquant: bool = False,
                 symmetric: bool = False) -> str:
    """``minmax``, ``entropy+bias_correction``, ``minmax+cle+bias_correction``, ``minmax+smoothquant``..."""
    return "+".join([method] + ["cle"] * cle + ["smoothquant"] * smoothquant + ["symmetric"] * symmetric
                    + ["bias_correction"] * bias_correction)


def parse_variant(name: str) -> Int8Variant:
    """The ``Int8Variant`` a ``variant_name`` names."""
    method, *extras = name.split("+")
    unknown = [e for e in extras if e not in INT8_METHODS]
    if unknown:
        raise LayerLabError(f"int8 variant {name!r}: unknown method {unknown[0]!r} (choose from {', '.join(INT8_METHODS)})")
    return Int8Variant(method, "cle" in extras, "bias_correction" in extras, "smoothquant" in extras, "symmetric" in extras)


class VariantBuilder:
    """Builds ``base`` with a set of layers in one routine, calibrating int8 once per builder."""

    def __init__(self, base: onnx.ModelProto, calibration: Sequence[dict[str, np.ndarray]]) -> None:
        self.base = base
        self._calibration = CalibrationCache(calibration)
        self._splicer: SingleLayerInt8 | None = None
        self._ranges: RangeSet | None = None  # the prepared base's ranges, kept by the cache
        self._samples = list(calibration)
        self._fp32: onnx.ModelProto | None = None  # the prepared base: bias correction's reference
        self._pair_ends: set[str] | None = None  # second convs of the CLE pairs
        self._smoothable: set[str] | None = None  # MatMul/Gemm layers SmoothQuant can migrate
        # the last layer's builders on a CLE'd or smoothed base, by method (the sweep goes layer by layer)
        self._derived: dict[str, tuple[str, VariantBuilder]] = {}

    def __enter__(self) -> "VariantBuilder":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Nothing to release; kept so callers can use the builder as a context manager."""

    def build(self, layers: Sequence[str], routine: str, method: str = "minmax", symmetric: bool = False) -> onnx.ModelProto:
        """``base`` with ``layers`` in ``routine`` and every other node as it was; ``method``: int8's
        calibration method for these layers (``engine.passes.calibration.METHODS``); ``symmetric``: their
        activation ranges made symmetric."""
        if routine not in ROUTINES:
            raise LayerLabError(f"routine {routine!r}: must be one of {', '.join(ROUTINES)}")
        if routine == "int8" and len(layers) == 1:
            spliced = self._single_int8(layers[0], method, symmetric)
            if spliced is not None:
                return spliced
        extra = {"int8_calibration": {layer: method for layer in layers},
                 "int8_symmetric": layers if symmetric else ()} if routine == "int8" else {}
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
        (``INT8_METHODS``) alone and with bias correction, leaving out those that do not apply (no bias to
        correct, no CLE pair, no MatMul/Gemm with a constant weight, no calibration samples)."""
        unknown = [m for m in methods if m not in INT8_METHODS]
        if unknown:
            raise LayerLabError(f"int8 method {unknown[0]!r}: choose from {', '.join(INT8_METHODS)}")
        plain = self.build([layer], "int8", method)
        yield method, plain
        built: list[tuple[dict[str, bool], VariantBuilder, onnx.ModelProto]] = [({}, self, plain)]
        if "cle" in methods:
            if self._pair_ends is None:
                self._pair_ends = {p.second for p in find_pairs(self.base, approximate=True)}
            if layer in self._pair_ends:
                builder = self._derived_builder(layer, "cle")
                built.append(({"cle": True}, builder, builder.build([layer], "int8", method)))
                yield variant_name(method, cle=True), built[-1][2]
        if "smoothquant" in methods and self._samples:
            if self._smoothable is None:
                self._smoothable = {n.name for nodes in smoothable(self.base).values() for n in nodes}
            if layer in self._smoothable:
                builder = self._derived_builder(layer, "smoothquant")
                built.append(({"smoothquant": True}, builder, builder.build([layer], "int8", method)))
                yield variant_name(method, smoothquant=True), built[-1][2]
        if "symmetric" in methods:
            built.append(({"symmetric": True}, self, self.build([layer], "int8", method, symmetric=True)))
            yield variant_name(method, symmetric=True), built[-1][2]
        if "bias_correction" in methods and self._samples:
            for flags, builder, model in built:
                corrected, done = builder.bias_corrected(model, layer)
                if done:
                    yield variant_name(method, bias_correction=True, **flags), corrected

    def bias_corrected(self, model: onnx.ModelProto, layer: str) -> tuple[onnx.ModelProto, bool]:
        """``model`` (built by this builder) with ``layer``'s quantized bias corrected; whether it had one."""
        if self._fp32 is None:
            self._fp32 = prepare(clone(self.base))
        corrected, done = correct_biases(self._fp32, model, [layer], self._samples)
        return corrected, bool(done)

    def _derived_builder(self, layer: str, kind: str) -> "VariantBuilder":
        """A builder on ``base`` with the pair ``layer`` ends equalized (``kind`` "cle") or with ``layer``'s
        input smoothed ("smoothquant"); calibrated on its own, since the ranges move."""
        kept = self._derived.get(kind)
        if kept is None or kept[0] != layer:
            if kind == "cle":
                base = CLEPass({layer}, approximate=True, samples=self._samples)(self.base).model
            else:
                base = SmoothQuantPass({layer: SMOOTHQUANT_ALPHA}, self._samples)(self.base).model
            kept = self._derived[kind] = (layer, VariantBuilder(base, self._samples))
        return kept[1]

    def _single_int8(self, layer: str, method: str = "minmax", symmetric: bool = False) -> onnx.ModelProto | None:
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
        ranges = self._ranges.pick({t: method for t in touched}, only=touched)
        if symmetric:
            ranges = symmetric_ranges(ranges, tensor_methods(alone, {layer: method}))
        quantized = _static_int8(alone, [layer], self._calibration, ranges)
        model = self._splicer.splice(layer, quantized)
        if model is not None and unconverted(model, [layer], "int8"):
            logger.info("int8 of %s: ONNX Runtime left the layer in fp32", layer)
        return model

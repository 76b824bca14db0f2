"""The plan: the user's per-layer choices (precision, pruning, rank) as typed values and JSON.

A plan file is JSON with a ``default`` and per-layer entries keyed by node name (the names of
``ModelGraph.model``)::

    {
      "default": {"precision": "fp32"},
      "layers": {
        "conv_3": {"precision": "int8", "prune": {"ratio": 0.5, "mode": "structured"}, "rank": null},
        "fc_1": {"rank": 32}
      }
    }

Fields of one entry (all optional):

- ``precision``: ``fp32``, ``fp16``, ``int8`` (static QDQ, U8S8 per-channel), ``int8_dynamic``
  (MatMul/Gemm only) or ``auto`` (DPRS decides; ``layerlab apply`` refuses ``auto`` with
  "resolve auto with layerlab tune first", because guessing fp32 would silently change the result).
  A layer entry without ``precision`` inherits the default's.
- ``prune``: ``{"ratio": r, "mode": "unstructured"|"structured", "criterion": "l1"|"l2"|"data",
  "reconstruct": true|false}`` with 0 <= r < 1; ``null`` means no pruning. Unstructured zeroes the
  smallest weights; structured removes channels of the layer's whole prune group (see
  ``engine.passes.prune``); "data" ranks channels on calibration data; ``reconstruct`` (default
  true) refits the consumers by least squares when calibration data exists. A default ``prune``
  applies to every layer that can be pruned; the ones that cannot are listed, not failed.
- ``rank``: an int k >= 1 for a truncated-SVD factorisation (Gemm/MatMul/Conv), ``null`` for none.
- ``calibration``: for an int8 layer, how the ranges of the tensors it reads and writes are computed:
  ``minmax`` (the default when absent), ``percentile99.9``, ``percentile99.99``, ``percentile99.999``
  or ``entropy`` (see ``engine.passes.calibration``). ``layerlab tune`` writes the method the
  sensitivity sweep measured best for the layer; plans without the field read as before.
- ``cle``: ``true`` equalizes this Conv with the Conv that feeds it (cross-layer equalization,
  ``engine.passes.cle``, then high-bias absorption; exact, fp32 outputs unchanged, but for a ReLU6
  between them, replaced by ReLU as AIMET does: the notes say so). ``bias_correction``: ``true`` folds this
  int8 layer's mean output error on the calibration samples into its bias
  (``engine.passes.bias_correction``). ``symmetric``: ``true`` makes the ranges of the tensors this
  int8 layer reads and writes symmetric about 0 (uint8 activations with zero point 128: the same
  U8S8 kernels, a different rounding grid). All three default to ``false`` and are written only when true.
- ``smoothquant``: a number alpha in [0, 1] migrates this MatMul/Gemm's activation outliers into its
  weights (``engine.passes.smoothquant``; fp32 outputs unchanged); absent or ``null``: not done.

A top-level ``"ops": "int8"`` (default ``"fp32"``) also quantizes the ops that are not layers
(Add, Concat, MaxPool, Reshape ...) wherever ONNX Runtime's quantizer can, as whole-model
``quantize_static`` does: int8 data then flows between int8 layers without a Dequantize/Quantize
pair at every op. It can cost accuracy (on ppocr-rec it does) and is measured, not predicted.

``prune`` and ``rank`` of the default apply to layers that have no entry of their own; a rank in
the default is reported as a problem because ranks depend on each layer's size. A layer cannot be
both pruned and factored. ``engine.passes.manager.check_plan(plan, graph)`` lists every problem with the reason; unknown
layer names are problems, never silently ignored.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from engine.errors import SettingsError

__all__ = ["CALIBRATIONS", "OPS_PRECISIONS", "PRECISIONS", "PRUNE_MODES", "LayerSettings", "Plan", "PruneSettings"]

logger = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "int8", "int8_dynamic", "auto")
PRUNE_MODES = ("unstructured", "structured")
OPS_PRECISIONS = ("fp32", "int8")  # the plan's "ops": what the non-layer ops run in
_CRITERIA = ("l1", "l2", "data")
#: int8 calibration methods (computed in engine.passes.calibration)
CALIBRATIONS = ("minmax", "percentile99.9", "percentile99.99", "percentile99.999", "entropy")


@dataclass(frozen=True)
class PruneSettings:
    """How much of a layer to prune, and how."""

    ratio: float
    mode: str = "unstructured"
    criterion: str = "l1"
    reconstruct: bool = True  # refit the consumers on calibration data (structured, when data exists)

    def __post_init__(self) -> None:
        if isinstance(self.ratio, bool) or not isinstance(self.ratio, (int, float)) or not 0 <= self.ratio < 1:
            raise SettingsError(f"prune ratio {self.ratio!r}: must be a number in [0, 1)")
        if self.mode not in PRUNE_MODES:
            raise SettingsError(f"prune mode {self.mode!r}: must be one of {', '.join(PRUNE_MODES)}")
        if self.criterion not in _CRITERIA:
            raise SettingsError(f"prune criterion {self.criterion!r}: must be one of {', '.join(_CRITERIA)}")
        if not isinstance(self.reconstruct, bool):
            raise SettingsError(f"prune reconstruct {self.reconstruct!r}: must be true or false")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ratio": self.ratio, "mode": self.mode, "criterion": self.criterion}
        if not self.reconstruct:
            out["reconstruct"] = False
        return out


@dataclass(frozen=True)
class LayerSettings:
    """One layer's choices; ``precision=None`` inherits the plan's default precision."""

    precision: str | None = "fp32"
    prune: PruneSettings | None = None
    rank: int | None = None
    calibration: str | None = None  # int8 calibration method; None: minmax
    cle: bool = False  # cross-layer equalization with the Conv that feeds this one
    bias_correction: bool = False  # empirical bias correction of this int8 layer
    symmetric: bool = False  # symmetric activation ranges (uint8, zero point 128) for this int8 layer
    smoothquant: float | None = None  # SmoothQuant migration strength alpha; None: not done
    provider: str | None = None  # the execution provider the layer (and its segment's ops) runs on; None: CPU

    def __post_init__(self) -> None:
        if self.provider is not None and (not isinstance(self.provider, str) or not self.provider.endswith("ExecutionProvider")):
            raise SettingsError(f"provider {self.provider!r}: must name an ONNX Runtime execution provider "
                                "(e.g. OpenVINOExecutionProvider) or be null")
        if self.precision is not None and self.precision not in PRECISIONS:
            raise SettingsError(f"precision {self.precision!r}: must be one of {', '.join(PRECISIONS)}")
        if self.calibration is not None and self.calibration not in CALIBRATIONS:
            raise SettingsError(f"calibration {self.calibration!r}: must be one of {', '.join(CALIBRATIONS)}")
        for name in ("cle", "bias_correction", "symmetric"):
            if not isinstance(getattr(self, name), bool):
                raise SettingsError(f"{name} {getattr(self, name)!r}: must be true or false")
        sq = self.smoothquant
        if sq is not None and (isinstance(sq, bool) or not isinstance(sq, (int, float)) or not 0 <= sq <= 1):
            raise SettingsError(f"smoothquant {sq!r}: must be a number in [0, 1] or null")
        if self.rank is not None and (isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank < 1):
            raise SettingsError(f"rank {self.rank!r}: must be a whole number >= 1 or null")

    @property
    def is_identity(self) -> bool:
        """True when these settings leave a layer as it is (fp32, not pruned, not factored)."""
        pruned = self.prune is not None and self.prune.ratio > 0
        return self.precision in ("fp32", None) and not pruned and self.rank is None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.precision is not None:
            out["precision"] = self.precision
        out["prune"] = self.prune.to_dict() if self.prune else None
        out["rank"] = self.rank
        if self.calibration is not None:
            out["calibration"] = self.calibration
        for name in ("cle", "bias_correction", "symmetric"):
            if getattr(self, name):
                out[name] = True
        if self.smoothquant is not None:
            out["smoothquant"] = self.smoothquant
        if self.provider is not None:
            out["provider"] = self.provider
        return out

    @classmethod
    def from_dict(cls, data: Any, where: str, inherit_precision: bool) -> LayerSettings:
        if not isinstance(data, dict):
            raise SettingsError(f"{where}: expected an object, got {type(data).__name__}")
        known = ("precision", "prune", "rank", "calibration", "cle", "bias_correction", "smoothquant", "symmetric", "provider")
        unknown = set(data) - set(known)
        if unknown:
            raise SettingsError(f"{where}: unknown field(s) {', '.join(sorted(unknown))} (known: {', '.join(known)})")
        prune = data.get("prune")
        try:
            if prune is not None:
                if not isinstance(prune, dict) or set(prune) - {"ratio", "mode", "criterion", "reconstruct"} or "ratio" not in prune:
                    raise SettingsError(f"prune {prune!r}: expected {{'ratio': r, 'mode': ..., 'criterion': ..., 'reconstruct': ...}}")
                prune = PruneSettings(**prune)
            precision = data.get("precision", None if inherit_precision else "fp32")
            return cls(precision=precision, prune=prune, rank=data.get("rank"), calibration=data.get("calibration"),
                       cle=data.get("cle", False), bias_correction=data.get("bias_correction", False),
                       smoothquant=data.get("smoothquant"), symmetric=data.get("symmetric", False),
                       provider=data.get("provider"))
        except (SettingsError, TypeError) as exc:
            raise SettingsError(f"{where}: {exc}") from None


@dataclass
class Plan:
    """A default and per-layer overrides, keyed by node name."""

    default: LayerSettings = field(default_factory=LayerSettings)
    layers: dict[str, LayerSettings] = field(default_factory=dict)
    ops: str = "fp32"  # one of OPS_PRECISIONS

    def __post_init__(self) -> None:
        if self.ops not in OPS_PRECISIONS:
            raise SettingsError(f"ops {self.ops!r}: must be one of {', '.join(OPS_PRECISIONS)}")

    def settings_for(self, name: str) -> LayerSettings:
        """The effective settings of layer ``name`` (its entry, precision filled from the default)."""
        own = self.layers.get(name)
        if own is None:
            return replace(self.default, rank=None)  # a default rank is never applied (see check_plan)
        if own.precision is None:
            return replace(own, precision=self.default.precision or "fp32")
        return own

    # --- JSON ----------------------------------------------------------------------------

    @classmethod
    def from_json(cls, text: str, label: str = "<plan>") -> Plan:
        """Parse a plan; SettingsError naming ``label`` and the field for anything malformed."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SettingsError(f"{label}: not valid JSON ({exc})") from None
        return cls.from_dict(data, label)

    @classmethod
    def from_dict(cls, data: Any, label: str = "<plan>") -> Plan:
        if not isinstance(data, dict):
            raise SettingsError(f"{label}: expected a JSON object with 'default' and 'layers'")
        unknown = set(data) - {"default", "layers", "ops"}
        if unknown:
            raise SettingsError(f"{label}: unknown field(s) {', '.join(sorted(unknown))} (known: default, layers, ops)")
        default = LayerSettings.from_dict(data.get("default", {}), f"{label}: default", inherit_precision=False)
        layers_raw = data.get("layers", {})
        if not isinstance(layers_raw, dict):
            raise SettingsError(f"{label}: 'layers' must be an object keyed by layer name")
        layers = {
            str(name): LayerSettings.from_dict(entry, f"{label}: layer {name!r}", inherit_precision=True)
            for name, entry in layers_raw.items()
        }
        try:
            return cls(default=default, layers=layers, ops=data.get("ops", "fp32"))
        except SettingsError as exc:
            raise SettingsError(f"{label}: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        out = {"default": self.default.to_dict(), "layers": {k: v.to_dict() for k, v in self.layers.items()}}
        if self.ops != "fp32":
            out["ops"] = self.ops
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Plan:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise SettingsError(f"{path}: cannot read plan ({exc.strerror or exc})") from None
        return cls.from_json(text, str(path))

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the plan atomically (a temp file renamed over the target)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(self.to_json() + "\n", encoding="utf-8")
        os.replace(tmp, path)

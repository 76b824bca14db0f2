"""What every agent job checks in a request: models as data (no external files), known providers,
integers in range, the blobs it needs. Each refusal is a ``WireError``: one line to the client."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import onnx

from engine.ir.graph import ModelGraph, build_graph
from engine.measure.timing import PROVIDER
from engine.measure.wire import WireError

__all__ = ["blob", "graph", "int_setting", "model", "provider", "provider_name"]

logger = logging.getLogger(__name__)


def model(data: bytes, name: str) -> onnx.ModelProto:
    """An ONNX model from request bytes; refused when it points at external data (the agent's own files)."""
    try:
        proto = onnx.load_model_from_string(data)
    except Exception:
        raise WireError(f"{name}: not an ONNX model or truncated") from None
    for tensor in onnx.external_data_helper._get_all_tensors(proto):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            raise WireError(f"{name}: models with external data are refused; send the weights embedded")
    return proto


def graph(data: bytes, shapes: Mapping[str, tuple[int, ...]], name: str) -> ModelGraph:
    """``model`` validated and built at ``shapes``."""
    return build_graph(model(data, name), dict(shapes), path=Path(f"<{name}>"), sha256=hashlib.sha256(data).hexdigest())


def provider_name(value: Any) -> str:
    """An execution provider this target's ONNX Runtime has (None: the CPU provider)."""
    import onnxruntime as ort

    value = value or PROVIDER
    if value not in ort.get_available_providers():
        raise WireError(f"execution provider {value!r} is not available on this target "
                        f"(it has: {', '.join(ort.get_available_providers())})")
    return str(value)


def provider(settings: Mapping[str, Any]) -> str:
    """The request's ``provider`` setting, checked."""
    return provider_name(settings.get("provider"))


def blob(blobs: Mapping[str, bytes], name: str) -> bytes:
    if name not in blobs:
        raise WireError(f"the request lacks the {name!r} blob")
    return blobs[name]


def int_setting(settings: Mapping[str, Any], key: str, default: int | None, lo: int, hi: int) -> int | None:
    value = settings.get(key, default)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise WireError(f"setting {key}={value!r}: expected an integer from {lo} to {hi}")
    return value

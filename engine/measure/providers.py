"""Execution providers as routine sources: which routines each ONNX Runtime provider has kernels for.

Facts as data, looked up by provider name. The profiler times routines on the CPU provider
(``engine.measure.timing.PROVIDER``); an agent reports this table for the providers its ONNX Runtime
offers, so a client sees which routines a target could run (fp16 on CUDA/TensorRT, int8 on
TensorRT/OpenVINO/QNN) before it asks for a profile. On CPU, fp16 runs fp32 kernels plus casts
(DESIGN.md), so it is listed but flagged.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

__all__ = ["CPU", "PROVIDER_ROUTINES", "routine_on", "routines_by_provider", "short_name", "split_routine"]

logger = logging.getLogger(__name__)

# provider -> {routine: note}; an empty note means native kernels.
PROVIDER_ROUTINES: dict[str, dict[str, str]] = {
    "CPUExecutionProvider": {"fp32": "", "int8": "QDQ U8S8 per-channel", "int8_dynamic": "MatMul/Gemm only",
                             "fp16": "no CPU kernels: casts around fp32"},
    "CUDAExecutionProvider": {"fp32": "", "fp16": "", "int8": "QDQ, few kernels"},
    "TensorrtExecutionProvider": {"fp32": "", "fp16": "", "int8": "QDQ"},
    "OpenVINOExecutionProvider": {"fp32": "", "fp16": "", "int8": "QDQ"},
    "QNNExecutionProvider": {"int8": "QDQ", "fp16": "HTP only"},
    "DmlExecutionProvider": {"fp32": "", "fp16": ""},
    "CoreMLExecutionProvider": {"fp32": "", "fp16": ""},
}


def routines_by_provider(providers: Iterable[str]) -> dict[str, dict[str, str]]:
    """For each provider named, its routines and notes; providers not in the table get ``{}`` (unknown)."""
    return {p: dict(PROVIDER_ROUTINES.get(p, {})) for p in providers}


#: The provider a routine runs on when its name carries none ("fp32", "int8"): what the profiler uses.
CPU = "CPUExecutionProvider"
_SUFFIX = "ExecutionProvider"


def short_name(provider: str) -> str:
    """"OpenVINOExecutionProvider" -> "OpenVINO": how routine names spell a provider."""
    return provider.removesuffix(_SUFFIX)


def routine_on(base: str, provider: str) -> str:
    """The routine ``base`` (fp32, int8 ...) on ``provider``: ``fp32@OpenVINO``; CPU routines keep their plain name."""
    return base if provider == CPU else f"{base}@{short_name(provider)}"


def split_routine(routine: str) -> tuple[str, str]:
    """(base routine, full provider name): ``int8@OpenVINO`` -> (int8, OpenVINOExecutionProvider); ``int8`` -> CPU."""
    base, at, short = routine.partition("@")
    return (base, short + _SUFFIX) if at else (routine, CPU)

"""How LayerLab words a speed ratio, the same in the window, on the CLI and in the report.

A variant slower than fp32 reads "1.08x slower", never "0.92x faster"; a measured ratio carries its
p10-p90 spread (the variant's p90 and p10 against fp32's median) because single measures on a
shared machine can spread 2-4x.
"""

from __future__ import annotations

import logging
import math

__all__ = ["ratio_words", "speed_words"]

logger = logging.getLogger(__name__)


def _ok(x: float | None) -> bool:
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def ratio_words(ratio: float) -> str:
    """1.32 -> '1.32x faster'; 0.926 -> '1.08x slower'; 1.0 -> '1.00x (same)'."""
    if f"{ratio:.2f}" == "1.00":
        return "1.00x (same)"
    return f"{ratio:.2f}x faster" if ratio > 1 else f"{1 / ratio:.2f}x slower"


def speed_words(base_ms: float | None, ms: float | None, p10: float | None = None, p90: float | None = None) -> str:
    """fp32 over the variant in words, with the p10-p90 range of the ratio when the spread is known; '' when unknown."""
    if not _ok(base_ms) or not _ok(ms):
        return ""
    assert base_ms is not None and ms is not None
    text = ratio_words(base_ms / ms)
    if _ok(p10) and _ok(p90):
        assert p10 is not None and p90 is not None
        lo, hi = base_ms / p90, base_ms / p10
        text += f" (p10–p90 {lo:.2f}–{hi:.2f}x)"
    return text

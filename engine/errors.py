"""Error types the engine raises for problems a user can fix (bad files, bad settings).

The CLI and the GUI show these as one line; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import logging

__all__ = ["one_line", "LayerLabError", "ModelError", "SettingsError", "SessionError", "UntrustedEvaluatorError"]

logger = logging.getLogger(__name__)


class LayerLabError(Exception):
    """A problem with the user's input, explained in one line."""


class ModelError(LayerLabError):
    """An ONNX model cannot be read, validated or used."""


class SettingsError(LayerLabError):
    """A plan, shape or option is impossible for this model."""


class SessionError(LayerLabError):
    """A session file cannot be read or used (``engine.io.errors`` has the specific kinds)."""


class UntrustedEvaluatorError(SessionError):
    """An evaluator was about to run without the user's agreement."""


def one_line(exc: BaseException | str, limit: int = 300) -> str:
    """The first line of an error text, control characters shown escaped, at most ``limit`` characters.

    Messages carry names from users' files (node names with newlines or terminal escapes); the CLI
    and the window show each error as this one line.
    """
    text = str(exc).strip()
    if not text and isinstance(exc, BaseException):
        text = type(exc).__name__
    first = text.splitlines()[0] if text else ""
    first = "".join(c if c.isprintable() else repr(c)[1:-1] for c in first)
    return first if len(first) <= limit else first[: limit - 1] + "…"

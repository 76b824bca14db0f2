"""Error types the engine raises for problems a user can fix (bad files, bad settings).

The CLI and the GUI show these as one line; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import logging

__all__ = ["LayerLabError", "ModelError", "SettingsError", "SessionError", "UntrustedEvaluatorError"]

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

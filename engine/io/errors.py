"""The errors a session file can raise; the GUI tells them apart by type (e.g. offers to locate a moved model).

``SessionError`` and ``UntrustedEvaluatorError`` live in ``engine.errors`` (the session model raises
the latter) and are re-exported here with the rest.
"""

from __future__ import annotations

import logging
from pathlib import Path

from engine.errors import SessionError, UntrustedEvaluatorError

__all__ = [
    "SessionError",
    "ModelMovedError",
    "ModelChangedError",
    "NewerSchemaError",
    "MalformedSessionError",
    "UntrustedEvaluatorError",
]

logger = logging.getLogger(__name__)


class ModelMovedError(SessionError):
    """The model is not where the session says; ``expected_path`` lets the GUI offer to locate it."""

    def __init__(self, message: str, expected_path: Path, session_path: Path) -> None:
        super().__init__(message)
        self.expected_path = expected_path
        self.session_path = session_path


class ModelChangedError(SessionError):
    """The model file differs from the one profiled (sha256 mismatch)."""

    def __init__(self, message: str, model_path: Path, expected_sha256: str, actual_sha256: str) -> None:
        super().__init__(message)
        self.model_path = model_path
        self.expected_sha256 = expected_sha256
        self.actual_sha256 = actual_sha256


class NewerSchemaError(SessionError):
    """Written by a newer LayerLab: refusing is safer than dropping fields we do not know."""

    def __init__(self, message: str, version: int) -> None:
        super().__init__(message)
        self.version = version


class MalformedSessionError(SessionError):
    """Not valid JSON, or not a LayerLab session; ``line`` is set for JSON syntax errors."""

    def __init__(self, message: str, path: Path, line: int | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.line = line

"""Autosave sidecars kept beside a session, and recovering from them.

A sidecar sits next to the session file (``s.layerlab.json.autosave``), or next to the model while
the session has never been saved (``m.onnx.layerlab.autosave``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from engine.model.session import Session
from engine.io.errors import SessionError
from engine.io.files import autosave_path, is_model_path
from engine.io.session_file import load_session, save_session

__all__ = ["autosave_path", "autosave", "find_autosave", "recover", "discard_autosave"]

logger = logging.getLogger(__name__)

def autosave(session: Session) -> Path:
    """Write the session to its sidecar; the session stays dirty (the user has not saved)."""
    anchor = session.path or session.model_path
    if anchor is None:
        raise SessionError("cannot autosave a session without a model")
    return save_session(session, autosave_path(anchor), mark_saved=False)


def find_autosave(path: str | os.PathLike[str]) -> Path | None:
    """The sidecar of ``path`` (session or model) when it holds work newer than the session file."""
    path = Path(path)
    sidecar = autosave_path(path)
    if not sidecar.is_file():
        return None
    if not is_model_path(path) and path.is_file() and path.stat().st_mtime > sidecar.stat().st_mtime:
        return None  # saved after the last autosave: nothing to recover
    return sidecar


def recover(path: str | os.PathLike[str], **load_options: Any) -> Session:
    """Load the autosave of ``path`` (session or model); the result is dirty and saves to ``path``'s session."""
    path = Path(path)
    sidecar = find_autosave(path)
    if sidecar is None:
        raise SessionError(f"{path}: no autosave to recover")
    session = load_session(sidecar, **load_options)
    session.path = None if is_model_path(path) else path
    session.dirty = True
    return session


def discard_autosave(path: str | os.PathLike[str]) -> None:
    """Remove the sidecar of ``path`` (the user declined recovery)."""
    autosave_path(path).unlink(missing_ok=True)

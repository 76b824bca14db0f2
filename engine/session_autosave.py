"""Files kept beside a session: autosave sidecars (and recovering from them) and the evaluator trust list.

A sidecar sits next to the session file (``s.layerlab.json.autosave``), or next to the model while
the session has never been saved (``m.onnx.layerlab.autosave``). The trust list,
``cache_dir()/trusted_evaluators.json``, holds the path and sha256 of every evaluator the user agreed
to run. Everything here is importable from ``engine.session_file`` as well. That module saves
through these functions, so this one imports it inside the functions that need it.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from engine.session import Session
from engine.session_errors import SessionError

__all__ = ["autosave_path", "autosave", "find_autosave", "recover", "discard_autosave", "trust_evaluator", "is_trusted"]

logger = logging.getLogger(__name__)

_AUTOSAVE = ".autosave"
_TRUST_FILE = "trusted_evaluators.json"


# --- autosave --------------------------------------------------------------------------------


def autosave_path(path: str | os.PathLike[str]) -> Path:
    """The sidecar next to a session file (``s.layerlab.json.autosave``) or a model (``m.onnx.layerlab.autosave``)."""
    path = Path(path)
    if _is_model(path):
        return path.with_name(path.name + ".layerlab" + _AUTOSAVE)
    return path.with_name(path.name + _AUTOSAVE)


def _is_model(path: Path) -> bool:
    return path.suffix.lower() == ".onnx"


def autosave(session: Session) -> Path:
    """Write the session to its sidecar; the session stays dirty (the user has not saved)."""
    from engine.session_file import save_session

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
    if not _is_model(path) and path.is_file() and path.stat().st_mtime > sidecar.stat().st_mtime:
        return None  # saved after the last autosave: nothing to recover
    return sidecar


def recover(path: str | os.PathLike[str], **load_options: Any) -> Session:
    """Load the autosave of ``path`` (session or model); the result is dirty and saves to ``path``'s session."""
    from engine.session_file import load_session

    path = Path(path)
    sidecar = find_autosave(path)
    if sidecar is None:
        raise SessionError(f"{path}: no autosave to recover")
    session = load_session(sidecar, **load_options)
    session.path = None if _is_model(path) else path
    session.dirty = True
    return session


def discard_autosave(path: str | os.PathLike[str]) -> None:
    """Remove the sidecar of ``path`` (the user declined recovery)."""
    autosave_path(path).unlink(missing_ok=True)


# --- evaluator trust list --------------------------------------------------------------------


def _trust_file() -> Path:
    from engine.examples import cache_dir

    return cache_dir() / _TRUST_FILE


def _trusted_entries() -> list[dict[str, str]]:
    try:
        data = json.loads(_trust_file().read_text(encoding="utf-8"))
        return [e for e in data.get("trusted", []) if isinstance(e, dict)]
    except (OSError, ValueError, AttributeError):
        return []


def is_trusted(path: str | os.PathLike[str]) -> bool:
    """True when the evaluator at ``path``, as its bytes are now, is in the local trust list."""
    from engine.session_file import _sha256

    path = Path(path)
    if not path.is_file():
        return False
    entry = {"path": str(path.resolve()), "sha256": _sha256(path)}
    return entry in _trusted_entries()


def trust_evaluator(path: str | os.PathLike[str]) -> None:
    """Record that the user agreed to run the evaluator at ``path`` with its current contents."""
    from engine.session_file import _sha256, atomic_write_text

    path = Path(path)
    if not path.is_file():
        raise SessionError(f"{path}: evaluator not found")
    entry = {"path": str(path.resolve()), "sha256": _sha256(path)}
    entries = [e for e in _trusted_entries() if e.get("path") != entry["path"]] + [entry]
    target = _trust_file()
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(target, json.dumps({"version": 1, "trusted": entries}, indent=1) + "\n")

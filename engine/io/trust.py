"""The evaluator trust list: evaluators (by path and sha256) the user agreed to run.

It lives at ``cache_dir()/trusted_evaluators.json``. A session loaded from someone else's file runs its
evaluator only when the evaluator, as its bytes are now, is in this list.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from engine.errors import SessionError
from engine.io.examples import cache_dir
from engine.io.files import atomic_write_text, sha256_file

__all__ = ["is_trusted", "trust_evaluator"]

logger = logging.getLogger(__name__)

_TRUST_FILE = "trusted_evaluators.json"


def _trust_file() -> Path:
    return cache_dir() / _TRUST_FILE


def _trusted_entries() -> list[dict[str, str]]:
    try:
        data = json.loads(_trust_file().read_text(encoding="utf-8"))
        return [e for e in data.get("trusted", []) if isinstance(e, dict)]
    except (OSError, ValueError, AttributeError):
        return []


def is_trusted(path: str | os.PathLike[str]) -> bool:
    """True when the evaluator at ``path``, as its bytes are now, is in the local trust list."""
    path = Path(path)
    if not path.is_file():
        return False
    entry = {"path": str(path.resolve()), "sha256": sha256_file(path)}
    return entry in _trusted_entries()


def trust_evaluator(path: str | os.PathLike[str]) -> None:
    """Record that the user agreed to run the evaluator at ``path`` with its current contents."""
    path = Path(path)
    if not path.is_file():
        raise SessionError(f"{path}: evaluator not found")
    entry = {"path": str(path.resolve()), "sha256": sha256_file(path)}
    entries = [e for e in _trusted_entries() if e.get("path") != entry["path"]] + [entry]
    target = _trust_file()
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(target, json.dumps({"version": 1, "trusted": entries}, indent=1) + "\n")

"""Small file helpers the session file, the trust list and the reports share: hashing and atomic writes."""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path

__all__ = ["atomic_write_text", "autosave_path", "is_model_path", "sha256_file"]

logger = logging.getLogger(__name__)

_AUTOSAVE = ".autosave"


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The file's sha256 as hex, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the new one, never a part."""
    path = Path(path)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644  # mkstemp's 0600 would hide it from others
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, mode)
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable; not possible on every OS
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def autosave_path(path: str | os.PathLike[str]) -> Path:
    """The sidecar next to a session file (``s.layerlab.json.autosave``) or a model (``m.onnx.layerlab.autosave``)."""
    path = Path(path)
    if is_model_path(path):
        return path.with_name(path.name + ".layerlab" + _AUTOSAVE)
    return path.with_name(path.name + _AUTOSAVE)


def is_model_path(path: Path) -> bool:
    """True for an ``.onnx`` file (its autosave sidecar is named after the model, not a session)."""
    return path.suffix.lower() == ".onnx"

"""The agent protocol's pieces shared by the client and the agent: the token file, the request envelope, npz bytes.

A job request is one HTTP POST whose body is an envelope: the magic ``LLAB1``, a 4-byte big-endian
header length, a JSON header (``{"kind", "settings", "blobs": {name: length}}``), then the blobs
back to back (ONNX models as bytes, arrays as ``.npz`` bytes). Nothing in it is code: models are
read by ONNX, arrays by ``np.load(allow_pickle=False)``, settings are plain JSON checked by the agent.
The agent answers with JSON lines: ``{"progress": {...}}`` while it works, then one
``{"result": {...}}`` or ``{"error": "..."}``.
"""

from __future__ import annotations

import io
import json
import logging
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import LayerLabError, SettingsError

__all__ = ["JOB_KINDS", "PROTOCOL", "WireError", "npz_bytes", "pack", "read_npz", "read_token", "unpack"]

logger = logging.getLogger(__name__)

PROTOCOL = 1
JOB_KINDS = ("profile", "measure")
_MAGIC = b"LLAB1"
_MIN_TOKEN = 16  # characters; a short token can be guessed


class WireError(LayerLabError):
    """A request or answer that does not follow the protocol."""


def read_token(path: str | os.PathLike[str]) -> str:
    """The bearer token in ``path``; refused when the file is readable or writable by group or others."""
    p = Path(path).expanduser()
    try:
        mode = p.stat().st_mode
        text = p.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise SettingsError(f"{p}: token file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{p}: token file unreadable ({exc.__class__.__name__})") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SettingsError(f"{p}: token file is open to group or others (mode {stat.S_IMODE(mode):o}); run chmod 600 {p}")
    if len(text) < _MIN_TOKEN or any(c.isspace() for c in text):
        raise SettingsError(f"{p}: the token must be one word of at least {_MIN_TOKEN} characters "
                            "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')")
    return text


def pack(kind: str, settings: Mapping[str, Any], blobs: Mapping[str, bytes]) -> bytes:
    """The request envelope for a job."""
    header = json.dumps({"protocol": PROTOCOL, "kind": kind, "settings": dict(settings),
                         "blobs": {name: len(b) for name, b in blobs.items()}}).encode()
    return b"".join([_MAGIC, len(header).to_bytes(4, "big"), header, *blobs.values()])


def unpack(data: bytes) -> tuple[str, dict[str, Any], dict[str, bytes]]:
    """(kind, settings, blobs) from an envelope; WireError on anything malformed."""
    if not data.startswith(_MAGIC) or len(data) < len(_MAGIC) + 4:
        raise WireError("not a LayerLab job request (bad magic)")
    start = len(_MAGIC) + 4
    size = int.from_bytes(data[len(_MAGIC):start], "big")
    try:
        header = json.loads(data[start:start + size])
    except (ValueError, UnicodeDecodeError):
        raise WireError("job header is not JSON") from None
    if not isinstance(header, dict) or not isinstance(header.get("blobs"), dict) or not isinstance(header.get("settings"), dict):
        raise WireError("job header lacks 'settings' or 'blobs'")
    if header.get("protocol") != PROTOCOL:
        raise WireError(f"protocol {header.get('protocol')!r} not spoken here (this agent speaks {PROTOCOL})")
    blobs, pos = {}, start + size
    for name, length in header["blobs"].items():
        if not isinstance(length, int) or length < 0 or pos + length > len(data):
            raise WireError(f"blob {name!r}: length {length!r} does not fit the request")
        blobs[str(name)] = data[pos:pos + length]
        pos += length
    if pos != len(data):
        raise WireError(f"{len(data) - pos} bytes after the last blob")
    return str(header.get("kind")), header["settings"], blobs


def npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    """Arrays as ``.npz`` bytes (no pickled objects)."""
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    return buf.getvalue()


def read_npz(data: bytes, what: str) -> dict[str, np.ndarray]:
    """Arrays from ``.npz`` bytes, never unpickling; WireError naming ``what`` when unreadable."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as exc:  # np.load raises many kinds for bad bytes
        raise WireError(f"{what}: not a readable .npz without objects ({exc.__class__.__name__})") from None

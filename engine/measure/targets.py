"""Named remote targets, kept in a small JSON config file so a user types ``--target jetson``.

Where: ``$LAYERLAB_CONFIG/targets.json``, else ``$XDG_CONFIG_HOME/layerlab/targets.json``, else
``~/.config/layerlab/targets.json``. Format::

    {"targets": {"jetson": {"address": "10.0.0.7:8765", "token_file": "~/.config/layerlab/jetson.token"},
                 "gpu-box": {"address": "https://gpu.lan:8765", "token_file": "...", "cafile": "gpu-ca.pem"}}}

Relative paths are read from the config file's folder. The file holds no secret itself: tokens stay
in their own files (mode 600).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from engine.errors import SettingsError

__all__ = ["Target", "load_targets", "resolve_target", "targets_path"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Target:
    """Where an agent listens and how to reach it. ``name``: the targets-config name, if any."""

    host: str
    port: int
    token_file: Path
    tls: bool = False
    cafile: Path | None = None
    name: str = ""

    @property
    def address(self) -> str:
        return f"{'https://' if self.tls else ''}{self.host}:{self.port}"

    @property
    def label(self) -> str:
        return f"{self.name} ({self.address})" if self.name else self.address

    @staticmethod
    def parse(text: str, token_file: str | Path, cafile: str | Path | None = None, name: str = "") -> Target:
        """``HOST:PORT`` or ``https://HOST:PORT``; SettingsError when malformed."""
        tls = text.startswith("https://")
        rest = text.removeprefix("https://").removeprefix("http://").rstrip("/")
        host, sep, port = rest.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise SettingsError(f"target {text!r}: expected HOST:PORT or https://HOST:PORT")
        return Target(host.strip("[]"), int(port), Path(token_file).expanduser(), tls,
                      Path(cafile).expanduser() if cafile else None, name)


def targets_path() -> Path:
    """The targets config file (it need not exist)."""
    explicit = os.environ.get("LAYERLAB_CONFIG")
    if explicit:
        return Path(explicit).expanduser() / "targets.json"
    xdg = os.environ.get("XDG_CONFIG_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".config") / "layerlab" / "targets.json"


def load_targets(path: Path | None = None) -> dict[str, Target]:
    """Every named target in the config; {} when there is no file. SettingsError naming the file when malformed."""
    path = path or targets_path()
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        entries = data["targets"]
        if not isinstance(entries, dict):
            raise TypeError("'targets' is not an object")
        out = {}
        for name, entry in entries.items():
            base = path.parent
            token = base / Path(entry["token_file"]).expanduser()
            cafile = base / Path(entry["cafile"]).expanduser() if entry.get("cafile") else None
            out[name] = Target.parse(str(entry["address"]), token, cafile, name=str(name))
        return out
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SettingsError(f"{path}: malformed targets config ({exc.__class__.__name__}: {exc})") from None


def resolve_target(text: str, token_file: str | None = None, cafile: str | None = None) -> Target:
    """A target from ``--target``: a name in the config, or ``HOST:PORT`` / ``https://HOST:PORT`` with ``--token-file``."""
    named = load_targets()
    if text in named:
        t = named[text]
        if token_file or cafile:
            t = Target(t.host, t.port, Path(token_file).expanduser() if token_file else t.token_file, t.tls,
                       Path(cafile).expanduser() if cafile else t.cafile, t.name)
        return t
    if ":" not in text:
        known = ", ".join(sorted(named)) or "none"
        raise SettingsError(f"--target {text!r}: not HOST:PORT and not a named target in {targets_path()} (known: {known})")
    if not token_file:
        raise SettingsError(f"--target {text}: give --token-file FILE (the agent's token, mode 600)")
    return Target.parse(text, token_file, cafile)

"""The profile cache: measured times kept in one SQLite file so nothing is measured twice.

Where: ``$LAYERLAB_CACHE``, else ``$XDG_CACHE_HOME/layerlab``, else ``~/.cache/layerlab``; the file
is ``profiles.sqlite``. Values are JSON. Keys are built by the profiler from everything a time
depends on (model hash, routine, shapes, ORT version, provider, threads, CPU model); the cache only
stores and finds them. Two processes may share the file: WAL journal, a busy timeout, and one short
transaction per write.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import sqlite3
import time
from pathlib import Path
from typing import Any

__all__ = ["ProfileCache", "cache_key", "cpu_model", "default_cache_dir"]

logger = logging.getLogger(__name__)

_SCHEMA = "CREATE TABLE IF NOT EXISTS entries (key TEXT PRIMARY KEY, kind TEXT, value TEXT, created REAL)"


def default_cache_dir() -> Path:
    """$LAYERLAB_CACHE, else $XDG_CACHE_HOME/layerlab, else ~/.cache/layerlab."""
    explicit = os.environ.get("LAYERLAB_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "layerlab"


def cpu_model() -> str:
    """The CPU's model name (part of every key: times from another CPU are not ours)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cache_key(kind: str, /, **parts: Any) -> str:
    """A stable key: the kind, then a hash of the sorted parts (JSON)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return f"{kind}:{hashlib.sha256(text.encode()).hexdigest()[:32]}"


class ProfileCache:
    """Get and put JSON values by key; ``None`` directory or ``enabled=False`` is a cache that keeps nothing."""

    def __init__(self, directory: Path | None = None, enabled: bool = True) -> None:
        self.enabled = enabled
        self.path = (directory or default_cache_dir()) / "profiles.sqlite"
        self._conn: sqlite3.Connection | None = None
        if enabled:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
                self._set_up(self._conn)
            except (sqlite3.Error, OSError) as exc:
                # A cache that cannot open must not stop profiling: measure without it.
                logger.warning("profile cache %s unusable (%s); profiling without cache", self.path, exc)
                self._conn = None

    @staticmethod
    def _set_up(conn: sqlite3.Connection) -> None:
        """WAL journal, busy timeout and schema. Two processes creating the file at once: SQLite answers
        "database is locked" at once to one of them when both switch to WAL (its busy handler is not
        called there), so that step is tried again for a few seconds."""
        for attempt in range(50):
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA busy_timeout=30000")
                conn.execute(_SCHEMA)
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or attempt == 49:
                    raise
                time.sleep(0.1)

    def get(self, key: str) -> Any | None:
        """The value stored under ``key``, or None."""
        if self._conn is None:
            return None
        try:
            row = self._conn.execute("SELECT value FROM entries WHERE key = ?", (key,)).fetchone()
        except sqlite3.Error as exc:
            logger.warning("profile cache read failed (%s)", exc)
            return None
        return json.loads(row[0]) if row else None

    def put(self, key: str, value: Any) -> None:
        """Store ``value`` (plain JSON types) under ``key``, replacing what was there."""
        if self._conn is None:
            return
        try:
            self._conn.execute(
                "INSERT OR REPLACE INTO entries (key, kind, value, created) VALUES (?, ?, ?, ?)",
                (key, key.split(":", 1)[0], json.dumps(value), time.time()),
            )
        except sqlite3.Error as exc:
            logger.warning("profile cache write failed (%s)", exc)

    def count(self, kind: str | None = None) -> int:
        """How many entries (of one kind) the cache holds."""
        if self._conn is None:
            return 0
        if kind is None:
            return int(self._conn.execute("SELECT COUNT(*) FROM entries").fetchone()[0])
        return int(self._conn.execute("SELECT COUNT(*) FROM entries WHERE kind = ?", (kind,)).fetchone()[0])

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

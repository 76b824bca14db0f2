"""The SQLite profile cache: round trips, keys, the cache-dir rules, and two writers at once."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from engine.measure.cache import ProfileCache, cache_key, default_cache_dir


def test_put_get_replace_and_count(tmp_path: Path) -> None:
    cache = ProfileCache(tmp_path)
    key = cache_key("variant", model="abc", routine="int8", threads=2)
    assert cache.get(key) is None
    cache.put(key, {"nodes": {"conv": 0.5}, "adapts": [["x", "quantize", 0.01]]})
    cache.put(key, {"nodes": {"conv": 0.25}, "adapts": []})
    assert cache.get(key) == {"nodes": {"conv": 0.25}, "adapts": []}
    assert cache.count() == 1 and cache.count("variant") == 1 and cache.count("adapt") == 0
    cache.close()
    assert ProfileCache(tmp_path).get(key)["nodes"] == {"conv": 0.25}  # persisted


def test_keys_depend_on_every_part_and_not_on_order() -> None:
    a = cache_key("variant", model="m", routine="fp32", threads=2, cpu="x")
    assert a == cache_key("variant", cpu="x", threads=2, routine="fp32", model="m")
    assert a != cache_key("variant", model="m", routine="fp32", threads=1, cpu="x")
    assert a != cache_key("adapt", model="m", routine="fp32", threads=2, cpu="x")


def test_disabled_cache_keeps_nothing(tmp_path: Path) -> None:
    cache = ProfileCache(tmp_path, enabled=False)
    cache.put("k:1", 1.0)
    assert cache.get("k:1") is None and not (tmp_path / "profiles.sqlite").exists()


def test_unusable_directory_does_not_raise(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    cache = ProfileCache(blocker / "sub")
    cache.put("k:1", 1.0)
    assert cache.get("k:1") is None


def test_default_dir_follows_environment(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LAYERLAB_CACHE", str(tmp_path / "explicit"))
    assert default_cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv("LAYERLAB_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "layerlab"


def _writer(directory: str, worker: int) -> None:
    cache = ProfileCache(Path(directory))
    if cache._conn is None:  # the cache logs and carries on without a file: here that is the failure
        raise SystemExit(3)
    for i in range(200):
        cache.put(f"w:{worker}-{i}", {"i": i})
    cache.close()


def test_two_processes_write_at_once(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), w)) for w in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)  # spawning two interpreters on a loaded 2-core machine once took over a minute
    assert [p.exitcode for p in procs] == [0, 0]
    cache = ProfileCache(tmp_path)
    assert cache.count("w") == 400 and cache.get("w:1-199") == {"i": 199}

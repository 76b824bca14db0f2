"""Tests for engine.io.examples: the registry, the cache location and verified fetching (no network)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import zipfile
from pathlib import Path

import pytest

from engine.io import examples
from engine.errors import LayerLabError

MEMBER = "fakepkg/models/tiny.onnx"
PAYLOAD = b"not really onnx, but bytes with a known hash"


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("LAYERLAB_CACHE", str(cache))
    return cache


def _fake_wheel(dest: Path, member: str = MEMBER, payload: bytes = PAYLOAD) -> Path:
    wheel = dest / "fakepkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(member, payload)
        archive.writestr("fakepkg/__init__.py", "")
    return wheel


@pytest.fixture
def fake_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A resources/examples folder holding one fetched example whose sha matches PAYLOAD."""
    root = tmp_path / "examples"
    folder = root / "fake"
    folder.mkdir(parents=True)
    (folder / "evaluator.py").write_text("")
    manifest = {
        "name": "fake-rec",
        "description": "test",
        "fetch": {"pip": "fakepkg==1.0", "member": MEMBER, "sha256": hashlib.sha256(PAYLOAD).hexdigest()},
        "model": "tiny.onnx",
        "eval": "evaluator.py",
        "input_shapes": {"x": [1, 3, 48, 320]},
        "source": "made in a test",
    }
    (folder / "example.json").write_text(json.dumps(manifest))
    monkeypatch.setattr(examples, "_examples_root", lambda: root)
    return root


@pytest.fixture
def downloads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Replace pip with a fake that writes a wheel holding PAYLOAD; records each requirement asked for."""
    calls: list[str] = []

    def fake_download(requirement: str, dest: Path) -> Path:
        calls.append(requirement)
        return _fake_wheel(dest)

    monkeypatch.setattr(examples, "_download_wheel", fake_download)
    return calls


def test_registry_lists_digits_and_ppocr_rec() -> None:
    found = {example.name: example for example in examples.list_examples()}
    assert {"digits", "ppocr-rec"} <= set(found)
    digits = found["digits"]
    assert digits.fetched and digits.model is not None and digits.model.is_file()
    assert digits.input_shapes == {"input": (1, 1, 8, 8)}
    ppocr = found["ppocr-rec"]
    assert ppocr.input_shapes == {"x": (1, 3, 48, 320)}
    assert ppocr.eval is not None and ppocr.eval.name == "evaluator.py" and ppocr.eval.is_file()
    assert not ppocr.fetched and ppocr.model is None  # fresh, empty cache


def test_unknown_name_lists_known_names() -> None:
    with pytest.raises(LayerLabError, match=r"unknown example 'nope'.*digits.*ppocr-rec"):
        examples.get_example("nope")
    with pytest.raises(LayerLabError, match="nope"):
        examples.fetch_example("nope")


def test_cache_dir_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LAYERLAB_CACHE", str(tmp_path / "a"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert examples.cache_dir() == tmp_path / "a"
    monkeypatch.delenv("LAYERLAB_CACHE")
    assert examples.cache_dir() == tmp_path / "xdg" / "layerlab"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert examples.cache_dir() == tmp_path / "home" / ".cache" / "layerlab"


def test_fetch_extracts_verifies_and_then_reuses(fake_root: Path, downloads: list[str], _private_cache: Path) -> None:
    messages: list[str] = []
    example = examples.fetch_example("fake-rec", progress=messages.append)
    assert downloads == ["fakepkg==1.0"]
    assert example.fetched
    assert example.model == _private_cache / "examples" / "fake-rec" / "tiny.onnx"
    assert example.model.read_bytes() == PAYLOAD
    assert example.eval == fake_root / "fake" / "evaluator.py"  # evaluator ships with us, not in the cache
    assert messages and all(isinstance(m, str) for m in messages)
    assert [p.name for p in example.model.parent.iterdir()] == ["tiny.onnx"]  # no temp file left
    # Present and verified: no second download, and the registry reports it.
    assert examples.fetch_example("fake-rec") == example
    assert examples.get_example("fake-rec", fetch=True) == example
    assert downloads == ["fakepkg==1.0"]


def test_get_example_with_fetch_downloads(fake_root: Path, downloads: list[str]) -> None:
    assert examples.get_example("fake-rec").model is None
    assert examples.get_example("fake-rec", fetch=True).fetched
    assert len(downloads) == 1


def test_sha_mismatch_raises_and_leaves_nothing(monkeypatch: pytest.MonkeyPatch, _private_cache: Path) -> None:
    # The real ppocr-rec manifest, a fake wheel with the right member but wrong bytes.
    member = "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx"
    monkeypatch.setattr(examples, "_download_wheel", lambda requirement, dest: _fake_wheel(dest, member))
    with pytest.raises(LayerLabError, match="sha256"):
        examples.fetch_example("ppocr-rec")
    folder = _private_cache / "examples" / "ppocr-rec"
    assert list(folder.iterdir()) == []
    assert not examples.get_example("ppocr-rec").fetched


def test_corrupt_cached_file_is_replaced(fake_root: Path, downloads: list[str], _private_cache: Path) -> None:
    target = _private_cache / "examples" / "fake-rec" / "tiny.onnx"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"truncated")
    example = examples.fetch_example("fake-rec")
    assert len(downloads) == 1
    assert example.model is not None and example.model.read_bytes() == PAYLOAD


def test_corrupt_cached_file_removed_when_download_fails(
    fake_root: Path, monkeypatch: pytest.MonkeyPatch, _private_cache: Path
) -> None:
    target = _private_cache / "examples" / "fake-rec" / "tiny.onnx"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"truncated")

    def offline(requirement: str, dest: Path) -> Path:
        raise LayerLabError(f"cannot download {requirement} (no network?)")

    monkeypatch.setattr(examples, "_download_wheel", offline)
    with pytest.raises(LayerLabError, match="no network"):
        examples.fetch_example("fake-rec")
    assert not target.exists()
    assert not examples.get_example("fake-rec").fetched


def test_missing_member_is_a_clear_error(fake_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(examples, "_download_wheel", lambda requirement, dest: _fake_wheel(dest, "other/file"))
    with pytest.raises(LayerLabError, match=f"has no member {MEMBER}"):
        examples.fetch_example("fake-rec")


def test_pip_failure_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen: list[list[str]] = []

    def failing_run(command: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        seen.append(command)
        stderr = "WARNING: Retrying ...\nERROR: Could not find a version that satisfies the requirement fakepkg==1.0\n"
        return subprocess.CompletedProcess(command, 1, stdout="", stderr=stderr)

    monkeypatch.setattr(examples.subprocess, "run", failing_run)
    with pytest.raises(LayerLabError) as caught:
        examples._download_wheel("fakepkg==1.0", tmp_path)
    message = str(caught.value)
    assert "\n" not in message
    assert "fakepkg==1.0" in message and "Could not find a version" in message
    command = seen[0]
    assert command[1:4] == ["-m", "pip", "download"]
    assert "--no-deps" in command and "--only-binary=:all:" in command and command[-1] == "fakepkg==1.0"


def test_bad_manifest_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "examples" / "broken"
    folder.mkdir(parents=True)
    (folder / "example.json").write_text('{"description": "no name"}')
    monkeypatch.setattr(examples, "_examples_root", lambda: tmp_path / "examples")
    with pytest.raises(LayerLabError, match=r"broken/example\.json"):
        examples.list_examples()

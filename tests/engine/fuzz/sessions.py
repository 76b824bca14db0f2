"""Hostile and malformed session files, built deterministically next to one small valid model.

Each case is ``(name, build)``; ``build(folder)`` writes ``model.onnx`` and the session file into
``folder`` and returns the session's path. Every case must be refused with one line naming the file.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Callable

import onnx

from tests.engine.fuzz.models import base_model

__all__ = ["SESSION_CASES", "valid_session_data", "write_session_case"]

Build = Callable[[Path], Path]


def valid_session_data(folder: Path) -> dict[str, Any]:
    """A schema-1 session for ``folder/model.onnx`` (written here), as plain data."""
    from engine.io.files import sha256_file

    model = folder / "model.onnx"
    onnx.save(base_model(), model)
    return {
        "layerlab_session": 1,
        "model": {"path": "model.onnx", "sha256": sha256_file(model)},
        "input_shapes": {"x": [1, 3, 8, 8]},
        "evaluator": None, "plan": None, "profile": None, "sensitivity": None, "trials": [], "route": None,
        "baseline": None, "current": None, "notes": "", "machine": None, "saved_at": "2026-01-01T00:00:00+00:00",
    }


def _edit(change: Callable[[dict[str, Any]], Any]) -> Build:
    def build(folder: Path) -> Path:
        data = valid_session_data(folder)
        change(data)
        path = folder / "s.layerlab.json"
        path.write_text(json.dumps(data), encoding="utf-8")
        return path
    return build


def _set(dotted: str, value: Any) -> Build:
    def change(data: dict[str, Any]) -> None:
        *parents, last = dotted.split(".")
        target = data
        for p in parents:
            target = target[p]
        target[last] = copy.deepcopy(value)
    return _edit(change)


def _raw(text: str | bytes) -> Build:
    def build(folder: Path) -> Path:
        valid_session_data(folder)
        path = folder / "s.layerlab.json"
        path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
        return path
    return build


def _text_edit(change: Callable[[str], str]) -> Build:
    """Edit the JSON text itself (for what json.dumps cannot write, such as a lone surrogate escape)."""
    def build(folder: Path) -> Path:
        path = folder / "s.layerlab.json"
        path.write_text(change(json.dumps(valid_session_data(folder))), encoding="utf-8")
        return path
    return build


def _hostile_model(folder: Path) -> Path:
    """A well-formed session whose model is broken (stride 0) and named with markup."""
    data = valid_session_data(folder)
    onnx.save(base_model({"strides": [0, 0], "kernel_shape": [3, 3]}, node_name="<img src=x onerror=alert(1)>"),
              folder / "model.onnx")
    data["model"]["sha256"] = None
    path = folder / "s.layerlab.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


_DEEP = "[" * 10_000 + "]" * 10_000

SESSION_CASES: list[tuple[str, Build]] = [
    ("empty file", _raw("")),
    ("not JSON", _raw("layerlab session, honest")),
    ("truncated JSON", _text_edit(lambda t: t[: len(t) // 2])),
    ("JSON list", _raw("[1, 2, 3]")),
    ("invalid UTF-8", _raw(b'{"layerlab_session": 1, "notes": "\xff\xfe"}')),
    ("nested 10,000 deep", _raw('{"layerlab_session": 1, "model": {"path": "model.onnx"}, "notes": ' + _DEEP + "}")),
    ("nested 100 deep (parses)", _set("profile", json.loads("[" * 100 + "]" * 100))),
    ("no version", _edit(lambda d: d.pop("layerlab_session"))),
    ("version as text", _set("layerlab_session", "1")),
    ("version 99", _set("layerlab_session", 99)),
    ("version -1", _set("layerlab_session", -1)),
    ("model missing", _edit(lambda d: d.pop("model"))),
    ("model path not text", _set("model.path", 42)),
    ("model path traversal", _set("model.path", "../../../../etc/passwd")),
    ("model path absolute", _set("model.path", "/etc/hostname")),
    ("model path is a folder", _set("model.path", ".")),
    ("model changed (sha256)", _set("model.sha256", "0" * 64)),
    ("dim beyond int64", _set("input_shapes", {"x": [1, 3, 8, 2**70]})),
    ("dim negative", _set("input_shapes", {"x": [1, 3, -8, 8]})),
    ("dim as text", _set("input_shapes", {"x": "1x3x8x8"})),
    ("dim 1.5", _set("input_shapes", {"x": [1, 3, 8, 1.5]})),
    ("shapes a list", _set("input_shapes", [[1, 3, 8, 8]])),
    ("unknown input name", _set("input_shapes", {"<script>": [1]})),
    ("lone surrogate in notes", _text_edit(lambda t: t.replace('"notes": ""', '"notes": "ok \\ud800 then"'))),
    ("lone surrogate in a key", _text_edit(lambda t: t.replace('"notes": ""', '"notes": "", "\\udfff": 1'))),
    ("plan not an object", _set("plan", "int8 everything")),
    ("plan bad precision", _set("plan", {"default": {"precision": "int9"}, "layers": {}})),
    ("plan unknown layer", _set("plan", {"default": {"precision": "fp32"}, "layers": {"</td><script>": {"precision": "int8"}}})),
    ("profile a string", _set("profile", "fast")),
    ("trials malformed", _set("trials", [{"plan": 3}])),
    ("baseline not an object", _set("baseline", [1, 2])),
    ("broken model behind a valid session", _hostile_model),
]


def write_session_case(index: int, root: Path) -> Path:
    """Write case ``index`` into its own folder under ``root``; returns the session path."""
    folder = root / f"s{index:03d}"
    folder.mkdir(parents=True, exist_ok=True)
    return SESSION_CASES[index][1](folder)

"""`layerlab gui` and plain `layerlab`: the window opens on a model; --screenshot saves a PNG and exits."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from PIL import Image

import gui.app
from engine.cli.main import main


def test_screenshot_of_the_digits_window(tmp_path: Path, digits_model: Path) -> None:
    out = tmp_path / "digits.png"
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path), QT_QPA_PLATFORM="offscreen")  # no real QSettings
    result = subprocess.run(
        [sys.executable, "-m", "engine.cli.main", "gui", str(digits_model), "--input", "input=1x1x8x8", "--screenshot",
         str(out)], capture_output=True, text=True, timeout=180, env=env, cwd=Path(__file__).parents[2],
    )
    assert result.returncode == 0, result.stderr
    image = Image.open(out)
    assert image.size[0] >= 800 and image.size[1] >= 600
    assert len(image.convert("RGB").getcolors(maxcolors=1 << 20)) > 50  # a drawn window, not a blank rectangle


def test_a_bad_model_in_screenshot_mode_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"junk")
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path), QT_QPA_PLATFORM="offscreen")
    result = subprocess.run(
        [sys.executable, "-m", "engine.cli.main", "gui", str(bad), "--screenshot", str(tmp_path / "x.png")],
        capture_output=True, text=True, timeout=180, env=env, cwd=Path(__file__).parents[2],
    )
    assert result.returncode == 2 and "bad.onnx: not an ONNX model" in result.stderr


def test_plain_layerlab_opens_the_window(monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(gui.app, "run_app", lambda *args: calls.append(args) or 0)
    assert main([]) == 0
    assert calls == [(None, {}, None, None)]

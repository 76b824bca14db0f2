"""Fixtures shared by the engine and GUI tests: the two examples."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# the catalogue (here and in the worker processes, which inherit this) registers the test-only jobs
os.environ["LAYERLAB_JOB_PLUGINS"] = "tests.engine.jobs.toy_jobs"


@pytest.fixture(scope="session")
def digits_model() -> Path:
    """The embedded digits CNN."""
    from engine.io.examples import get_example

    example = get_example("digits")
    assert example.model is not None and example.model.exists()
    return example.model


@pytest.fixture(scope="session")
def digits_eval() -> Path:
    """The digits held-out test set (.npz with input:input and labels)."""
    from engine.io.examples import get_example

    example = get_example("digits")
    assert example.eval is not None
    return example.eval


@pytest.fixture(scope="session")
def ppocr_model() -> Path:
    """The real PP-OCRv4 recognizer, fetched once into the user's cache; skips cleanly when it cannot be fetched."""
    from engine.errors import LayerLabError
    from engine.io.examples import fetch_example

    try:
        example = fetch_example("ppocr-rec")
    except LayerLabError as exc:
        pytest.skip(f"cannot fetch the ppocr-rec example: {exc}")
    assert example.model is not None
    return example.model

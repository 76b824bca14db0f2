"""Fixtures the optimizer's tests share: the digits example as a graph and as an evaluator."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.evaluate.evaluator import Evaluator, load_evaluator
from engine.ir.graph import ModelGraph, load_model


@pytest.fixture(scope="module")
def digits(digits_model: Path) -> ModelGraph:
    return load_model(digits_model, {"input": (1, 1, 8, 8)})


@pytest.fixture(scope="module")
def evaluator(digits_eval: Path) -> Evaluator:
    return load_evaluator(digits_eval)

"""Sweep executors: local worker processes and Ray actors give the drops of the in-process sweep; cancel keeps what was done."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from engine.errors import SettingsError
from engine.evaluate.evaluator import load_evaluator
from engine.evaluate.executors import Executor, parse_executor
from engine.evaluate.sensitivity import SweepSettings, sweep
from engine.ir.graph import load_model
from engine.progress import Cancelled, run

INT8 = SweepSettings(routines=("int8", "int8_dynamic"), threads=1)


@pytest.fixture(scope="module")
def digits(digits_model: Path):
    return load_model(digits_model, {"input": (1, 1, 8, 8)})


@pytest.fixture(scope="module")
def reference(digits, digits_eval: Path):
    return sweep(digits, load_evaluator(digits_eval), INT8)


def test_parse_executor() -> None:
    assert repr(parse_executor(None)) == "local:1" and repr(parse_executor("local:3")) == "local:3"
    assert repr(parse_executor("ray")) == "ray=local" and parse_executor("ray=auto").address == "auto"
    assert parse_executor("ray:2").workers == 2
    for bad in ("local:0", "local:x", "dask", "ray:0"):
        with pytest.raises(SettingsError, match="--executor"):
            parse_executor(bad)


def test_two_local_workers_give_identical_drops(digits, digits_eval: Path, reference) -> None:
    got = run(Executor("local", 2).sweep_job(digits, load_evaluator(digits_eval), INT8))
    assert got.complete and got.baseline == reference.baseline
    assert list(got.layers) == list(reference.layers)  # the model's layer order, whatever the split
    assert {n: ls.drops for n, ls in got.layers.items()} == {n: ls.drops for n, ls in reference.layers.items()}
    assert {n: ls.sqnr_db for n, ls in got.layers.items()} == {n: ls.sqnr_db for n, ls in reference.layers.items()}


def test_cancel_keeps_the_layers_done(digits, digits_eval: Path, reference) -> None:
    job = Executor("local", 2).sweep_job(digits, load_evaluator(digits_eval), INT8)
    seen = [0]

    def stop() -> bool:  # cancel once some layer finished in some worker
        return seen[0] > 0

    def progress(p) -> None:
        seen[0] += " done" in p.message and not p.message.startswith("0/")

    with pytest.raises(Cancelled) as exc:
        run(job, progress, stop)
    partial = exc.value.partial
    assert partial is not None and not partial.complete
    assert 0 < len(partial.layers) < len(reference.layers) or len(partial.layers) == len(reference.layers)
    for name, ls in partial.layers.items():
        assert ls.drops == reference.layers[name].drops


@pytest.mark.slow
def test_ray_sweep_gives_identical_drops(digits, digits_eval: Path, reference) -> None:
    if importlib.util.find_spec("ray") is None:
        pytest.skip("ray is not installed (pip install 'layerlab[distributed]')")
    from engine.evaluate import ray_executor

    try:
        got = run(Executor("ray", 2).sweep_job(digits, load_evaluator(digits_eval), INT8))
    finally:
        ray_executor.shutdown()
    assert got.complete and got.baseline == reference.baseline and list(got.layers) == list(reference.layers)
    assert {n: ls.drops for n, ls in got.layers.items()} == {n: ls.drops for n, ls in reference.layers.items()}

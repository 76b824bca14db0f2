"""Bench with and without the int8 methods in one interleaved run (``compare_methods``), by value with fixed times."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

import engine.optimize.bench as bench
import engine.optimize.tune as tune
from engine.errors import SettingsError
from engine.evaluate.evaluator import evaluate, load_evaluator
from engine.ir.graph import load_model
from engine.measure.profiler import Stats
from engine.passes.precision import quantize_whole_model
from engine.progress import run


def test_compare_methods_times_both_routes_in_one_run(digits_model: Path, digits_eval: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    graph = load_model(digits_model, {"input": (1, 1, 8, 8)})
    evaluator = load_evaluator(digits_eval)
    int8 = quantize_whole_model(graph.model)
    asked: list[tuple[tuple[str, ...], tuple[str, ...]]] = []

    def fake_tune(graph_, evaluator_, options):
        asked.append((tuple(options.calibration), tuple(options.int8_methods)))
        # with the methods: the whole model in int8; without: fp32 (the two routes differ in model and metric)
        with_methods = bool(options.int8_methods)
        routines = {n.name: ("int8" if with_methods else "fp32") for n in graph.layers}
        return SimpleNamespace(model=int8 if with_methods else graph.model, ms_predicted=2.0 if with_methods else 4.0,
                               layer_routines=lambda: routines, plan=SimpleNamespace(ops="int8" if with_methods else "fp32"),
                               profile=SimpleNamespace(end_to_end=Stats(4.0, 4.0, 4.0)))
        yield  # noqa: unreachable

    timed: list[list[str]] = []

    def fake_latency(models, feeds, threads, repeats):
        timed.append(list(models))
        # fixed times by row: one interleaved call must carry every row
        ms = {"ort-fp32": 4.0, "ort-int8": 3.0, "layerlab": 2.0, bench.PLAIN: 3.2}
        return {name: Stats(ms[name], ms[name] * 0.9, ms[name] * 1.1) for name in models}
        yield  # noqa: unreachable

    monkeypatch.setattr(tune, "tune_job", fake_tune)
    monkeypatch.setattr(bench, "interleaved_latency", fake_latency)
    options = tune.TuneOptions(calibration=("minmax", "entropy"), int8_methods=("cle", "bias_correction"))
    result = run(bench.bench_job(graph, evaluator, repeats=5, threads=1, tune_options=options, compare_methods=True))
    assert asked == [(("minmax", "entropy"), ("cle", "bias_correction")), (("minmax",), ())]
    assert timed == [["ort-fp32", "ort-int8", "layerlab", bench.PLAIN]]
    rows = {r.name: r for r in result.rows}
    assert rows["layerlab"].speedup == pytest.approx(2.0) and rows[bench.PLAIN].speedup == pytest.approx(4.0 / 3.2)
    # each row is scored on its own route: the plain one is the fp32 model here, the methods' one our int8 model
    expected = evaluate(int8, evaluator, threads=1).metric
    assert expected < rows["ort-fp32"].metric  # the two routes score differently, so a swap would show
    assert rows[bench.PLAIN].metric == rows["ort-fp32"].metric and rows[bench.PLAIN].drop == 0.0
    assert rows["layerlab"].metric == pytest.approx(expected)
    assert rows["layerlab"].drop == pytest.approx(rows["ort-fp32"].metric - expected)
    data = result.to_json()
    assert data["plain"]["ops"] == "fp32" and data["plain"]["predicted_ms"] == 4.0
    assert set(data["plain"]["routines"].values()) == {"fp32"} and data["ops"] == "int8"


def test_compare_methods_needs_methods_and_a_tune(digits_model: Path, digits_eval: Path, capsys: pytest.CaptureFixture) -> None:
    graph = load_model(digits_model, {"input": (1, 1, 8, 8)})
    evaluator = load_evaluator(digits_eval)
    with pytest.raises(SettingsError, match="needs some"):
        run(bench.bench_job(graph, evaluator, repeats=3, threads=1, tune_options=tune.TuneOptions(), compare_methods=True))
    with pytest.raises(SettingsError, match="given route"):
        run(bench.bench_job(graph, evaluator, repeats=3, threads=1, route_model=graph.model, compare_methods=True,
                            tune_options=tune.TuneOptions(int8_methods=("cle",))))
    from engine.cli.main import main

    assert main(["bench", "digits", "--eval", str(digits_eval), "--compare-methods", "--session", "s.json"]) == 2
    assert "--compare-methods needs a tune" in capsys.readouterr().err

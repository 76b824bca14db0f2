"""Sensitivity sweep: drops equal direct evaluations, the cached sweep equals the naive one, cancel keeps results."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from engine.errors import SettingsError
from engine.evaluate.evaluator import Evaluator, evaluate, load_evaluator
from engine.ir.graph import ModelGraph, load_model, upgrade_opset
from engine.progress import Cancelled, run
from engine.passes.layer_variants import VariantBuilder
from engine.evaluate.sensitivity import LayerSensitivity, Sensitivity, SweepSettings, _named, sensitivity_job, sweep
from engine.evaluate.subgraph import ActivationCache, cut_candidates, diff_suffix

LAYERS = ("/conv1/Conv", "/res/conv_a/Conv", "/fc1/Gemm")  # first layer, residual fork, a Gemm


@pytest.fixture(scope="module")
def digits(digits_model: Path) -> ModelGraph:
    return load_model(digits_model)


def _fidelity(digits_eval: Path, tmp_path_factory: pytest.TempPathFactory, count: int = 120) -> Evaluator:
    """Cosine fidelity on the digits images: every layer has a non-zero drop, in fine units."""
    path = tmp_path_factory.mktemp("fid") / "digits_unlabelled.npz"
    np.savez(path, **{"input:input": np.load(digits_eval)["input:input"][:count]})
    return load_evaluator(path, fidelity="cosine")


def test_drops_match_direct_evaluation(digits: ModelGraph, digits_eval: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    evaluator = _fidelity(digits_eval, tmp_path_factory)
    result = sweep(digits, evaluator, SweepSettings(routines=("int8", "int8_dynamic", "fp16"), layers=LAYERS))
    assert result.complete and list(result.layers) == list(LAYERS)
    assert set(result.layers["/fc1/Gemm"].drops) == {"int8", "int8_dynamic", "fp16"}
    assert set(result.layers["/conv1/Conv"].drops) == {"int8", "fp16"}  # no dynamic int8 for Conv
    base = _named(upgrade_opset(digits.model, 13))
    baseline = evaluate(base, evaluator, optimization="extended").metric
    assert result.baseline == pytest.approx(baseline, abs=1e-12)
    with VariantBuilder(base, evaluator.calibration()) as builder:
        for name, measured in result.layers.items():
            for routine, drop in measured.drops.items():
                direct = evaluate(builder.build([name], routine), evaluator, optimization="extended").metric
                assert drop == pytest.approx(baseline - direct, abs=1e-12), (name, routine)
                assert drop > 0, (name, routine)  # cosine always loses a little
    # int8 hurts more than fp16, and the SQNR says so too.
    for measured in result.layers.values():
        assert measured.drops["int8"] > measured.drops["fp16"]
        assert 10 < measured.sqnr_db["int8"] < measured.sqnr_db["fp16"]


def test_drops_match_direct_evaluation_with_labels(digits: ModelGraph, digits_eval: Path) -> None:
    evaluator = load_evaluator(digits_eval)
    result = sweep(digits, evaluator, SweepSettings(routines=("int8",)))
    assert len(result.layers) == len(digits.layers)
    base = _named(upgrade_opset(digits.model, 13))
    with VariantBuilder(base, evaluator.calibration()) as builder:
        for name in ("/conv2/Conv", "/fc2/Gemm"):
            direct = evaluate(builder.build([name], "int8"), evaluator, optimization="extended").metric
            assert result.layers[name].drops["int8"] == pytest.approx(result.baseline - direct, abs=1e-12)


def test_cached_sweep_equals_naive(digits: ModelGraph, digits_eval: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    evaluator = _fidelity(digits_eval, tmp_path_factory, 80)
    cached = sweep(digits, evaluator, SweepSettings())
    naive = sweep(digits, evaluator, SweepSettings(cached=False))
    assert cached.to_dict() == naive.to_dict()  # bit for bit, SQNR included


def test_a_cache_past_its_limit_falls_back_to_whole_model_runs(digits: ModelGraph, digits_eval: Path, tmp_path_factory: pytest.TempPathFactory,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    evaluator = _fidelity(digits_eval, tmp_path_factory, 40)
    base = _named(upgrade_opset(digits.model, 13))
    feeds = [inputs for inputs, _ in evaluator.samples()]
    one = run(ActivationCache.build(base, cut_candidates(base, "/conv2/Conv"), feeds[:1], optimization="extended"))
    assert one is not None and one.nbytes > 0
    n = len(feeds)  # 40 samples, a quarter of them split off to calibrate
    assert n == 30
    fits = run(ActivationCache.build(base, cut_candidates(base, "/conv2/Conv"), feeds, optimization="extended", max_bytes=one.nbytes * n))
    assert fits is not None and len(fits) == n and fits.nbytes == one.nbytes * n
    assert run(ActivationCache.build(base, cut_candidates(base, "/conv2/Conv"), feeds, optimization="extended", max_bytes=one.nbytes * (n - 1))) is None
    settings = SweepSettings(routines=("int8",), layers=LAYERS)
    with caplog.at_level("WARNING", logger="engine.evaluate.sensitivity"):
        limited = sweep(digits, evaluator, replace(settings, cache_limit=1))
    assert "would not fit" in caplog.text
    assert limited.to_dict() == sweep(digits, evaluator, replace(settings, cached=False)).to_dict()


def test_variants_are_cut_where_expected(digits: ModelGraph) -> None:
    base = _named(upgrade_opset(digits.model, 13))
    calibration = [{"input": np.random.default_rng(0).random((1, 1, 8, 8), dtype=np.float32)}]
    with VariantBuilder(base, calibration) as builder:
        suffix = diff_suffix(base, builder.build(["/fc1/Gemm"], "int8"))
        assert suffix is not None and suffix.inputs == ["/flatten/Flatten_output_0"]
        assert set(suffix.inputs) <= cut_candidates(base, "/fc1/Gemm")
        ops = sorted(n.op_type for n in suffix.model.graph.node)
        assert ops == sorted(["QuantizeLinear", "DequantizeLinear"] * 2 + ["DequantizeLinear"] * 2 + ["Gemm", "Relu", "Gemm"])
        # The residual fork: int8 on conv_a also quantizes the skip input of the Add.
        fork = diff_suffix(base, builder.build(["/res/conv_a/Conv"], "int8"))
        assert fork is not None and fork.inputs == ["/relu_1/Relu_output_0"]
        assert "/res/Add" in {n.name for n in fork.model.graph.node}
        assert diff_suffix(base, base).nodes == 0


def test_cancelled_sweep_keeps_what_it_measured(digits: ModelGraph, digits_eval: Path) -> None:
    evaluator = load_evaluator(digits_eval)
    settings = SweepSettings(routines=("int8", "fp16"))
    full = sweep(digits, evaluator, settings)
    seen = []

    def stop() -> bool:
        return sum(p.message.endswith(" done") for p in seen) >= 3

    with pytest.raises(Cancelled) as caught:
        run(sensitivity_job(digits, evaluator, settings), seen.append, stop)
    partial = caught.value.partial
    assert isinstance(partial, Sensitivity) and not partial.complete
    assert list(partial.layers) == [n.name for n in digits.layers[:3]]
    for name, measured in partial.layers.items():
        assert measured == full.layers[name]


def test_recover_and_json_round_trip(digits: ModelGraph, digits_eval: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    evaluator = _fidelity(digits_eval, tmp_path_factory, 60)
    result = sweep(digits, evaluator, SweepSettings(routines=("int8",), layers=("/conv2/Conv",), recover=True))
    assert "int8" in result.whole_model and result.whole_model["int8"] < result.baseline
    assert "int8" in result.layers["/conv2/Conv"].recovered
    again = Sensitivity.from_json(result.to_json())
    assert again == result and again.ranking("int8") == ["/conv2/Conv"]
    infinite = Sensitivity(1.0, "m", {"a": LayerSensitivity("a", {"fp16": 0.0}, {"fp16": math.inf})}, True)
    assert Sensitivity.from_json(infinite.to_json()) == infinite  # infinite SQNR is written as null
    with pytest.raises(SettingsError, match="baseline"):
        Sensitivity.from_json('{"layers": []}', "s.json")


def test_bad_settings(digits: ModelGraph, digits_eval: Path) -> None:
    evaluator = load_evaluator(digits_eval)
    with pytest.raises(SettingsError, match="int4"):
        sweep(digits, evaluator, SweepSettings(routines=("int4",)))
    with pytest.raises(SettingsError, match="no layer named 'nope'"):
        sweep(digits, evaluator, SweepSettings(layers=("nope",)))


def test_cli_sensitivity_json(digits_model: Path, digits_eval: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from engine.cli.main import main

    code = main(["sensitivity", str(digits_model), "--eval", str(digits_eval), "--routines", "int8", "--layers", "/fc2/Gemm", "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["baseline"] > 0.95 and out["layers"][0]["name"] == "/fc2/Gemm"
    assert set(out["layers"][0]["drops"]) == {"int8"} and "int8" in out["layers"][0]["sqnr_db"]


@pytest.mark.slow
def test_ppocr_cached_equals_naive(ppocr_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAYERLAB_MODEL", str(ppocr_model))
    monkeypatch.setenv("LAYERLAB_PPOCR_SAMPLES", "4")
    evaluator_path = Path(__file__).resolve().parents[3] / "resources" / "examples" / "ppocr_rec" / "evaluator.py"
    graph = load_model(ppocr_model)
    layers = tuple(graph.layers[i].name for i in (0, 20, 40))  # backbone start, middle, the SVTR neck
    results = []
    for cached in (True, False):
        evaluator = load_evaluator(evaluator_path)
        results.append(sweep(graph, evaluator, SweepSettings(routines=("int8", "fp16"), layers=layers, cached=cached)))
    assert results[0].to_dict() == results[1].to_dict()
    assert all(math.isfinite(ls.sqnr_db["int8"]) for ls in results[0].layers.values())


def test_each_layer_keeps_the_calibration_with_the_smallest_drop(digits: ModelGraph, digits_eval: Path,
                                                                tmp_path_factory: pytest.TempPathFactory) -> None:
    evaluator = _fidelity(digits_eval, tmp_path_factory, 60)
    methods = ("minmax", "percentile99.9", "entropy")
    both = sweep(digits, evaluator, SweepSettings(routines=("int8",), layers=LAYERS, calibration=methods))
    for method in methods:  # each method's drop is the one a sweep of that method alone measures
        alone = sweep(digits, evaluator, SweepSettings(routines=("int8",), layers=LAYERS, calibration=(method,)))
        for name in LAYERS:
            assert both.layers[name].method_drops[method] == pytest.approx(alone.layers[name].drops["int8"], abs=1e-12)
    chosen = set()
    for name in LAYERS:
        measured = both.layers[name]
        best = min(methods, key=lambda m: (measured.method_drops[m], methods.index(m)))
        assert measured.calibration == best and measured.drops["int8"] == measured.method_drops[best]
        chosen.add(best)
    distinct = {round(both.layers[n].method_drops[m], 9) for n in LAYERS for m in methods}
    assert len(distinct) > len(LAYERS)  # the methods give distinct drops
    again = Sensitivity.from_json(both.to_json())
    assert again.layers["/fc1/Gemm"].method_drops == both.layers["/fc1/Gemm"].method_drops
    assert again.layers["/fc1/Gemm"].calibration == both.layers["/fc1/Gemm"].calibration
    with pytest.raises(SettingsError, match="calibration 'kl'"):
        sweep(digits, evaluator, SweepSettings(calibration=("kl",)))

"""Bench: three rows side by side, the JSON schema, sessions as the route, CLI errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.measure.interleave import interleaved_latency
from engine.optimize.bench import bench_job
from engine.evaluate.evaluator import load_evaluator
from engine.ir.graph import load_model
from engine.progress import run
from engine.measure.variants import random_feeds
from engine.passes.precision import quantize_whole_model


@pytest.fixture(scope="module")
def digits(digits_model: Path):
    return load_model(digits_model, {"input": (1, 1, 8, 8)})


def test_interleaved_latency_times_every_model(digits) -> None:
    stats = run(interleaved_latency({"a": digits.model, "b": quantize_whole_model(digits.model)},
                                    random_feeds(digits), threads=1, repeats=5, warmup=1))
    assert set(stats) == {"a", "b"} and all(0 < s.p10 <= s.median <= s.p90 for s in stats.values())


def test_bench_rows_and_json_schema(digits, digits_eval: Path) -> None:
    evaluator = load_evaluator(digits_eval)
    result = run(bench_job(digits, evaluator, repeats=5, threads=1, route_model=digits.model, predicted_ms=0.1,
                           routines={n.name: "fp32" for n in digits.layers}))
    data = json.loads(json.dumps(result.to_json()))
    assert [r["name"] for r in data["rows"]] == ["ort-fp32", "ort-int8", "layerlab"]
    for row in data["rows"]:
        assert {"name", "ms", "p10", "p90", "speedup", "metric", "drop", "bytes"} <= set(row)
        assert row["bytes"] > 0 and 0 <= row["metric"] <= 1
    assert data["rows"][0]["speedup"] == 1.0 and data["rows"][0]["drop"] == 0.0
    assert data["rows"][1]["bytes"] < data["rows"][0]["bytes"] / 2  # int8 weights
    assert data["rows"][2]["metric"] == data["rows"][0]["metric"]  # same model, same metric
    assert data["ops"] == "fp32"
    assert data["predicted_ms"] == 0.1


def test_cli_bench_from_a_session_prints_json(digits, digits_model: Path, digits_eval: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture) -> None:
    from engine.cli.main import main
    from engine.optimize.dprs import Route
    from engine.io.session_file import save_session
    from engine.optimize.tune import route_plan
    from engine.model.session import Session

    session = Session()
    session.set_model(digits_model, digits, {"input": (1, 1, 8, 8)})
    session.set_plan(route_plan(digits, {"/conv2/Conv": "int8"}))
    session.set_route(Route({n.name: "fp32" for n in digits.nodes}, 0.05, 0.0, 1, 0.0))
    save_session(session, tmp_path / "s.json")
    assert main(["bench", "digits", "--eval", str(digits_eval), "--session", str(tmp_path / "s.json"),
                 "--repeats", "3", "--threads", "1", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["predicted_ms"] == 0.05 and len(data["rows"]) == 3
    assert data["routines"]["/conv2/Conv"] == "int8" and data["routines"]["/conv1/Conv"] == "fp32"


def test_cli_bench_rejects_bad_input(tmp_path: Path, digits_eval: Path, capsys: pytest.CaptureFixture) -> None:
    from engine.cli.main import main

    assert main(["bench", "digits", "--eval", str(digits_eval), "--repeats", "1"]) == 2
    assert main(["bench", "digits", "--eval", str(tmp_path / "none.npz")]) == 2
    (tmp_path / "bad.json").write_text("{not json")
    assert main(["bench", "digits", "--eval", str(digits_eval), "--session", str(tmp_path / "bad.json")]) == 2
    err = capsys.readouterr().err
    assert "--repeats" in err and "none.npz" in err and "bad.json" in err


def test_interleaved_latency_reports_each_models_fastest_session(digits, monkeypatch) -> None:
    """Thread placement is fixed per session: a model's figure is its best session's, not a mix."""
    import engine.measure.interleave
    import engine.measure.timing

    made: list[str] = []
    real = engine.measure.timing.make_session

    def make_session(model, threads, label):
        made.append(label)
        session = real(model, threads, label)
        session.slow = 5.0 if made.count(label) == 1 else 1.0  # only each model's first session lands badly
        return session

    def fake_time_runs(session, feeds, count, label):
        if False:
            yield
        return [session.slow] * count

    monkeypatch.setattr(engine.measure.timing, "make_session", make_session)
    monkeypatch.setattr(engine.measure.timing, "time_runs", fake_time_runs)
    stats = run(interleaved_latency({"a": digits.model, "b": digits.model}, {}, threads=1, repeats=8, warmup=1, sessions=3))
    assert made.count("a") == made.count("b") == 3
    assert stats["a"].median == stats["b"].median == 1.0


def test_interleaved_latency_drops_the_settling_runs_of_each_block(digits, monkeypatch) -> None:
    """Runs right after another session are slowed by its spinning threads: they must not count."""
    import engine.measure.interleave
    import engine.measure.timing

    calls: list[tuple[str, int]] = []

    def fake_time_runs(session, feeds, count, label):
        calls.append((label, count))
        if False:
            yield
        return [100.0] * min(count, engine.measure.interleave.SETTLE) + [1.0] * max(count - engine.measure.interleave.SETTLE, 0)

    monkeypatch.setattr(engine.measure.timing, "time_runs", fake_time_runs)
    stats = run(interleaved_latency({"a": digits.model, "b": digits.model}, {}, threads=1, repeats=13, warmup=1,
                                    sessions=1))
    assert all(s.median == s.p90 == 1.0 for s in stats.values())
    timed = calls[2:]  # after one warm-up call per model
    assert [label for label, _ in timed[:4]] == ["a", "b", "a", "b"]  # blocks in turn
    counted = engine.measure.interleave.BLOCK - engine.measure.interleave.SETTLE
    assert sum(n - engine.measure.interleave.SETTLE for label, n in timed if label == "a") == 13
    assert max(n for _, n in timed) == engine.measure.interleave.SETTLE + counted

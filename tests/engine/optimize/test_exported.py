"""Exported equals measured: `tune -o`, Export and `apply` write the bytes tune measured, and
`layerlab evaluate` of them gives the metric tune reported. One calibration for all of them."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest

from engine.cli.main import main
from engine.measure.profiler import ProfileOptions, Stats
from engine.optimize import tune

SHAPES = {"input": (1, 1, 8, 8)}


def _int8_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    """Timing replaced by a rule (int8 variants take half the time): the test is about bytes and metrics,
    and on a 22 us model the real clock may keep fp32, which would make it pass without exporting int8."""

    def ms(model: onnx.ModelProto) -> Stats:
        q = any(n.op_type == "QuantizeLinear" for n in model.graph.node)
        return Stats(0.5, 0.45, 0.55) if q else Stats(1.0, 0.9, 1.1)

    def compare(base, candidates, feeds, options):
        return ms(base), {k: ms(m) for k, m in candidates.items()}
        yield  # noqa: unreachable - a generator

    monkeypatch.setattr(tune, "measure_latency", lambda model, *a, **k: ms(model))
    monkeypatch.setattr(tune, "_compare_interleaved", compare)
    fast = ProfileOptions(warmup=1, repeats=3, profile_runs=2, use_cache=False, routines=("fp32", "int8", "int8_dynamic"))
    real = tune.TuneOptions
    monkeypatch.setattr(tune, "TuneOptions", lambda **kw: real(**{**kw, "repeats": 3, "profile": fast}))


def test_tune_output_export_and_apply_write_the_measured_bytes_and_metric(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, digits_model: Path, digits_eval: Path, tmp_path: Path
) -> None:
    from engine.evaluate.evaluator import load_evaluator
    from engine.io.session_file import load_session
    from engine.jobs.catalogue import export_plan_job
    from engine.progress import run
    from engine.report.export import export_model

    _int8_wins(monkeypatch)
    out, session_path = tmp_path / "tuned.onnx", tmp_path / "s.json"
    assert main(["tune", "digits", "--eval", str(digits_eval), "--max-drop", "0.05", "-o", str(out),
                 "--session", str(session_path), "--json"]) == 0
    reported = json.loads(capsys.readouterr().out)
    assert "int8" in reported["route"]["routines"].values()  # an int8 variant was chosen and written
    assert "split off" in reported["calibration"] and not reported["calibration_random"]
    written = out.read_bytes()

    assert main(["evaluate", str(out), "--eval", str(digits_eval), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["metric"] == reported["route"]["metric"]

    session = load_session(session_path)
    evaluator = load_evaluator(digits_eval)
    assert export_model(session, tmp_path / "export.onnx", evaluator).read_bytes() == written  # Export ▸ optimized model
    again = run(export_plan_job(str(digits_model), SHAPES, session.plan.to_dict(), {}, tmp_path / "job.onnx",
                                str(digits_eval)))
    assert Path(again).read_bytes() == written  # the window's export job
    (tmp_path / "plan.json").write_text(json.dumps(session.plan.to_dict()))
    assert main(["apply", "digits", str(tmp_path / "plan.json"), "-o", str(tmp_path / "apply.onnx"),
                 "--eval", str(digits_eval)]) == 0
    assert (tmp_path / "apply.onnx").read_bytes() == written
    # random calibration builds other bytes: the check above can fail
    assert export_model(session, tmp_path / "random.onnx").read_bytes() != written

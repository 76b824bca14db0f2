"""The hostile-input corpus: every malformed model, session and input file ends in exit 2 with one line.

Each command runs in-process through ``engine.cli.main.main`` (fast) with its file descriptors
captured, so ONNX Runtime's native log would show too; a few cases run as real ``layerlab``
processes and the window's open job runs in its worker process. For every run: exit code 2, exactly
one line on stderr naming the file, no traceback, under 60 s, and no file written anywhere but the
output path and the cache. Counts are in the README (Hostile input).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest

from engine.cli.main import main
from tests.engine.fuzz.models import MODEL_CASES, base_model, write_model_case
from tests.engine.fuzz.sessions import SESSION_CASES, valid_session_data, write_session_case

ROOT = Path(__file__).resolve().parents[3]
_LIMIT_S = 60.0


def _tree(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[tuple[str, Path]]]:
    root = tmp_path_factory.mktemp("corpus")
    models = [(MODEL_CASES[i][0], write_model_case(i, root / "models")) for i in range(len(MODEL_CASES))]
    sessions = [(SESSION_CASES[i][0], write_session_case(i, root / "sessions")) for i in range(len(SESSION_CASES))]
    return {"models": models, "sessions": sessions}


@pytest.fixture()
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh working folder and cache: the only places a run may write besides its output."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("LAYERLAB_CACHE", str(tmp_path / "cache"))
    return work


def _plan(folder: Path) -> Path:
    path = folder / "plan.json"
    path.write_text(json.dumps({"default": {"precision": "fp32"}, "layers": {}}))
    return path


def _npz(folder: Path) -> Path:
    path = folder / "eval.npz"
    np.savez(path, **{"input:x": np.zeros((2, 3, 8, 8), np.float32), "labels": np.zeros(2, np.int64)})
    return path


def _run(capfd: pytest.CaptureFixture[str], argv: list[str], named: str) -> str:
    """Run ``layerlab argv`` in-process; assert exit 2, one stderr line naming ``named``; return the line."""
    capfd.readouterr()
    start = time.perf_counter()
    code = main(argv)
    elapsed = time.perf_counter() - start
    out, err = capfd.readouterr()
    lines = err.splitlines()
    assert code == 2, f"{argv}: exit {code}, stdout {out[:200]!r}, stderr {err[:300]!r}"
    assert len(lines) == 1, f"{argv}: {len(lines)} lines on stderr: {err[:600]!r}"
    assert "Traceback" not in err and named in lines[0], (argv, lines[0][:300])
    assert elapsed < _LIMIT_S, f"{argv}: {elapsed:.1f} s"
    return lines[0]


def test_model_corpus_every_command(corpus, sandbox: Path, capfd) -> None:  # type: ignore[no-untyped-def]
    from engine.errors import LayerLabError
    from engine.jobs.catalogue import open_model

    runs = 0
    for name, path in corpus["models"]:
        folder = path.parent
        plan, data = _plan(sandbox), _npz(sandbox)
        before = _tree(folder)
        out = sandbox / "out.onnx"
        for argv in (
            ["inspect", str(path)],
            ["profile", str(path), "--repeats", "3", "--no-cache"],
            ["apply", str(path), str(plan), "-o", str(out)],
            ["evaluate", str(path), "--eval", str(data)],
        ):
            _run(capfd, argv, str(path))
            runs += 1
        with pytest.raises(LayerLabError) as info:  # the window's open job, as the worker runs it
            open_model(path)
        assert str(path) in str(info.value) and "\n" not in str(info.value), name
        runs += 1
        assert not out.exists(), f"{name}: apply wrote {out}"
        assert _tree(folder) == before, f"{name}: files appeared next to the model"
        assert _tree(sandbox) == {"plan.json", "eval.npz"}, f"{name}: files appeared in the working folder"
    assert runs == 5 * len(MODEL_CASES)


def test_session_corpus_report(corpus, sandbox: Path, capfd) -> None:  # type: ignore[no-untyped-def]
    for name, path in corpus["sessions"]:
        before = _tree(path.parent)
        for suffix in ("html", "pdf"):
            out = sandbox / f"report.{suffix}"
            line = _run(capfd, ["report", str(path), "-o", str(out)], str(path.parent))
            assert not out.exists(), f"{name}: {line}"
        assert _tree(path.parent) == before, name
        assert _tree(sandbox) == set(), name


def test_hostile_inputs_and_calibration_files(sandbox: Path, capfd) -> None:  # type: ignore[no-untyped-def]
    model = sandbox.parent / "model.onnx"
    onnx.save(base_model(), model)
    for shape in ("x=1x3x8x" + "9" * 25, "x=1x3x8x-8", "x=1x3x8x8.5", "x=", "x=1x3x8x0"):
        for command in ("inspect", "profile"):
            _run(capfd, [command, str(model), "--input", shape], shape)
    plan = sandbox.parent / "plan.json"
    plan.write_text(json.dumps({"default": {"precision": "int8"}, "layers": {}}))
    calib = sandbox.parent / "calib"
    calib.mkdir()
    np.savez(calib / "objects.npz", **{"input:x": np.array([{"a": 1}, None], dtype=object)})
    (calib / "not-a-zip.npz").write_bytes(b"PK\x03\x04 broken")
    np.save(calib / "pickled.npy", np.array([object()], dtype=object), allow_pickle=True)
    np.savez(calib / "strings.npz", **{"input:x": np.array(["a", "b"])})
    np.savez(calib / "empty.npz", **{"input:x": np.zeros((0, 3, 8, 8), np.float32)})
    np.savez(calib / "wrong-name.npz", **{"input:y": np.zeros((2, 3, 8, 8), np.float32)})
    for path in sorted(calib.iterdir()):
        out = sandbox.parent / "out.onnx"
        _run(capfd, ["apply", str(model), str(plan), "-o", str(out), "--calib", str(path)], str(path))
        assert not out.exists()
    assert _tree(sandbox) == set()


def test_untrusted_evaluator_in_a_session_never_runs(tmp_path: Path, sandbox: Path, capfd) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "s"
    folder.mkdir()
    data = valid_session_data(folder)
    marker = tmp_path / "ran"
    (tmp_path / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('x')\n")
    data["evaluator"] = {"path": "../evil.py", "sha256": None}
    session = folder / "s.layerlab.json"
    session.write_text(json.dumps(data))
    assert main(["report", str(session), "-o", str(sandbox / "r.html")]) == 0
    assert not marker.exists() and (sandbox / "r.html").is_file()


# A few cases as real processes: the command's own stderr, ORT's native log included, and a hang limit.
_SUBPROCESS = ["truncated to 50%", "stride 0", "opset 99", "external data path traversal", "hostile node name 1"]


@pytest.mark.parametrize("case", _SUBPROCESS)
def test_real_processes_print_one_line(case: str, tmp_path: Path) -> None:
    index = [n for n, _ in MODEL_CASES].index(case)
    path = write_model_case(index, tmp_path / "m")
    env = {**os.environ, "LAYERLAB_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "engine.cli", "profile", str(path), "--repeats", "3"],
                          capture_output=True, text=True, timeout=_LIMIT_S, env=env, cwd=tmp_path)
    assert proc.returncode == 2 and proc.stdout == ""
    assert len(proc.stderr.splitlines()) == 1 and str(path) in proc.stderr, proc.stderr[:500]


def test_window_open_job_reports_one_line(tmp_path: Path) -> None:
    from engine.jobs import catalogue
    from engine.jobs.worker import Worker

    index = [n for n, _ in MODEL_CASES].index("weight float64")
    path = write_model_case(index, tmp_path)
    worker = Worker()
    try:
        outcome = worker.wait(worker.submit(catalogue.OPEN_MODEL, {"path": str(path)}), timeout=_LIMIT_S)
    finally:
        worker.close()
    assert outcome is not None and outcome.status == "error", outcome
    assert str(path) in outcome.message and "\n" not in outcome.message and "tensor(double)" in outcome.message

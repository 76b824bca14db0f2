"""Session files: round trip without re-profiling, atomic save, autosave/recover, clear errors, evaluator trust."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import onnx
import pytest

from engine.io import session_file
from engine.optimize.dprs import Route
from engine.ir.graph import load_model
from engine.model.plan import Plan
from engine.model.session import CalibrationRecord, Measurement, Session, Trial
from engine.io.session_file import MalformedSessionError, ModelChangedError, ModelMovedError, NewerSchemaError, SessionError, UntrustedEvaluatorError, load_session, save_session, to_data
from engine.io.autosave import autosave, autosave_path, discard_autosave, find_autosave, recover
from engine.io.trust import trust_evaluator
from tests import builders

HOSTILE = ("<script>alert(1)</script>", '"&<>')
ROOT = Path(__file__).resolve().parents[3]
SHAPE_NOTES = ["x: the evaluator's samples vary (2 shapes: 1x3x16x16 x30, 1x3x16x24 x10); using the most frequent, "
               "1x3x16x16 (30 of 40)", "batch dim of x (batch) set to 1 (give --input or --dim to change it)"]


def make_session(folder: Path, hostile: bool = False, notes: str = "first try") -> Session:
    """A residual net with hand-made tables, shaped like Profile/Sensitivity JSON (typed when those modules load)."""
    model = builders.residual_net()
    if hostile:
        renames = {"stem": HOSTILE[0], "block0_a": HOSTILE[1]}
        for node in model.graph.node:
            node.name = renames.get(node.name, node.name)
    path = folder / "model.onnx"
    onnx.save(model, path)
    graph = load_model(path)
    s = Session()
    s.set_model(path, graph, {"x": (1, 3, 16, 16)}, SHAPE_NOTES)
    layers = [n.name for n in graph.layers]
    s.set_plan(Plan.from_dict({"default": {"precision": "fp32"}, "layers": {layers[1]: {"precision": "int8"}}}))
    s.set_profile(
        session_file._from_data("profile", {
            "end_to_end": {"median": 1.2, "p10": 1.1, "p90": 1.4},
            "coverage": 0.93,
            "layers": [
                {
                    "name": n.name,
                    "op": n.op_type,
                    "tunable": n.tunable,
                    "ms": 0.1 + 0.05 * i,
                    "routines": {"fp32": 0.1 + 0.05 * i, "int8": 0.04 + 0.01 * i} if n.tunable else {},
                    "unsupported": {},
                }
                for i, n in enumerate(graph.nodes)
            ],
            "adapts": [],
            "threads": 2,
            "ort_version": "1.32.0",
        }, "test")  # the typed Profile when engine.measure.profiler is there
    )
    drops = [{"name": k, "drops": {"int8": 0.002 * (i + 1), "fp16": 0.0}} for i, k in enumerate(layers)]
    s.set_sensitivity(session_file._from_data("sensitivity", {"baseline": 0.91, "complete": True, "layers": drops}, "test"))
    routines = {k: "int8" if i % 2 else "fp32" for i, k in enumerate(layers)}
    s.set_route(Route(routines=routines, latency_ms=0.6, drop=0.012, weight_bytes=9000, adapts_ms=0.02))
    s.set_baseline(Measurement(ms=1.2, ms_p10=1.1, ms_p90=1.4, metric=0.91, bytes=40000))
    s.set_current(Measurement(ms=0.65, ms_p10=0.6, ms_p90=0.7, metric=0.9, bytes=15000))
    for i in range(4):
        s.add_trial(Trial(plan={}, routines={}, predicted=Measurement(ms=1.1 - 0.1 * i, metric=0.91 - 0.004 * i), label=f"try {i}"))
    s.add_trial(Trial(plan=to_data(s.plan), routines=routines, predicted=Measurement(ms=0.6, metric=0.9),
                      measured=Measurement(ms=0.65, metric=0.9), label="tuned"))  # fmt: skip
    s.set_calibration(CalibrationRecord("8 samples split off from the evaluator's 40 (not scored)", False, 8,
                                        {"x": [[1, 3, 16, 16]]}))
    s.set_notes(notes)
    return s


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The trust list lives in the cache: never the user's own."""
    monkeypatch.setenv("LAYERLAB_CACHE", str(tmp_path / "cache"))


def _fields(s: Session) -> dict:
    names = ("plan", "profile", "sensitivity", "route", "baseline", "current", "calibration", "notes")
    out = {name: to_data(getattr(s, name)) for name in names}
    out["trials"] = [t.to_json() for t in s.trials]
    out["input_shapes"] = s.input_shapes
    out["shape_notes"] = s.shape_notes
    out["model_path"] = s.model_path.resolve()
    return out


def test_round_trip_restores_every_field_without_profiling(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.measure import profiler

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("loading a session must not profile")

    for name in ("profile", "profile_job", "measure_latency"):
        monkeypatch.setattr(profiler, name, refuse, raising=False)
    s = make_session(tmp_path)
    target = tmp_path / "s.layerlab.json"
    save_session(s, target)
    assert not s.dirty and s.path == target
    loaded = load_session(target)
    assert _fields(loaded) == _fields(s)
    assert isinstance(loaded.plan, Plan) and isinstance(loaded.route, Route) and loaded.route == s.route
    assert type(loaded.profile).__name__ == "Profile"  # the typed objects, from the cached tables
    assert type(loaded.sensitivity).__name__ == "Sensitivity"
    assert loaded.graph is not None and [n.name for n in loaded.graph.nodes] == [n.name for n in s.graph.nodes]
    assert not loaded.dirty and loaded.path == target


def test_file_is_versioned_json_with_relative_paths(tmp_path: Path) -> None:
    s = make_session(tmp_path)
    save_session(s, tmp_path / "s.layerlab.json")
    data = json.loads((tmp_path / "s.layerlab.json").read_text())
    assert data["layerlab_session"] == 1
    assert data["model"] == {"path": "model.onnx", "sha256": s.graph.sha256}
    assert data["input_shapes"] == {"x": [1, 3, 16, 16]} and data["shape_notes"] == SHAPE_NOTES
    assert data["route"]["measured"]["ms"] == 0.65
    assert data["machine"]["cores"] == os.cpu_count()
    for key in ("plan", "profile", "sensitivity", "trials", "baseline", "current", "notes", "saved_at", "evaluator"):
        assert key in data
    assert data["calibration"] == {"source": "8 samples split off from the evaluator's 40 (not scored)",
                                   "random": False, "count": 8, "shapes": {"x": [[1, 3, 16, 16]]}}


def test_a_session_saved_away_from_its_model_loads_the_model_path_normalized(tmp_path: Path) -> None:
    deep = tmp_path / "runs" / "shot"
    deep.mkdir(parents=True)
    s = make_session(tmp_path)
    s.evaluator_path = tmp_path / "eval.py"
    save_session(s, deep / "s.layerlab.json")
    assert json.loads((deep / "s.layerlab.json").read_text())["model"]["path"] == "../../model.onnx"
    loaded = load_session(deep / "s.layerlab.json")
    assert loaded.model_path == tmp_path / "model.onnx" and ".." not in loaded.model_path.parts
    assert loaded.graph.label == str(tmp_path / "model.onnx")  # what the window and messages show
    assert loaded.evaluator_path == tmp_path / "eval.py"


def test_moved_model_names_expected_path_and_can_be_located(tmp_path: Path) -> None:
    save_session(make_session(tmp_path), tmp_path / "s.layerlab.json")
    moved = tmp_path / "elsewhere.onnx"
    (tmp_path / "model.onnx").rename(moved)
    with pytest.raises(ModelMovedError) as info:
        load_session(tmp_path / "s.layerlab.json")
    assert info.value.expected_path == tmp_path / "model.onnx"
    assert load_session(tmp_path / "s.layerlab.json", model_path=moved).model_path == moved


def test_a_graph_already_loaded_from_the_same_model_is_reused(tmp_path: Path) -> None:
    save_session(make_session(tmp_path), tmp_path / "s.layerlab.json")
    same = load_model(tmp_path / "model.onnx", {"x": (1, 3, 16, 16)})
    reopened = load_session(tmp_path / "s.layerlab.json", loaded=same)
    assert reopened.graph is same and _fields(reopened) == _fields(load_session(tmp_path / "s.layerlab.json"))
    other_shapes = load_model(tmp_path / "model.onnx")  # the file's own dims, not the session's shapes
    fresh = load_session(tmp_path / "s.layerlab.json", loaded=other_shapes)
    assert fresh.graph is not other_shapes and fresh.graph.input_shapes == {"x": (1, 3, 16, 16)}
    onnx.save(builders.residual_net(seed=5), tmp_path / "model.onnx")  # the file changed under the loaded graph
    changed = load_session(tmp_path / "s.layerlab.json", loaded=same, accept_changed_model=True)
    assert changed.graph is not same and changed.graph.sha256 != same.sha256


def test_changed_model_is_refused_unless_accepted(tmp_path: Path) -> None:
    save_session(make_session(tmp_path), tmp_path / "s.layerlab.json")
    onnx.save(builders.residual_net(seed=5), tmp_path / "model.onnx")
    with pytest.raises(ModelChangedError, match="changed"):
        load_session(tmp_path / "s.layerlab.json")
    assert load_session(tmp_path / "s.layerlab.json", accept_changed_model=True).notes == "first try"


def test_newer_schema_and_malformed_files(tmp_path: Path) -> None:
    path = tmp_path / "s.layerlab.json"
    save_session(make_session(tmp_path), path)
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "layerlab_session": 2}))
    with pytest.raises(NewerSchemaError):
        load_session(path)
    path.write_text('{\n "layerlab_session": 1,\n "model": {"path": "model.onnx",}\n}')
    with pytest.raises(MalformedSessionError, match=r"s\.layerlab\.json: line 3") as info:
        load_session(path)
    assert info.value.line == 3
    path.write_text('{"plan": {}}')
    with pytest.raises(MalformedSessionError, match="not a LayerLab session"):
        load_session(path)
    for bad in ("split", {"random": True}, {"source": "s", "shapes": {"x": "big"}}):
        path.write_text(json.dumps({**data, "calibration": bad}))
        with pytest.raises(MalformedSessionError, match=r"s\.layerlab\.json: 'calibration' is malformed"):
            load_session(path)
    path.write_text(json.dumps({k: v for k, v in data.items() if k != "calibration"}))  # older files have none
    assert load_session(path).calibration is None
    for bad in ("batch 1", [1, 2]):
        path.write_text(json.dumps({**data, "shape_notes": bad}))
        with pytest.raises(MalformedSessionError, match=r"s\.layerlab\.json: 'shape_notes' must be a list of strings"):
            load_session(path)
    path.write_text(json.dumps({k: v for k, v in data.items() if k != "shape_notes"}))  # nor these
    assert load_session(path).shape_notes == []
    with pytest.raises(SessionError, match="no such session file"):
        load_session(tmp_path / "missing.json")


def test_failed_replace_keeps_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "s.layerlab.json"
    s = make_session(tmp_path)
    save_session(s, path)
    before = path.read_bytes()
    s.set_notes("second try")

    def crash(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(session_file.os, "replace", crash)
    with pytest.raises(SessionError, match="No space left"):
        save_session(s, path)
    assert path.read_bytes() == before and s.dirty
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


_SAVER = """
import sys
from pathlib import Path
from engine.ir.graph import load_model
from engine.model.session import Session
from engine.io.session_file import save_session
model, target = Path(sys.argv[1]), Path(sys.argv[2])
s = Session()
s.set_model(model, load_model(model))
for i in range(1000):
    s.set_notes(str(i % 10) * 20_000_000)
    save_session(s, target)
    print("saved", i, flush=True)
"""


def test_sigkill_during_save_leaves_a_whole_file(tmp_path: Path) -> None:
    """Kill the saver the moment its next save touches the folder (a new file, or the target changing size)."""
    folder = tmp_path / "work"
    folder.mkdir()
    make_session(folder)  # writes model.onnx
    target = folder / "big.layerlab.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", _SAVER, str(folder / "model.onnx"), str(target)],
        stdout=subprocess.PIPE, env=env, cwd=ROOT,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith(b"saved 0")
        full = target.stat().st_size
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # a save writing in place would be caught half-written here
            if len(os.listdir(folder)) > 2 or target.stat().st_size != full:
                break
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    data = json.loads(target.read_text())
    assert data["layerlab_session"] == 1 and len(data["notes"]) == 20_000_000


def test_evaluator_from_a_session_file_is_untrusted_until_the_user_agrees(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    evaluator = tmp_path / "evaluate.py"
    evaluator.write_text("print('hello')\n")
    s = make_session(tmp_path)
    s.set_evaluator(evaluator)
    assert s.require_trusted_evaluator() == evaluator
    save_session(s, tmp_path / "s.layerlab.json")
    assert load_session(tmp_path / "s.layerlab.json").evaluator_trusted  # the user's own choice was recorded

    monkeypatch.setenv("LAYERLAB_CACHE", str(tmp_path / "someone_else"))  # another user's machine
    other = load_session(tmp_path / "s.layerlab.json")
    assert other.evaluator_path == evaluator and not other.evaluator_trusted
    with pytest.raises(UntrustedEvaluatorError):
        other.require_trusted_evaluator()
    assert load_session(tmp_path / "s.layerlab.json", trust_evaluator=True).evaluator_trusted
    trust_evaluator(evaluator)
    assert load_session(tmp_path / "s.layerlab.json").evaluator_trusted
    evaluator.write_text("import os\n")  # changed after it was trusted: ask again
    assert not load_session(tmp_path / "s.layerlab.json").evaluator_trusted


def test_autosave_next_to_model_then_recover(tmp_path: Path) -> None:
    s = make_session(tmp_path, notes="unsaved work")
    model = tmp_path / "model.onnx"
    sidecar = autosave(s)
    assert sidecar == autosave_path(model) and s.dirty
    assert find_autosave(model) == sidecar
    back = recover(model)
    assert back.notes == "unsaved work" and back.dirty and back.path is None
    assert _fields(back) == _fields(s)
    save_session(back, tmp_path / "s.layerlab.json")
    assert not sidecar.exists() and find_autosave(model) is None


def test_autosave_of_a_saved_session(tmp_path: Path) -> None:
    path = tmp_path / "s.layerlab.json"
    s = make_session(tmp_path)
    save_session(s, path)
    assert find_autosave(path) is None
    s.set_notes("after saving")
    sidecar = autosave(s)
    assert sidecar == autosave_path(path) and find_autosave(path) == sidecar
    back = recover(path)
    assert back.notes == "after saving" and back.path == path and back.dirty
    discard_autosave(path)
    assert find_autosave(path) is None
    with pytest.raises(SessionError, match="no autosave"):
        recover(path)

"""The session file: JSON with a schema version, atomic save, autosave sidecars and the evaluator trust list.

Autosave and the trust list live in ``engine.io.autosave``, the errors in
``engine.io.errors``; every name is importable from here as well.

Schema (version 1; every key is written, absent values are ``null``)::

    {
      "layerlab_session": 1,
      "model": {"path": "digits.onnx", "sha256": "..."},     # path relative to the session file
      "input_shapes": {"x": [1, 3, 48, 320]},
      "shape_notes": ["x: 1x3x48x320 given with --input", ...],  # where the input shapes came from
      "evaluator": {"path": "eval.py", "sha256": "..."} | null,
      "plan": {...engine.model.plan.Plan...} | null,
      "profile": {...Profile.to_json()...} | null,           # cached: loading never re-profiles
      "sensitivity": {...Sensitivity.to_json()...} | null,
      "trials": [{"plan", "routines", "predicted", "measured", "label"}, ...],
      "route": {"routines", "latency_ms", "drop", ..., "measured": <copy of current>} | null,
      "baseline": {"ms", "ms_p10", "ms_p90", "metric", "bytes"} | null,
      "current": {...same...} | null,
      "calibration": {"source", "random", "count", "shapes"} | null,  # how int8 was calibrated
      "notes": "...",
      "machine": {"cpu", "cores", "system", "python", "onnxruntime"},  # where the profile was measured
      "saved_at": "2025-01-01T12:00:00+00:00"
    }

A session is data: nothing is pickled, and the evaluator a file names is *not* trusted on load
unless its path and current sha256 are in ``cache_dir()/trusted_evaluators.json`` (see
``trust_evaluator``). Saving writes a temporary file in the same directory, fsyncs it and renames
it over the target, so a crash mid-save leaves the previous file intact. Typed fields whose module
is not importable stay plain dicts; they are written back unchanged.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib
import json
import logging
import os
import platform
from pathlib import Path
from typing import Any

from engine.errors import LayerLabError
from engine.model.session import CalibrationRecord, Measurement, Session, Trial
from engine.io.files import atomic_write_text, autosave_path, sha256_file
from engine.io.trust import is_trusted, trust_evaluator
from engine.io.errors import (  # re-exported: callers import these from here
    MalformedSessionError,
    ModelChangedError,
    ModelMovedError,
    NewerSchemaError,
    SessionError,
    UntrustedEvaluatorError,
)

__all__ = [
    "SCHEMA_VERSION",
    "SESSION_SUFFIX",
    "SessionError",
    "ModelMovedError",
    "ModelChangedError",
    "NewerSchemaError",
    "MalformedSessionError",
    "UntrustedEvaluatorError",
    "save_session",
    "load_session",
    "session_to_dict",
    "machine_info",
    "to_data",
]

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
SESSION_SUFFIX = ".layerlab.json"
# Typed fields: module and class; a missing module (not written yet) leaves the field a dict.
_TYPES = {
    "plan": ("engine.model.plan", "Plan"),
    "profile": ("engine.measure.profiler", "Profile"),
    "sensitivity": ("engine.evaluate.sensitivity", "Sensitivity"),
    "route": ("engine.optimize.dprs", "Route"),
}


# --- JSON conversion -------------------------------------------------------------------------


def to_data(value: Any) -> Any:
    """A typed engine value as JSON-ready data: to_dict, else to_json (str or dict), else asdict, else itself."""
    if value is None:
        return None
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if hasattr(value, "to_json"):
        out = value.to_json()
        return json.loads(out) if isinstance(out, str) else out
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return value


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):  # numpy scalars and arrays
        return obj.tolist()
    if isinstance(obj, Path):
        return obj.as_posix()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise TypeError(f"session field holds a {type(obj).__name__}, which is not JSON data")


def _from_data(name: str, data: Any, label: str) -> Any:
    if data is None:
        return None
    module_name, class_name = _TYPES[name]
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError):
        return data
    try:
        if hasattr(cls, "from_dict"):
            return cls.from_dict(data)
        if hasattr(cls, "from_json"):
            try:
                return cls.from_json(data)
            except (TypeError, AttributeError):  # from_json wants text, not a dict
                return cls.from_json(json.dumps(data))
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
    except LayerLabError as exc:
        raise SessionError(f"{label}: field {name!r}: {exc}") from None
    except (TypeError, KeyError, ValueError, AttributeError) as exc:
        raise SessionError(f"{label}: field {name!r} is malformed ({exc})") from None


def _relative(path: Path, base: Path) -> str:
    try:
        return Path(os.path.relpath(path.resolve(), base.resolve())).as_posix()
    except ValueError:  # another drive on Windows: no relative path exists
        return path.resolve().as_posix()


def machine_info() -> dict[str, Any]:
    """This machine as the report shows it: CPU name, cores, OS, Python and ONNX Runtime versions."""
    from importlib import metadata

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        ort = metadata.version("onnxruntime")
    except metadata.PackageNotFoundError:
        ort = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "onnxruntime": ort,
    }


def session_to_dict(session: Session, path: str | os.PathLike[str]) -> dict[str, Any]:
    """The session as schema-1 data, with paths relative to the session file at ``path``."""
    base = Path(path).parent
    if session.model_path is None:
        raise SessionError(f"{path}: cannot save a session without a model")
    model_sha = session.graph.sha256 if session.graph is not None else sha256_file(session.model_path)
    evaluator = None
    if session.evaluator_path is not None:
        evaluator = {"path": _relative(session.evaluator_path, base), "sha256": None}
        if session.evaluator_path.is_file():
            evaluator["sha256"] = sha256_file(session.evaluator_path)
    route = to_data(session.route)
    if isinstance(route, dict):
        route = {**route, "measured": to_data(session.current)}
    return {
        "layerlab_session": SCHEMA_VERSION,
        "model": {"path": _relative(session.model_path, base), "sha256": model_sha},
        "input_shapes": {k: list(v) for k, v in session.input_shapes.items()},
        "shape_notes": list(session.shape_notes),
        "evaluator": evaluator,
        "plan": to_data(session.plan),
        "profile": to_data(session.profile),
        "sensitivity": to_data(session.sensitivity),
        "trials": [t.to_json() for t in session.trials],
        "route": route,
        "baseline": to_data(session.baseline),
        "current": to_data(session.current),
        "calibration": to_data(session.calibration),
        "notes": session.notes,
        "machine": session.machine or machine_info(),
        "saved_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def save_session(session: Session, path: str | os.PathLike[str], *, mark_saved: bool = True) -> Path:
    """Save atomically; with ``mark_saved`` the session is clean afterwards and stale autosaves are removed.

    A trusted evaluator (the user's own choice) is added to the trust list, so reopening one's
    own session does not ask again.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise SessionError(f"{path}: folder {path.parent} does not exist")
    text = json.dumps(session_to_dict(session, path), indent=1, default=_json_default) + "\n"
    try:
        atomic_write_text(path, text)
    except OSError as exc:
        raise SessionError(f"{path}: cannot save session ({exc.strerror or exc})") from None
    if session.evaluator_trusted and session.evaluator_path is not None and session.evaluator_path.is_file():
        trust_evaluator(session.evaluator_path)
    if mark_saved:
        stale = [autosave_path(path)] + ([autosave_path(session.model_path)] if session.model_path else [])
        if session.path is not None:
            stale.append(autosave_path(session.path))
        for sidecar in stale:
            sidecar.unlink(missing_ok=True)
        session.mark_saved(path)
    logger.info("saved session %s", path)
    return path


def _read(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SessionError(f"{path}: no such session file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SessionError(f"{path}: cannot read session ({getattr(exc, 'strerror', None) or exc})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MalformedSessionError(
            f"{path}: line {exc.lineno}, column {exc.colno}: not valid JSON ({exc.msg})", path, exc.lineno
        ) from None
    except RecursionError:
        raise MalformedSessionError(f"{path}: JSON nested too deeply to be a LayerLab session", path) from None
    _check_values(data, path)
    if not isinstance(data, dict) or "layerlab_session" not in data:
        raise MalformedSessionError(f"{path}: not a LayerLab session (no 'layerlab_session' version)", path)
    version = data["layerlab_session"]
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise MalformedSessionError(f"{path}: bad schema version {version!r}", path)
    if version > SCHEMA_VERSION:
        raise NewerSchemaError(
            f"{path}: written by a newer LayerLab (session schema {version}; this one reads up to {SCHEMA_VERSION})",
            version,
        )
    model = data.get("model")
    if not isinstance(model, dict) or not isinstance(model.get("path"), str):
        raise MalformedSessionError(f"{path}: 'model' must be an object with a 'path'", path)
    return data


_MAX_DEPTH = 64  # a session is a few levels deep; more is a hostile or broken file


def _check_values(data: Any, path: Path) -> None:
    """Every string valid Unicode (no lone surrogates from a \\ud800 escape) and nesting shallow,
    so that later readers (typed fields, report writers) never meet either."""
    stack: list[tuple[Any, str, int]] = [(data, "", 0)]
    while stack:
        value, where, depth = stack.pop()
        if depth > _MAX_DEPTH:
            raise MalformedSessionError(f"{path}: nested deeper than {_MAX_DEPTH} levels at {(where or 'the top')[:60]}", path)
        if isinstance(value, dict):
            for k, v in value.items():
                _check_text(k, f"{where}.{k}" if where else str(k), path)
                stack.append((v, f"{where}.{k}" if where else str(k), depth + 1))
        elif isinstance(value, list):
            stack.extend((v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value))
        elif isinstance(value, str):
            _check_text(value, where, path)


def _check_text(text: str, where: str, path: Path) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        field = where.encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace")[:80]
        raise MalformedSessionError(
            f"{path}: {field or 'a key'!s}: lone surrogate {text[exc.start]!a} at character {exc.start} (not valid Unicode)", path
        ) from None


def _measurement(data: Any, label: str, name: str) -> Measurement | None:
    if data is None:
        return None
    if not isinstance(data, dict):
        raise MalformedSessionError(f"{label}: {name!r} must be an object", Path(label))
    return Measurement.from_json(data)


def _calibration(data: Any, label: str) -> CalibrationRecord | None:
    if data is None:
        return None
    try:
        return CalibrationRecord.from_json(data)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise MalformedSessionError(f"{label}: 'calibration' is malformed ({exc})", Path(label)) from None


def load_session(
    path: str | os.PathLike[str],
    *,
    trust_evaluator: bool = False,
    model_path: str | os.PathLike[str] | None = None,
    accept_changed_model: bool = False,
    loaded: Any = None,
) -> Session:
    """Read a session file and rebuild its graph from the model; cached tables are used as they are.

    ``model_path`` overrides the recorded path (after ``ModelMovedError`` the user located it);
    ``accept_changed_model`` loads a model whose sha256 differs (its cached tables may be stale).
    ``loaded``: a graph already loaded (the window's current model); taken as the session's graph when
    it is of the same file, unchanged (sha256), at the same input shapes, instead of loading and
    validating the model again (most of a reopen's time, and of the GIL it holds).
    The evaluator is trusted only with ``trust_evaluator=True`` or when it is in the trust list.
    """
    from engine.ir.graph import load_model
    from engine.ir.validate import check_dims, one_line

    path = Path(path)
    label = str(path)
    data = _read(path)
    base = path.parent
    recorded = base / data["model"]["path"]
    # normalized: a path saved relative to the session reads "/tmp/s/../../root/m.onnx" otherwise
    model = Path(os.path.abspath(model_path if model_path is not None else recorded))
    if not model.is_file():
        raise ModelMovedError(f"{path}: model not found at {model} (moved or renamed?)", model, path)
    expected_sha = data["model"].get("sha256")
    actual_sha = sha256_file(model)
    if expected_sha and actual_sha != expected_sha and not accept_changed_model:
        raise ModelChangedError(
            f"{path}: model {model} has changed since the session was saved (sha256 differs)",
            model,
            expected_sha,
            actual_sha,
        )
    shapes_raw = data.get("input_shapes") or {}
    try:
        shapes = {str(k): check_dims(v, f"{label}: input_shapes {str(k)!r}") for k, v in shapes_raw.items()}
        trials = [Trial.from_json(t) for t in data.get("trials") or []]
    except LayerLabError as exc:
        raise MalformedSessionError(str(exc), path) from None
    except (TypeError, ValueError, AttributeError, KeyError) as exc:
        raise MalformedSessionError(f"{label}: 'input_shapes' or 'trials' malformed ({one_line(exc)})", path) from None

    notes = data.get("shape_notes") or []  # absent in files saved before it was kept
    if not isinstance(notes, list) or not all(isinstance(n, str) for n in notes):
        raise MalformedSessionError(f"{label}: 'shape_notes' must be a list of strings", path)
    session = Session()
    session.model_path = model
    session.input_shapes = shapes
    session.shape_notes = list(notes)
    same = (loaded is not None and getattr(loaded, "sha256", None) == actual_sha and loaded.path is not None
            and Path(loaded.path).resolve() == model.resolve() and dict(loaded.input_shapes) == shapes)
    session.graph = loaded if same else load_model(model, shapes)
    evaluator = data.get("evaluator")
    if isinstance(evaluator, dict) and isinstance(evaluator.get("path"), str):
        session.evaluator_path = Path(os.path.abspath(base / evaluator["path"]))
        session.evaluator_trusted = trust_evaluator or is_trusted(session.evaluator_path)
        if not session.evaluator_path.is_file():
            logger.warning("%s: evaluator %s not found", label, session.evaluator_path)
    for name in ("plan", "profile", "sensitivity", "route"):
        raw = data.get(name)
        if name == "route" and isinstance(raw, dict):
            raw = {k: v for k, v in raw.items() if k != "measured"}  # a copy of "current", for readers
        setattr(session, name, _from_data(name, raw, label))
    plan_layers = getattr(session.plan, "layers", None)
    if isinstance(plan_layers, dict):
        names = {n.name for n in session.graph.nodes}
        unknown = next((name for name in plan_layers if name not in names), None)
        if unknown is not None:
            raise MalformedSessionError(f"{label}: the plan names layer {one_line(repr(unknown), 80)}, which the model does not have", path)
    session.baseline = _measurement(data.get("baseline"), label, "baseline")
    session.current = _measurement(data.get("current"), label, "current")
    session.trials = trials
    session.calibration = _calibration(data.get("calibration"), label)
    session.notes = str(data.get("notes") or "")
    session.machine = data.get("machine") if isinstance(data.get("machine"), dict) else None
    session.path = path
    session.dirty = False
    logger.info("loaded session %s (model %s)", path, model)
    return session


"""What the profiling agent runs for a client: ``profile`` and ``measure`` jobs, and what it says about its machine.

Both jobs take only data: ONNX models (bytes, embedded weights only: a model pointing at external
data files could make the agent read its own files), input arrays and plain settings. Evaluators
stay on the client; the agent scores fidelity only, against reference outputs the client sends in an
``.npz`` (or against a model the request names as the reference). ``routines`` times segment
micro-models per execution provider, and ``measure`` also times mixed-provider routes sent as parts
(``engine.jobs.agent_routines``). Each job is a generator of
``Progress`` like every engine job, so the server can stream it, stop it at its time limit, and
stop it when the client goes away.
"""

from __future__ import annotations

import logging
import platform
from collections.abc import Mapping
from importlib import metadata
from typing import Any

import numpy as np
import onnx

from engine.errors import LayerLabError
from engine.evaluate.npz import fidelity_scores
from engine.ir.graph import ModelGraph
from engine.measure.cache import cpu_model
from engine.measure.interleave import interleaved_latency
from engine.jobs.agent_checks import blob as _blob, graph as _graph, int_setting as _int, provider as _provider
from engine.jobs.agent_routines import partitioned, run_routines
from engine.measure.profiler import ProfileOptions, profile_job
from engine.measure.providers import routines_by_provider
from engine.measure.timing import make_session, physical_cores
from engine.measure.variants import ROUTINES
from engine.measure.wire import PROTOCOL, WireError, read_npz
from engine.progress import Job, Progress

__all__ = ["AgentLimits", "agent_info", "run_measure", "run_profile", "run_routines", "start_job"]

logger = logging.getLogger(__name__)

_MAX_REPEATS = 1000
_MAX_SAMPLES = 10000


class AgentLimits:
    """The agent's limits: upload bytes, seconds per job, jobs at once."""

    def __init__(self, max_upload: int = 256 * 1024 * 1024, job_seconds: float = 1800.0, max_jobs: int = 1) -> None:
        self.max_upload = int(max_upload)
        self.job_seconds = float(job_seconds)
        self.max_jobs = int(max_jobs)

    def to_json(self) -> dict[str, Any]:
        return {"max_upload": self.max_upload, "job_seconds": self.job_seconds, "max_jobs": self.max_jobs}


def agent_info(limits: AgentLimits) -> dict[str, Any]:
    """The target as a client sees it: CPU, cores, ONNX Runtime, execution providers and their routines."""
    import onnxruntime as ort

    try:
        version = metadata.version("layerlab")
    except metadata.PackageNotFoundError:
        version = "unknown"
    providers = list(ort.get_available_providers())
    return {
        "protocol": PROTOCOL, "layerlab": version, "host": platform.node(), "system": platform.platform(),
        "cpu": cpu_model(), "cores": physical_cores(), "ort": ort.__version__, "providers": providers,
        "routines": routines_by_provider(providers), "jobs": ["profile", "measure", "routines"], "limits": limits.to_json(),
    }


def start_job(kind: str, settings: Mapping[str, Any], blobs: Mapping[str, bytes]) -> Job[dict[str, Any]]:
    """The job for ``kind``, checked before it starts (WireError/LayerLabError: refuse the request)."""
    if kind == "profile":
        return run_profile(settings, blobs)
    if kind == "measure":
        return run_measure(settings, blobs)
    if kind == "routines":
        return run_routines(settings, blobs)
    raise WireError(f"unknown job kind {kind!r} (this agent runs: profile, measure, routines)")


def run_profile(settings: Mapping[str, Any], blobs: Mapping[str, bytes]) -> Job[dict[str, Any]]:
    """Profile the model in ``blobs["model"]`` on the ``feeds`` the client sent; returns Profile JSON."""
    feeds = read_npz(_blob(blobs, "feeds"), "feeds")
    graph = _graph(_blob(blobs, "model"), {k: v.shape for k, v in feeds.items()}, "model")
    routines = settings.get("routines", list(ROUTINES))
    if not isinstance(routines, list) or not all(isinstance(r, str) and r in ROUTINES for r in routines):
        raise WireError(f"routines {routines!r}: expected a list drawn from {', '.join(ROUTINES)}")
    options = ProfileOptions(
        threads=_int(settings, "threads", None, 1, 512), routines=tuple(routines),
        repeats=_int(settings, "repeats", 30, 3, _MAX_REPEATS), feeds=feeds,
        ops_int8=bool(settings.get("ops_int8", True)), adapts=bool(settings.get("adapts", True)),
        provider=_provider(settings),
    )
    return _profile(graph, options)


def _profile(graph: ModelGraph, options: ProfileOptions) -> Job[dict[str, Any]]:
    result = yield from profile_job(graph, options)
    return result.to_json()


def run_measure(settings: Mapping[str, Any], blobs: Mapping[str, bytes]) -> Job[dict[str, Any]]:
    """Latency of every ``model:<name>`` blob, interleaved; fidelity when ``samples`` are sent.

    ``samples``: an npz of ``input:<name>`` arrays (first axis: samples). The reference outputs are the
    npz ``reference`` blob (``output:<i>``: the first output of sample i) or, without one, the outputs
    of the model named by ``settings["reference"]``, run here."""
    names = [k.removeprefix("model:") for k in blobs if k.startswith("model:")]
    routes = settings.get("parts") or {}
    if not names and not routes:
        raise WireError("a measure job needs at least one model:<name> blob")
    threads = _int(settings, "threads", None, 1, 512) or physical_cores()
    repeats = _int(settings, "repeats", 30, 3, _MAX_REPEATS)
    sessions = _int(settings, "sessions", 3, 1, 5)
    provider = _provider(settings)
    feeds = read_npz(_blob(blobs, "feeds"), "feeds")
    models: dict[str, Any] = {n: _graph(blobs[f"model:{n}"], {k: v.shape for k, v in feeds.items()}, n).model for n in names}
    models.update(partitioned(routes, blobs, settings.get("outputs") or {}, settings.get("spin") or {}))
    samples = read_npz(blobs["samples"], "samples") if "samples" in blobs else None
    reference = settings.get("reference")
    if samples is not None and "reference" not in blobs and reference not in models:
        raise WireError(f"fidelity needs a reference blob or settings.reference naming one of: {', '.join(names)}")
    return _measure(models, feeds, threads, repeats, sessions, samples,
                    read_npz(blobs["reference"], "reference") if "reference" in blobs else None, reference, provider)


def _measure(models: dict[str, onnx.ModelProto], feeds: dict[str, np.ndarray], threads: int, repeats: int,
             sessions: int, samples: dict[str, np.ndarray] | None, ref_npz: dict[str, np.ndarray] | None,
             reference: Any, provider: str) -> Job[dict[str, Any]]:
    stats = yield from interleaved_latency(models, feeds, threads, repeats, sessions=sessions, provider=provider)
    out: dict[str, Any] = {"latency": {n: {"median": s.median, "p10": s.p10, "p90": s.p90} for n, s in stats.items()},
                           "threads": threads, "provider": provider}
    if samples is not None:
        inputs = {k.removeprefix("input:"): v for k, v in samples.items() if k.startswith("input:")}
        counts = {len(v) for v in inputs.values()}
        if not inputs or len(counts) != 1 or counts.pop() > _MAX_SAMPLES:
            raise WireError(f"samples: input:<name> arrays sharing a first axis of at most {_MAX_SAMPLES} rows")
        outputs = {}
        for i, (name, model) in enumerate(models.items()):
            yield Progress(i, len(models), f"fidelity of {name}")
            outputs[name] = _run_samples(model, inputs, threads, name, provider)
        if ref_npz is not None:
            ref = [[ref_npz[f"output:{i}"]] for i in range(len(ref_npz))]
        else:
            ref = outputs[reference]
        try:
            out["fidelity"] = {n: fidelity_scores(o, ref) for n, o in outputs.items()}
        except (ValueError, KeyError) as exc:
            raise WireError(f"reference outputs do not match the models' ({exc})") from None
    return out


def _run_samples(model: onnx.ModelProto, inputs: dict[str, np.ndarray], threads: int, label: str,
                 provider: str) -> list[list[np.ndarray]]:
    session = make_session(model, threads, label, provider=provider)
    n = len(next(iter(inputs.values())))
    try:
        return [session.run(None, {k: v[i:i + 1] for k, v in inputs.items()})[:1] for i in range(n)]
    except Exception as exc:  # ORT's own errors: a sample that does not fit the model
        raise LayerLabError(f"{label}: running the samples failed ({str(exc).splitlines()[0][:200]})") from None

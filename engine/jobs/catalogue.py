"""Engine jobs for the explorer window, with picklable arguments, plus the instant prediction of a plan.

A worker process cannot receive a ``ModelGraph`` cheaply or a closure at all, so each job here takes
the model path and input shapes, loads the graph in the worker and runs the ordinary engine job
(``profile_job``, ``sensitivity_job``, apply + measure + evaluate). The worker process persists
(``engine.jobs.worker``), so ``load_graph`` and ``load_job_evaluator`` (``engine.jobs.loaded``) keep
what they loaded for the next job on the same model. The quick side, ``predict_plan`` (from cached
tables, in the GUI process, without ONNX Runtime), lives in ``engine.jobs.prediction``. No Qt here.

The catalogue at the end (``JOBS``) names every job the window may run (``PROFILE``, ``MEASURE``
…); the worker runs nothing else. ``LAYERLAB_JOB_PLUGINS`` (tests only) names modules that
``register`` more jobs, such as a job that crashes the worker on purpose.
"""

from __future__ import annotations

import importlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from engine.errors import LayerLabError
from engine.jobs.layer_facts import layer_facts_job
from engine.jobs.loaded import load_graph, load_job_evaluator
from engine.jobs.report_job import SessionSnapshot, write_report_job
from engine.progress import Job, Progress, in_thread
from engine.jobs.prediction import Prediction, baseline_measurement, plan_routines, predict_plan, tune_available  # re-exported
from engine.model.session import Measurement, Trial

__all__ = ["JOBS", "OPEN_MODEL", "PROFILE", "PROVIDERS", "available_providers_job", "SENSITIVITY", "MEASURE", "TUNE", "EXPORT_PLAN", "LAYER_FACTS", "WRITE_REPORT",
           "register", "SessionSnapshot",
           "resolve", "load_job_evaluator", "PlanMeasurement", "Prediction", "TuneOutcome", "load_graph", "open_model",
           "profile_model_job", "sensitivity_model_job",
           "measure_plan_job", "tune_model_job", "tune_outcome", "export_plan_job", "plan_routines", "predict_plan",
           "baseline_measurement", "tune_available"]

logger = logging.getLogger(__name__)

_MEASURE_REPEATS = 20


def open_model(path: str | Path, input_shapes: Mapping[str, tuple[int, ...]] | None = None,
               dims: Mapping[str, int] | None = None,
               evaluator: str | Path | None = None, given_by: str = "with --input") -> tuple[Any, dict, list[str], dict]:
    """Load the model for the window at shapes resolved as ``engine.ir.resolve`` orders them.

    Returns ``(graph, shapes, notes, missing)``: the graph and the input shapes every later job
    reuses, where each shape came from (``input_shapes`` given ``given_by``, the evaluator's most
    frequent shape, batch 1: ``ResolvedShapes.sources``), and the dims nobody gave. An unknown dim
    is never set here: with ``missing`` the graph is None and the window asks for them
    (``gui.qt_shape_dialog``), then opens again with the answer.
    """
    import onnx

    from engine.evaluate.evaluator import load_evaluator
    from engine.ir.resolve import declared_inputs, resolve_input_shapes, sample_shapes

    explicit = {k: tuple(v) for k, v in dict(input_shapes or {}).items()}
    try:
        declared = declared_inputs(onnx.load(str(path), load_external_data=False))
    except Exception:  # noqa: BLE001 - load_model below names the problem in one line
        return load_graph(path, explicit), explicit, [], {}
    samples = None
    if evaluator is not None:
        samples = sample_shapes(inputs for inputs, _ in load_evaluator(evaluator).samples())
    resolved = resolve_input_shapes(declared, explicit, dims, samples, label=str(path), given_by=given_by)
    if resolved.missing:
        load_graph(path, resolved.shapes)  # a broken file is said before any shape is asked
        logger.info("%s: input dims unknown: %s", path, resolved.missing)
        return None, dict(resolved.shapes), resolved.sources, dict(resolved.missing)
    return load_graph(path, resolved.shapes), dict(resolved.shapes), resolved.sources, {}


def profile_model_job(path: str | Path, input_shapes: Mapping[str, tuple[int, ...]] | None = None,
                      options: Any = None, target: str | None = None, evaluator: str | Path | None = None,
                      providers: tuple[str, ...] = ()) -> Job[Any]:
    """Load the model and profile it (``engine.measure.profiler.profile_job``) here, or on ``target``
    (a name from targets.json, see ``engine.measure.targets``); returns the Profile. With ``evaluator``
    it is timed on the evaluator's sample (``engine.optimize.timing_feeds``), as Measure and Tune are.
    ``providers``: other execution providers whose routine tables are merged in, timed there too
    (``engine.measure.provider_tables.with_providers_job``, as ``profile --providers``)."""
    from dataclasses import replace

    from engine.measure.profiler import ProfileOptions, profile_job

    yield Progress(0, 0, "loading the model")
    graph = load_graph(path, input_shapes)
    options = options or ProfileOptions()
    if evaluator is not None and options.feeds is None:
        timing = _timing(graph, evaluator, path, input_shapes)
        options = replace(options, feeds=timing.feeds, feeds_source=timing.source)
    remote = None
    if target:
        from engine.measure.remote import RemoteTarget
        from engine.measure.targets import resolve_target

        remote = RemoteTarget(resolve_target(target))
    profile = yield from (profile_job(graph, options) if remote is None else remote.profile_job(graph, options))
    if providers and profile.complete:
        from engine.measure.provider_tables import TableOptions, with_providers_job

        yield Progress(0, 0, f"routines per provider: {', '.join(providers)}")
        profile = yield from with_providers_job(graph, profile, TableOptions(
            providers=tuple(providers), threads=profile.threads, feeds=options.feeds, use_cache=options.use_cache), remote)
    return profile


def available_providers_job(target: str | None = None) -> Job[list[str]]:
    """The execution providers ONNX Runtime has here, or that ``target`` (a name from targets.json) reports."""
    yield Progress(0, 0, f"asking {target or 'this machine'} for its execution providers")
    if target:
        from engine.measure.remote import RemoteTarget
        from engine.measure.targets import resolve_target

        return list(RemoteTarget(resolve_target(target)).info().get("providers", []))
    import onnxruntime as ort

    return list(ort.get_available_providers())


def _timing(graph: Any, evaluator: str | Path | None, path: str | Path,
            input_shapes: Mapping[str, tuple[int, ...]] | None) -> Any:
    """The inputs this window's jobs time on (``engine.optimize.timing_feeds``)."""
    from engine.optimize.timing_feeds import timing_feeds

    return timing_feeds(graph, load_job_evaluator(evaluator, path, input_shapes) if evaluator is not None else None)


def sensitivity_model_job(path: str | Path, input_shapes: Mapping[str, tuple[int, ...]] | None,
                          evaluator: str | Path, settings: Any = None, structural: bool | None = None) -> Job[Any]:
    """Load the model and the evaluator and run the per-layer sweep; returns the Sensitivity.

    ``structural`` (the window's check box), when given, overrides ``settings.structural``: the sweep
    then also measures prune:r / rank:f per layer (``engine.evaluate.structural``)."""
    from dataclasses import replace

    from engine.evaluate.sensitivity import SweepSettings, sensitivity_job

    if structural is not None:
        settings = replace(settings if settings is not None else SweepSettings(), structural=bool(structural))
    yield Progress(0, 0, "loading the model and the evaluator")
    graph = load_graph(path, input_shapes)
    return (yield from sensitivity_job(graph, load_job_evaluator(evaluator, path, input_shapes), settings))


@dataclass(frozen=True)
class PlanMeasurement:
    """A Measure: the plan's variant and fp32, timed in turns in the same job, tagged with the plan."""

    plan: dict[str, Any]  # the plan it was computed for: a result for an older plan never lands on a newer one
    measured: Measurement
    baseline: Measurement  # fp32 timed side by side with the variant (its metric: the evaluator's on fp32)
    calibration: Any = None  # engine.model.session.CalibrationRecord when the variant has int8, else None
    notes: list[str] = field(default_factory=list)
    feeds: str = ""  # what both were timed on (engine.optimize.timing_feeds)


def measure_plan_job(path: str | Path, input_shapes: Mapping[str, tuple[int, ...]] | None,
                     plan: Mapping[str, Any], routines: Mapping[str, str] | None = None,
                     evaluator: str | Path | None = None, threads: int | None = None,
                     repeats: int = _MEASURE_REPEATS) -> Job[PlanMeasurement]:
    """Build the variant ``plan`` describes and time it against fp32 in turns (and score both, given an evaluator),
    on the evaluator's sample when there is one (``engine.optimize.timing_feeds``).

    ``threads``: the window's one thread count, its profile's (None: the physical cores, as the profile takes it).

    ``auto`` precisions take the routine named in ``routines`` (the route), else fp32. int8 calibrates
    as everywhere else (``engine.evaluate.calibration``).
    """
    from engine.evaluate.calibration import build_variant, calibration_for, uses_int8
    from engine.evaluate.evaluator import ensure_reference, evaluate_job
    from engine.measure.interleave import interleaved_latency
    from engine.measure.timing import physical_cores
    from engine.model.plan import Plan
    from engine.optimize.tune_providers import timed_form

    yield Progress(0, 3, "building the variant")
    graph = load_graph(path, input_shapes)
    ev = load_job_evaluator(evaluator, path, input_shapes) if evaluator is not None else None
    calibration = calibration_for(graph, ev)
    resolved = _resolve_auto(Plan.from_dict(dict(plan), "plan"), graph, routines or {})
    built = yield from in_thread(lambda: build_variant(graph, resolved, calibration), "building the variant")
    yield Progress(1, 3, "timing the variant and fp32 in turns")
    timing = _timing(graph, evaluator, path, input_shapes)
    # a plan that places layers on other providers runs as parts (engine.optimize.tune_providers), as tune times it
    timed = timed_form(graph, resolved, built.model, timing.feeds, threads or physical_cores())
    stats = yield from interleaved_latency({"fp32": graph.model, "plan": timed}, timing.feeds,
                                           threads or physical_cores(), repeats)
    metric = base_metric = None
    if ev is not None:
        yield Progress(2, 3, "evaluating")
        ensure_reference(ev, graph.model)
        base_metric = (yield from evaluate_job(graph.model, ev)).metric
        metric = (yield from evaluate_job(built.model, ev)).metric
    b, m = stats["fp32"], stats["plan"]
    return PlanMeasurement(dict(plan), Measurement(m.median, m.p10, m.p90, metric, built.model.ByteSize()),
                           Measurement(b.median, b.p10, b.p90, base_metric, graph.model.ByteSize()),
                           calibration.record() if uses_int8(graph, resolved) else None, list(built.notes),
                           timing.source)


def _resolve_auto(plan: Any, graph: Any, routines: Mapping[str, str]) -> Any:
    from dataclasses import replace

    from engine.model.plan import PRECISIONS

    from engine.measure.providers import CPU, split_routine

    layers = dict(plan.layers)
    for node in graph.layers:
        settings = plan.settings_for(node.name)
        if settings.precision == "auto":
            base, provider = split_routine(routines.get(node.name, "fp32"))  # int8@OpenVINO: int8, on OpenVINO
            layers[node.name] = replace(settings, precision=base if base in PRECISIONS else "fp32",
                                        provider=None if provider == CPU else provider)
    return replace(plan, layers=layers)


@dataclass(frozen=True)
class TuneOutcome:
    """What the window keeps of a tune (``engine.optimize.tune.TuneResult`` without the built model): picklable and small."""

    routines: dict[str, str]  # layer -> routine of the chosen route (ops left out: they run fp32)
    route: Any  # engine.optimize.dprs.Route
    baseline: Measurement
    measured: Measurement
    trials: list[Trial]  # one per round, as engine.optimize.tune_session.to_session labels them
    profile: Any
    sensitivity: Any
    feasible: bool = True
    note: str = ""
    ops: str = "fp32"  # the plan's "ops" of the chosen route
    calibration: Any = None  # engine.model.session.CalibrationRecord of the int8 variants tune measured


def tune_outcome(result: Any, graph: Any) -> TuneOutcome:
    """The window's view of an ``engine.optimize.tune.TuneResult`` on ``graph``."""
    from engine.optimize.tune_session import round_trials

    b, m = result.baseline_ms, result.ms_measured
    trials = round_trials(result, graph)
    return TuneOutcome(result.layer_routines(), result.route,
                       Measurement(b.median, b.p10, b.p90, result.baseline_metric, graph.model.ByteSize()),
                       Measurement(m.median, m.p10, m.p90, result.metric, result.model.ByteSize()),
                       trials, result.profile, result.sensitivity, result.feasible,
                       "; ".join(x for x in (result.note, _calibration_warning(result)) if x), result.plan.ops,
                       result.calibration)


def _calibration_warning(result: Any) -> str:
    from engine.evaluate.calibration import RANDOM_WARNING

    return RANDOM_WARNING if result.calibration is not None and result.calibration.random else ""


def tune_model_job(path: str | Path, input_shapes: Mapping[str, tuple[int, ...]] | None, evaluator: str | Path,
                   max_drop: float, plan_dict: Mapping[str, Any] | None = None,
                   options: Any = None, profile: Any = None, sensitivity: Any = None,
                   threads: int | None = None, structural: bool | None = None,
                   providers: tuple[str, ...] | None = None) -> Job[TuneOutcome]:
    """Load the model and the evaluator and run ``engine.optimize.tune.tune_job`` within ``max_drop``.

    ``plan_dict``: layers whose precision is not ``auto`` stay pinned (None: every layer is auto).
    ``options``: an ``engine.optimize.tune.TuneOptions`` for the effort (its max_drop is replaced by ``max_drop``).
    ``profile``, ``sensitivity``: the window's tables; tune reuses them where they fit and measures only what is missing.
    ``threads``: the window's one thread count, the one its Profile and Measure use (None: the physical
    cores, as they take it); it replaces any in ``options``, so baseline, predicted and measured agree.
    ``structural`` (the window's check box), when given, replaces ``options.structural``: routes may also
    prune groups and factor layers (``layerlab tune --structural``). ``providers``, when given, replaces
    ``options.providers``: DPRS may place layers on those execution providers (``layerlab tune --providers``).
    """
    from dataclasses import replace

    from engine.measure.timing import physical_cores
    from engine.model.plan import Plan
    from engine.optimize.tune import TuneOptions, tune_job

    yield Progress(0, 0, "loading the model and the evaluator")
    graph = load_graph(path, input_shapes)
    plan = Plan.from_dict(dict(plan_dict), "plan") if plan_dict is not None else None
    opts = replace(options or TuneOptions(), max_drop=float(max_drop), threads=threads or physical_cores())
    if structural is not None:
        opts = replace(opts, structural=bool(structural))
    if providers is not None:
        opts = replace(opts, providers=tuple(providers))
    result = yield from tune_job(graph, load_job_evaluator(evaluator, path, input_shapes), opts, plan, profile,
                                 sensitivity)
    return tune_outcome(result, graph)


def export_plan_job(path: str | Path, input_shapes: Mapping[str, tuple[int, ...]] | None,
                    plan: Mapping[str, Any], routines: Mapping[str, str] | None, out_path: str | Path,
                    evaluator: str | Path | None = None) -> Job[str]:
    """Build the variant ``plan`` describes (as Measure and Tune build it: the same calibration, the same
    bytes) and save it to ``out_path``; returns the path."""
    import onnx

    from engine.evaluate.calibration import build_variant, calibration_for
    from engine.model.plan import Plan

    yield Progress(0, 1, "building the variant")
    graph = load_graph(path, input_shapes)
    calibration = calibration_for(graph, load_job_evaluator(evaluator, path, input_shapes) if evaluator is not None
                                  else None)
    plan_ = _resolve_auto(Plan.from_dict(dict(plan), "plan"), graph, routines or {})
    model = build_variant(graph, plan_, calibration).model
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out))
    yield Progress(1, 1, f"saved {out.name}")
    return str(out)


# --- the catalogue: every job the window can run, by name ------------------------------------------

OPEN_MODEL = "open_model"
PROFILE = "profile"
PROVIDERS = "providers"
SENSITIVITY = "sensitivity"
MEASURE = "measure"
TUNE = "tune"
EXPORT_PLAN = "export_plan"
LAYER_FACTS = "layer_facts"
WRITE_REPORT = "write_report"


#: Job name -> function (a generator yielding ``Progress``, or a plain function); the worker runs only these.
JOBS: dict[str, Callable[..., Any]] = {
    OPEN_MODEL: open_model,
    PROFILE: profile_model_job,
    PROVIDERS: available_providers_job,
    SENSITIVITY: sensitivity_model_job,
    MEASURE: measure_plan_job,
    TUNE: tune_model_job,
    EXPORT_PLAN: export_plan_job,
    LAYER_FACTS: layer_facts_job,
    WRITE_REPORT: write_report_job,
}

_PLUGINS_ENV = "LAYERLAB_JOB_PLUGINS"
_plugins_loaded = False


def register(name: str, function: Callable[..., Any]) -> None:
    """Add a job under a new ``name`` (tests register jobs that hang or crash the worker on purpose)."""
    if name in JOBS and JOBS[name] is not function:
        raise LayerLabError(f"job catalogue: {name!r} is already taken")
    JOBS[name] = function


def _load_plugins() -> None:
    """Import the modules ``$LAYERLAB_JOB_PLUGINS`` names (comma-separated; set by the test suite only)."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for module in filter(None, (m.strip() for m in os.environ.get(_PLUGINS_ENV, "").split(","))):
        importlib.import_module(module)


def resolve(name: str) -> Callable[..., Any]:
    """The function of the job called ``name``; LayerLabError naming the known jobs when there is none."""
    _load_plugins()
    try:
        return JOBS[name]
    except KeyError:
        raise LayerLabError(f"no job called {name!r} in the catalogue (known: {', '.join(sorted(JOBS))})") from None

"""Tune: choose a routine per layer within an accuracy budget (and a memory limit), build it, measure it.

The pipeline: measure the fp32 baseline (latency and metric) -> profile -> sensitivity -> DPRS
(``engine.optimize.routes.build_problem`` + ``engine.optimize.dprs.solve``) -> build the variant (``apply_plan`` with
every layer pinned to its routine, calibrated on the evaluator's calibration inputs) -> measure it
end to end and score it. Per-layer drops do not add up exactly, so when the measured drop exceeds the
budget the worst layers of the route (largest sensitivity drop, ties by lowest SQNR) are pinned to
fp32 and DPRS solves again, as accuracy-control tools do; each round is kept. A route that measures
no faster than fp32 is not worth shipping: the result is then fp32 itself.

Beyond the DPRS rounds two candidates are measured, since the tables price layers one at a time:
the plain all-int8 route when its summed drops fit, and the best route so far with the ops between
layers quantized too (the plan's ``"ops": "int8"``, as ORT's whole-model quantization does), which
removes Dequantize/Quantize round trips where the model tolerates it. The fastest candidate within
the budget wins, timed against fp32 in one interleaved run.

With ``structural`` the routes may also prune groups and factor layers: the sweep measures those
variants' drops and ``engine.optimize.structural`` their end-to-end times (see its approximations).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Generator

import onnx

from engine.optimize import dprs
from engine.evaluate.calibration import Calibration, build_variant, calibration_for
from engine.evaluate.evaluator import Evaluator, ensure_reference, evaluate_job
from engine.ir.graph import ModelGraph
from engine.progress import Job, Progress
from engine.model.plan import Plan
from engine.measure.profiler import Profile, ProfileOptions, Stats, measure_latency, predict_ms, profile_job
from engine.optimize.fill import next_layers, worst_layers
from engine.optimize.routes import build_problem
from engine.evaluate.sensitivity import Sensitivity, SweepSettings, sensitivity_job
from engine.evaluate.structural import STRUCTURAL
from engine.optimize.structural import with_structural
from engine.optimize.tune_providers import provider_routines, timed_form
from engine.measure.provider_tables import TableOptions, with_providers_job
from engine.measure.providers import CPU, routine_on, split_routine

from engine.optimize.plans import route_plan, sweep_calibration  # route_plan re-exported
from engine.optimize.tune_types import Round, TuneOptions, TuneResult  # re-exported: the tune's public types

__all__ = ["Round", "TuneOptions", "TuneResult", "route_plan", "tune_job"]

logger = logging.getLogger(__name__)

_TOL = 1e-9
_FINALISTS = 4  # routes within the budget timed again in turns with fp32 at the end


def tune_job(graph: ModelGraph, evaluator: Evaluator, options: TuneOptions = TuneOptions(),
             plan: Plan | None = None, profile: Profile | None = None,
             sensitivity: Sensitivity | None = None) -> Job[TuneResult]:
    """The whole pipeline as a job (see the module docstring). ``plan``: layers whose precision is
    not "auto" keep it (pinned); None means every layer is auto. ``profile`` and ``sensitivity``:
    tables already measured (the window's, a session's); reused where they fit (``engine.optimize.reuse``),
    and only what they lack is measured."""
    from engine.optimize import reuse
    from engine.optimize.timing_feeds import timing_feeds

    # One thread count and one input (the evaluator's sample) for the profile DPRS predicts from and every latency.
    options = replace(options, threads=reuse.threads_for(options.threads, options.profile, options.target is not None))
    threads = options.threads
    timing = timing_feeds(graph, evaluator)
    feeds = timing.feeds
    yield Progress(0, 5, "measuring the fp32 baseline")
    ensure_reference(evaluator, graph.model)
    base_eval = yield from evaluate_job(graph.model, evaluator, threads=threads or 0)
    base_ms = yield from _latency(graph.model, feeds, options, f"{graph.label} [fp32]")
    popts = replace(options.profile or ProfileOptions(routines=options.routines), threads=threads, feeds=feeds,
                    feeds_source=timing.source)
    why = reuse.profile_fits(profile, graph, threads, options.routines, timing)
    if why:
        yield Progress(1, 5, "profiling")
        prof = yield from (profile_job(graph, popts) if options.target is None else options.target.profile_job(graph, popts))
    else:
        assert profile is not None
        prof = profile
    reused = [reuse.describe("profile", why)]
    if options.providers:  # the same tables as profile --providers, here or on the target
        yield Progress(1, 5, f"routines per provider: {', '.join(options.providers)}")
        bases = tuple(b for b in ("fp32", "int8") if b == "fp32" or b in options.routines)
        prof = yield from with_providers_job(graph, prof, TableOptions(
            providers=options.providers, routines=bases, threads=prof.threads, feeds=feeds, use_cache=popts.use_cache),
            options.target)
    sweep = SweepSettings(routines=tuple(r for r in options.routines if r != "fp32"), threads=threads or 0,
                          calibration=options.calibration, structural=options.structural,
                          int8_methods=options.int8_methods)

    def sweep_job(settings: SweepSettings) -> Job[Sensitivity]:
        return (sensitivity_job(graph, evaluator, settings) if options.executor is None
                else options.executor.sweep_job(graph, evaluator, settings))

    why = reuse.sensitivity_fits(sensitivity, base_eval.metric)
    if why:
        yield Progress(2, 5, "sensitivity")
        sens = yield from sweep_job(sweep)
    else:
        assert sensitivity is not None
        sens, missing = sensitivity, reuse.missing_sweep(sensitivity, graph, options.routines, sweep)
        if missing is not None:
            yield Progress(2, 5, f"sensitivity of {len(missing.layers or ())} layer(s) not measured yet")
            sens = reuse.merge(sensitivity, (yield from sweep_job(missing)))
            why = f"{len(missing.layers or ())} layer(s) swept"
    reused.append(reuse.describe("sensitivity", why))
    logger.info("tune %s: %s", graph.label, "; ".join(reused))
    methods = sweep_calibration(sens)
    pinned = _plan_pins(graph, plan)
    constraints = dprs.Constraints(max_drop=options.max_drop, memory_limit=options.memory_limit)
    rounds: list[Round] = []
    built: list[tuple[dprs.Route, onnx.ModelProto, Plan]] = []
    calibration = calibration_for(graph, evaluator)
    # With structural routines, DPRS works on ``tables``: the profile plus each variant's end-to-end time.
    offer, data, tables = provider_routines(options.routines, options.providers), not calibration.random, prof
    if options.structural:
        sens, tables = yield from with_structural(graph, evaluator, sens, prof, calibration, feeds, options)
        offer = (*offer, *STRUCTURAL)
    for i in range(options.max_rounds):
        yield Progress(3, 5, f"round {i + 1}: solving")
        problem = build_problem(graph, tables, sens, pinned=pinned, routines=offer)
        route = dprs.solve(problem, constraints)
        if not route.feasible:
            logger.info("tune round %d: DPRS found no feasible route (%s: %s)", i + 1, route.binding, route.detail)
        rplan = route_plan(graph, route.routines, calibration=methods, data=data)
        if rounds and _layer_routines(graph, route.routines) == rounds[-1].routines:
            break  # nothing left to revert
        model, ms, metric, timed = yield from _build_and_measure(graph, rplan, calibration, evaluator, feeds, options, i)
        rounds.append(Round(_layer_routines(graph, route.routines), route.latency_ms, ms, metric, route.drop,
                            route.weight_bytes))
        built.append((route, model, rplan, timed))
        excess = base_eval.metric - metric - options.max_drop
        if excess <= _TOL:
            break
        worst = worst_layers(sens, route.routines, excess, pinned)
        if not worst:
            break
        rounds[-1].reverted = worst
        pinned.update({n: routine_on("fp32", split_routine(route.routines[n])[1]) for n in worst})  # fp32, where it ran
    # Under the budget: add layers by predicted time saved per unit of drop and measure, until it is used.
    for _ in range(options.max_fill):
        last = rounds[-1] if rounds else None
        if last is None or base_eval.metric - last.metric > options.max_drop + _TOL:
            break
        adds = next_layers(graph, tables, sens, last.routines, pinned, options.max_drop - (base_eval.metric - last.metric),
                           offer)
        if not adds:
            break
        routines = {**last.routines, **adds}
        yield Progress(3, 5, f"round {len(rounds) + 1}: {len(adds)} more layer(s) within the budget")
        problem = build_problem(graph, tables, sens, pinned=pinned, routines=offer)
        full = {n.name: routines.get(n.name, "fp32") for n in graph.nodes}
        lat, drop, nbytes = dprs.route_cost(problem, full)
        fplan = route_plan(graph, routines, calibration=methods, data=data)
        model, ms, metric, timed = yield from _build_and_measure(graph, fplan, calibration, evaluator, feeds, options, len(rounds))
        rounds.append(Round(_layer_routines(graph, routines), lat, ms, metric, drop, nbytes, added=sorted(adds)))
        built.append((dprs.Route(full, lat, drop, nbytes, 0.0), model, fplan, timed))
    # Predictions can be wrong where ORT fuses across layers: also measure the plain all-int8 route when
    # its summed drops fit, and keep whichever measures fastest within the budget.
    problem = build_problem(graph, tables, sens, pinned=pinned, routines=offer)
    uniform = {n: ("int8" if "int8" in problem.times[n] else "fp32") for n in problem.nodes}
    uniform.update({n: next(iter(r)) for n, r in problem.pinned.items()})
    lat, drop, nbytes = dprs.route_cost(problem, uniform)
    fits = drop <= options.max_drop + _TOL and (options.memory_limit is None or nbytes <= options.memory_limit)
    fits = fits and "int8" in uniform.values()  # no layer takes CPU int8 (e.g. only int8@<EP> offered): nothing to try
    # the all-int8 round: with its ops in int8 too it is ORT's whole-model int8, which tune must not lose to
    same = [k for k, r in enumerate(rounds) if r.routines == _layer_routines(graph, uniform)]
    whole = (same[0] if same else len(rounds)) if fits else None
    if fits and not same:
        yield Progress(3, 5, "measuring the all-int8 route")
        uplan = route_plan(graph, uniform, calibration=methods, data=data)
        model, ms, metric, timed = yield from _build_and_measure(graph, uplan, calibration, evaluator, feeds, options, len(rounds))
        rounds.append(Round(_layer_routines(graph, uniform), lat, ms, metric, drop, nbytes))
        built.append((dprs.Route(uniform, lat, drop, nbytes, 0.0), model, uplan, timed))
    ok = [k for k, r in enumerate(rounds) if base_eval.metric - r.metric <= options.max_drop + _TOL]
    # ops in int8 only around CPU layers: a route split into parts keeps its ops fp32
    int8 = [k for k in ok if "int8" in rounds[k].routines.values()
            and all(split_routine(r)[1] == CPU for r in rounds[k].routines.values())]
    # Round times are single measures minutes apart: the best by them and the all-int8 round both get an
    # ops-in-int8 twin, and the final comparison in turns decides.
    twins = sorted({min(int8, key=lambda k: rounds[k].ms_measured.median)} | ({whole} & set(int8))) if int8 else []
    for best in twins:
        r = rounds[best]
        yield Progress(3, 5, "measuring the all-int8 route with its ops in int8 (ORT's whole-model int8)" if best == whole
                       else "measuring the best route with its ops in int8 too")
        oplan = route_plan(graph, r.routines, "int8", calibration=methods, data=data)
        model, ms, metric, timed = yield from _build_and_measure(graph, oplan, calibration, evaluator, feeds, options,
                                                                 len(rounds))
        rounds.append(Round(dict(r.routines), predicted_ms(tables, graph, r.routines, "int8"), ms, metric,
                            r.drop_predicted, r.weight_bytes, ops="int8"))
        built.append((built[best][0], model, oplan, timed))
        if base_eval.metric - metric <= options.max_drop + _TOL:
            ok.append(len(rounds) - 1)
    feasible, note = bool(ok), ""
    if ok:
        # Rounds were timed minutes apart and the load drifts: time fp32 and the best candidates
        # again, round-robin in one run, so "faster than fp32" is decided on comparable numbers.
        ok = sorted(ok, key=lambda k: rounds[k].ms_measured.median)[:_FINALISTS]
        base_ms, fresh = yield from _compare_interleaved(graph.model, {k: built[k][3] for k in ok}, feeds, options)
        for k, stats in fresh.items():
            rounds[k].ms_measured = stats
    pick = min(ok, key=lambda k: rounds[k].ms_measured.median) if ok else None
    if pick is None:
        note = (f"no route met max_drop {options.max_drop:g} in {len(rounds)} round(s) (measured drops: "
                + ", ".join(f"{base_eval.metric - r.metric:.4g}" for r in rounds) + "); keeping fp32")
    elif rounds[pick].ms_measured.median >= base_ms.median and set(rounds[pick].routines.values()) != {"fp32"}:
        note = (f"the best route measured {rounds[pick].ms_measured.median:.3f} ms, no faster than fp32 "
                f"({base_ms.median:.3f} ms); keeping fp32")
        pick = None
    if pick is None:
        fp32 = {n.name: "fp32" for n in graph.layers}
        problem = build_problem(graph, prof, sens, pinned=fp32, routines=("fp32",))
        lat, drop, nbytes = dprs.route_cost(problem, {n.name: "fp32" for n in graph.nodes})
        route = dprs.Route({n.name: "fp32" for n in graph.nodes}, lat, drop, nbytes, 0.0)
        result = TuneResult(base_ms, base_eval.metric, route, lat, base_ms, base_eval.metric, rounds, graph.model,
                            route_plan(graph, {}), prof, sens, feasible, note)
    else:
        route, model, rplan, _ = built[pick]
        r = rounds[pick]
        result = TuneResult(base_ms, base_eval.metric, route, r.ms_predicted, r.ms_measured, r.metric, rounds,
                            model, rplan, prof, sens, True, note)
    if note:
        logger.warning("tune %s: %s", graph.label, note)
    result.calibration = calibration.record()
    result.reused, result.feeds = reused, timing.source
    yield Progress(5, 5, "done")
    return result


# --- steps ----------------------------------------------------------------------------------


def _compare_interleaved(base: onnx.ModelProto, candidates: Mapping[int, Any], feeds: dict[str, Any],
                         options: TuneOptions) -> Generator[Progress, None, tuple[Stats, dict[int, Stats]]]:
    """fp32 and each candidate timed round-robin in one run (see engine.measure.interleave)."""
    from engine.measure.interleave import interleaved_latency
    from engine.measure.timing import physical_cores

    models = {"fp32": base, **{f"round {k + 1}": m for k, m in candidates.items()}}
    if options.target is not None:
        job = options.target.latency_job(models, feeds, options.threads, options.repeats)
    else:
        job = interleaved_latency(models, feeds, options.threads or physical_cores(), options.repeats)
    while True:
        try:
            p = next(job)
        except StopIteration as stop:
            stats = stop.value
            break
        yield Progress(4, 5, f"comparing with fp32: {p.message} {p.done}/{p.total}")
    return stats["fp32"], {k: stats[f"round {k + 1}"] for k in candidates}


def _plan_pins(graph: ModelGraph, plan: Plan | None) -> dict[str, str]:
    if plan is None:
        return {}
    pins = {}
    for n in graph.layers:
        p = plan.settings_for(n.name).precision
        if p is not None and p != "auto":
            pins[n.name] = p
    return pins


def _layer_routines(graph: ModelGraph, routines: Mapping[str, str]) -> dict[str, str]:
    return {n.name: routines.get(n.name, "fp32") for n in graph.layers}


def _build_and_measure(graph: ModelGraph, plan: Plan, calibration: Calibration, evaluator: Evaluator,
                       feeds: Mapping[str, Any], options: TuneOptions, i: int) -> Job[tuple[onnx.ModelProto, Stats, float, Any]]:
    """The plan's variant, its latency (a mixed-provider route: as parts, ``timed_form``), its metric, and what was timed."""
    yield Progress(3, 5, f"round {i + 1}: building the variant")
    model = build_variant(graph, plan, calibration).model
    timed = timed_form(graph, plan, model, feeds, options.threads)
    yield Progress(4, 5, f"round {i + 1}: measuring" + ("" if timed is model else f" ({len(timed.parts)} parts)"))
    ms = yield from _latency(timed, feeds, options, f"{graph.label} [route]")
    result = yield from evaluate_job(model, evaluator, threads=options.threads or 0)
    logger.info("tune round %d: %.3f ms, metric %.4f", i + 1, ms.median, result.metric)
    return model, ms, result.metric, timed


def _latency(model: Any, feeds: Mapping[str, Any], options: TuneOptions, label: str) -> Job[Stats]:
    """End-to-end latency here, or on the options' target; a ``PartitionedModel`` runs its parts in turn."""
    if options.target is None and isinstance(model, onnx.ModelProto):
        return measure_latency(model, feeds, options.threads, repeats=options.repeats, label=label)
    if options.target is None:  # a route as parts: the same session rule (the fastest of 3 in turns)
        from engine.measure.interleave import interleaved_latency

        stats = yield from interleaved_latency({label: model}, dict(feeds), options.threads or 1, options.repeats)
        return stats[label]
    stats = yield from options.target.latency_job({label: model}, feeds, options.threads, options.repeats)
    return stats[label]


def predicted_ms(profile: Profile, graph: ModelGraph, routines: Mapping[str, str], ops: str = "fp32") -> float:
    """``engine.measure.predict.predict_ms`` for a route (ops dropped from ``routines``): with ops fp32, the
    reference the DPRS tables agree with."""
    return predict_ms(profile, graph, _layer_routines(graph, routines), ops)

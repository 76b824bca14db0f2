"""The live engine: Profile, Sensitivity, Tune and Measure jobs for the open model, and the instant prediction.

After a model opens, profiling starts (and the sensitivity sweep when an evaluator is set). Every
plan change recomputes the prediction from the cached tables (``engine.jobs.prediction.predict_plan``,
shown as the session's route) in a Python thread: on a 1,000-node model DPRS and the adapt pricing take
a second or two, which must not stall the event loop. The latest request wins: a prediction for an
older plan (or older tables) never lands. Every plan *edit* (an undo-stack step) also schedules a
Measure about a second later, replacing any earlier Measure; it waits for the prediction of its plan.
Jobs run in the window's worker process, named in ``engine.jobs.catalogue`` with picklable arguments
(model path, input shapes, options); results land in the session, a compound result (a tune, a
measured trial) in one ``session.batch()``.

The engine knows nothing of the window: the window hands it a job runner, an undo-command pusher and
a status line, and calls ``plan_edited()`` when its undo stack moves.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future
from dataclasses import replace
from typing import Any, Callable, Protocol

from PySide6.QtCore import QObject, QTimer
from PySide6.QtGui import QUndoCommand

from engine.jobs import catalogue
from engine.jobs.prediction import baseline_measurement, predict_plan
from engine.model.plan import Plan
from engine.measure.providers import CPU, split_routine
from engine.model.session import Measurement, Trial
from gui.plan_commands import SetPlanCommand
from gui.qt_background import QtBackground
from gui.session_links import connect_view

__all__ = ["QtLiveEngine", "MEASURE_DELAY_MS"]

logger = logging.getLogger(__name__)

#: How long after the last edit Measure starts (edits in between restart the wait).
MEASURE_DELAY_MS = 1000


class RunJob(Protocol):
    """The window's job runner (``QtMainWindow.run_job``): a catalogue name, its arguments, what to do with the result."""

    def __call__(self, name: str, kwargs: dict[str, Any], label: str, on_result: Callable[[Any], None],
                 kind: str | None = None, on_partial: Callable[[Any], None] | None = None) -> Any: ...


class QtLiveEngine(QObject):
    """Runs engine jobs for ``session`` through ``run_job``; tests may change the options.

    ``push_undo`` makes a plan change undoable (the window's ``QUndoStack.push``); ``set_status``
    shows one line to the user.
    """

    def __init__(self, session: Any, run_job: RunJob, push_undo: Callable[[QUndoCommand], None],
                 set_status: Callable[[str], None], parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self._run_job = run_job
        self._push_undo = push_undo
        self._set_status = set_status
        self.profile_options: Any = None  # engine.measure.profiler.ProfileOptions; None = its defaults
        self.sweep_settings: Any = None  # engine.evaluate.sensitivity.SweepSettings; None = its defaults
        self.sweep_structural = False  # the Jobs menu's check: sweep and tune also take prune:r / rank:f
        self.target: str | None = None  # a named remote target (gui/qt_target_menu.py), None: here
        self.providers: tuple[str, ...] = ()  # other execution providers profile and tune time routines on (Target menu)
        self.measure_repeats = 20
        self.max_drop = 0.01  # Tune's accuracy budget (metric units); the window keeps it in QSettings
        self.tune_options: Any = None  # engine.optimize.tune.TuneOptions for the effort; None = its defaults
        self.auto_measure = True
        self.prediction: Any = None  # engine.jobs.prediction.Prediction of the plan it was last computed for
        self.measured_plan: dict | None = None  # the plan (as JSON) the session's "current" was measured for
        self._measure_timer = QTimer(self)
        self._measure_timer.setSingleShot(True)
        self._measure_timer.setInterval(MEASURE_DELAY_MS)
        self._measure_timer.timeout.connect(self.measure)
        self._predictor = QtBackground(self, "layerlab-predict")  # pure Python over the tables: no ORT here
        self._requested = 0  # generation of the latest prediction request (plan, tables or budget changed)
        self._landed = 0  # generation of ``self.prediction``; equal to ``_requested``: it is current
        self._pending: Future | None = None
        self._measure_when_predicted = False
        self._tuned_route_for = -1  # a tune's measured route stands for this generation, not the prediction's
        self._callbacks = {
            "plan": lambda _: self._plan_changed(),
            "profile": lambda _: self._tables_changed(),
            "sensitivity": lambda _: self._tables_changed(),
        }
        self._links = connect_view(self.session.events, self._callbacks, "live engine")

    def close(self) -> None:
        self._measure_timer.stop()
        self._predictor.shutdown()
        self._links.disconnect()

    # --- what a job needs ---------------------------------------------------------------------

    def _model_args(self) -> dict[str, Any] | None:
        if self.session.graph is None or self.session.model_path is None:
            self._set_status("Open a model first.")
            return None
        return {"path": str(self.session.model_path), "input_shapes": dict(self.session.input_shapes)}

    def _evaluator(self, quiet: bool = False) -> str | None:
        """The evaluator path when one is set and the user agreed to run it."""
        path = self.session.evaluator_path
        if path is None or not self.session.evaluator_trusted:
            if not quiet:
                self._set_status("Sensitivity needs an evaluator (File ▸ Open evaluator…)" if path is None
                                       else f"{path.resolve()}: evaluator named by a session file, not run; "
                                            "open it yourself (File ▸ Open evaluator…) to run it")
            return None
        return str(path)

    # --- jobs ---------------------------------------------------------------------------------

    def model_opened(self) -> None:
        """Start what a freshly opened model needs: profile, then sensitivity when there is an evaluator."""
        self.prediction = None
        if self.session.profile is None:
            self.profile()
        if self.session.sensitivity is None and self._evaluator(quiet=True) is not None:
            self.sensitivity()

    @property
    def threads(self) -> int | None:
        """The one thread count of Profile, Measure and Tune: the profile options' (None: the physical cores)."""
        return getattr(self.profile_options, "threads", None)

    def profile(self) -> Any:
        args = self._model_args()
        if args is None:
            return None
        args["target"] = self.target
        args["providers"] = tuple(self.providers)  # their routine tables too (engine.measure.provider_tables)
        # timed on the evaluator's sample when there is one, as Measure and Tune are (engine.optimize.timing_feeds)
        args["evaluator"] = self._evaluator(quiet=True)
        return self._run_job(catalogue.PROFILE, {**args, "options": self.profile_options},
                             "Profiling", self.session.set_profile, kind="profile", on_partial=self._partial_profile)

    def sensitivity(self) -> Any:
        args, evaluator = self._model_args(), self._evaluator()
        if args is None or evaluator is None:
            return None
        return self._run_job(catalogue.SENSITIVITY, {**args, "evaluator": evaluator, "settings": self.sweep_settings,
                                                       "structural": self.sweep_structural},
                             "Sensitivity", self.session.set_sensitivity, kind="sensitivity",
                             on_partial=self._partial_sensitivity)

    def _partial_profile(self, profile: Any) -> None:
        """A cancelled profile keeps the routines it timed, once the fp32 run (the baseline) is among them."""
        if profile.end_to_end.median <= 0 or self.session.graph is None:
            return
        timed = sorted({r for lp in profile.layers for r in lp.routines})
        self.session.set_profile(profile)
        self._set_status(f"Profiling cancelled: kept fp32 and {', '.join(r for r in timed if r != 'fp32') or 'nothing else'}")

    def _partial_sensitivity(self, sensitivity: Any) -> None:
        """A cancelled sweep keeps the layers it finished; the status names how many are missing."""
        graph = self.session.graph
        if not sensitivity.layers or graph is None:
            return
        missing = [n.name for n in graph.layers if n.name not in sensitivity.layers]
        self.session.set_sensitivity(sensitivity)
        self._set_status(f"Sensitivity cancelled: kept {len(sensitivity.layers)} layers, "
                         f"{len(missing)} missing" + (f" ({', '.join(missing[:3])}{'…' * (len(missing) > 3)})"
                                                      if missing else ""))

    def tune(self) -> Any:
        """Tune within ``max_drop`` in the worker; the route lands as one undoable plan change plus its trials."""
        args, evaluator = self._model_args(), self._evaluator()
        if args is None or evaluator is None:
            return None
        plan = self.session.plan if self.session.plan is not None else Plan()
        # the tables the window already measured: tune measures only what they lack (no second sweep)
        kwargs = {**args, "evaluator": evaluator, "max_drop": self.max_drop, "plan_dict": plan.to_dict(),
                  "options": self.tune_options, "profile": self.session.profile,
                  "sensitivity": self.session.sensitivity, "threads": self.threads,
                  "structural": self.sweep_structural, "providers": tuple(self.providers)}
        return self._run_job(catalogue.TUNE, kwargs, f"Tuning (max drop {self.max_drop:g})",
                             lambda outcome: self._tuned(plan, outcome), kind="tune")

    def _tuned(self, before: Plan, outcome: Any) -> None:
        from dataclasses import replace

        session = self.session
        if outcome.profile is not session.profile:
            session.set_profile(outcome.profile)
        if outcome.sensitivity is not session.sensitivity:  # measured afresh or completed by tune
            session.set_sensitivity(outcome.sensitivity)
        # the route's routines pinned per layer; the user's prune/rank edits stay as they were
        layers = {}
        for n in session.graph.layers:  # int8@OpenVINO: precision int8, on OpenVINO
            base, where = split_routine(outcome.routines.get(n.name, "fp32"))
            layers[n.name] = replace(before.settings_for(n.name), precision=base, provider=None if where == CPU else where)
        after = Plan(default=before.default, layers={**before.layers, **layers}, ops=outcome.ops)
        # not in one batch: the plan's and tables' own handlers (prediction, baseline) must run before
        # the tune's measured baseline and route replace what they set
        self._push_undo(SetPlanCommand(session, session.plan, after, f"tune (max drop {self.max_drop:g})"))
        self._tuned_route_for = self._requested  # the prediction of ``after`` must not replace the route below
        session.set_baseline(outcome.baseline)
        for trial in outcome.trials:
            session.add_trial(trial)
        if outcome.calibration is not None:  # how the int8 variants behind these trials were calibrated
            session.set_calibration(outcome.calibration)
        session.set_route(outcome.route)
        if all(after.settings_for(n.name).prune is None and after.settings_for(n.name).rank is None
               for n in session.graph.layers):
            self._measure_timer.stop()  # tune measured exactly this variant
            self.measured_plan = after.to_dict()
            session.set_current(outcome.measured)
        drop = (outcome.baseline.metric or 0.0) - (outcome.measured.metric or 0.0)
        text = f"tuned: {outcome.measured.ms:.3f} ms (fp32 {outcome.baseline.ms:.3f} ms), drop {drop:.4g}"
        self._set_status(text + (f" — {outcome.note}" if outcome.note else ""))

    def plan_edited(self) -> None:
        """The user changed the plan (an undo-stack step): measure it soon."""
        self.schedule_measure()

    def schedule_measure(self) -> None:
        """Measure the current plan about a second from now (a newer edit restarts the wait)."""
        if self.auto_measure and self.session.graph is not None:
            self._measure_timer.start()

    def measure(self) -> Any:
        """Build the current plan's variant and measure it in the worker (replacing an earlier Measure).

        The variant is built from the prediction's routines: while that is still computing, Measure
        starts when it lands (returns None now)."""
        self._measure_timer.stop()
        args = self._model_args()
        if args is None:
            return None
        prediction = self.current_prediction()
        if prediction is None:
            self._measure_when_predicted = True
            if self._pending is None:  # else the prediction on its way measures
                self.predict()
            return None
        plan = self.session.plan if self.session.plan is not None else Plan()
        kwargs = {**args, "plan": plan.to_dict(), "routines": dict(prediction.routines),
                  "evaluator": self._evaluator(quiet=True), "repeats": self.measure_repeats, "threads": self.threads}
        return self._run_job(catalogue.MEASURE, kwargs, "Measuring",
                             lambda m: self._measured(plan, prediction, m), kind="measure")

    def _measured(self, plan: Plan, prediction: Any, outcome: Any) -> None:
        """A Measure (``engine.jobs.catalogue.PlanMeasurement``) lands as a trial; it becomes the Results'
        measured column only if the plan is still the one it was computed for."""
        baseline = self.session.baseline
        metric = None
        base_metric = outcome.baseline.metric if outcome.baseline.metric is not None else getattr(baseline, "metric", None)
        if prediction.drop is not None and base_metric is not None:
            metric = base_metric - prediction.drop
        predicted = Measurement(ms=prediction.latency_ms, metric=metric)
        current = (self.session.plan or Plan()).to_dict() == outcome.plan
        self.session.add_trial(Trial(outcome.plan, dict(prediction.routines), predicted, outcome.measured,
                                     label=f"trial {len(self.session.trials) + 1}" + ("" if current else " (older plan)")))
        if outcome.calibration is not None:  # the variant had int8: the report says how it was calibrated
            self.session.set_calibration(outcome.calibration)
        if not current:
            return  # the user moved on: a result for an older plan never lands on the new one
        self.measured_plan = outcome.plan
        # fp32 timed in turns with the variant in the same job: the measured speedup compares like with like
        self.session.set_baseline(replace(outcome.baseline, metric=base_metric,
                                          bytes=outcome.baseline.bytes or getattr(baseline, "bytes", None)))
        self.session.set_current(outcome.measured)  # last, so views showing "current" see the trial too
        warning = next((n for n in outcome.notes if "random inputs" in n), "")
        timed = f" Timed on {outcome.feeds}." if getattr(outcome, "feeds", "") else ""
        self._set_status(f"Measured.{timed}" + (f" {warning}" if warning else ""))

    def _plan_changed(self) -> None:
        """Every Results column refers to the current plan: a measurement of another plan is cleared."""
        plan = (self.session.plan or Plan()).to_dict()
        if self.measured_plan is not None and plan != self.measured_plan and self.session.current is not None:
            self.measured_plan = None
            self.session.set_current(None)
        self.predict()

    def show_trial(self, trial: Trial) -> None:
        """A restored trial was measured before: show its numbers instead of measuring again."""
        self._measure_timer.stop()
        self.measured_plan = dict(trial.plan)
        self.session.set_current(trial.measured)

    # --- the instant side ---------------------------------------------------------------------

    def _tables_changed(self) -> None:
        graph = self.session.graph
        if graph is not None:
            self.session.set_baseline(baseline_measurement(graph, self.session.profile, self.session.sensitivity))
        self.predict()

    def predicting(self) -> bool:
        """True while the prediction of the latest change has not landed."""
        return self._pending is not None and self._landed != self._requested

    def current_prediction(self) -> Any:
        """The prediction of the current plan and tables, or None while it is computing (or never asked)."""
        return self.prediction if self.prediction is not None and self._landed == self._requested else None

    def predict(self) -> None:
        """Recompute the route of the current plan from the cached tables (no ONNX Runtime) in a thread.

        The route lands in the session when it is done, unless a newer request came meanwhile."""
        self._requested += 1
        graph = self.session.graph
        if graph is None:
            self.prediction, self._landed = None, self._requested
            return
        plan = Plan.from_dict(self.session.plan.to_dict()) if self.session.plan is not None else Plan()  # a snapshot
        args = (graph, plan, self.session.profile, self.session.sensitivity, self.max_drop)
        if self._pending is not None:
            self._pending.cancel()  # not started yet: skip it (a started one finishes and is dropped)
        generation = self._requested
        self._pending = self._predictor.submit(lambda: predict_plan(*args),
                                               lambda result, error: self._predicted(generation, result, error))

    def predict_now(self) -> Any:
        """The current prediction, computed on this thread if it is not there yet (tests, one-off exports)."""
        current = self.current_prediction()
        if current is not None or self.session.graph is None:
            return current
        plan = self.session.plan if self.session.plan is not None else Plan()
        generation = self._requested
        try:
            result = predict_plan(self.session.graph, plan, self.session.profile, self.session.sensitivity, self.max_drop)
        except Exception as exc:  # a half-made table must not break editing
            self._failed(exc)
            return None
        self._land(generation, result)
        return result

    def _predicted(self, generation: int, result: Any, error: BaseException | None) -> None:
        """Back on the GUI thread: land the prediction if it is still the latest request."""
        if generation != self._requested or self._landed == generation:
            return  # an older plan's prediction (a newer one is on its way), or predict_now got there first
        self._pending = None
        if error is not None:  # a half-made table must not break editing
            self._failed(error)
            return
        self._land(generation, result)

    def _land(self, generation: int, result: Any) -> None:
        self.prediction, self._landed = result, generation
        if self._tuned_route_for != generation:
            self.session.set_route(result.route())
        if self._measure_when_predicted:
            self._measure_when_predicted = False
            self.measure()

    def _failed(self, exc: BaseException) -> None:
        logger.error("prediction failed", exc_info=exc)
        self._measure_when_predicted = False
        self._set_status(f"prediction failed: {exc}")

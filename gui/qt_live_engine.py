"""The live engine: Profile, Sensitivity, Tune and Measure jobs for the open model, and the instant prediction.

After a model opens, profiling starts (and the sensitivity sweep when an evaluator is set). Every
plan change recomputes the prediction from the cached tables at once (``engine.jobs.catalogue.predict_plan``,
shown as the session's route); every plan *edit* (an undo-stack step) also schedules a Measure about
a second later, replacing any earlier Measure. Jobs run in worker processes with picklable arguments
(model path, input shapes, options); results land in the session.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from PySide6.QtCore import QObject, QTimer

from engine.jobs.catalogue import baseline_measurement, predict_plan
from engine.model.plan import Plan
from engine.model.session import Measurement, Trial
from gui.plan_commands import SetPlanCommand

__all__ = ["QtLiveEngine", "MEASURE_DELAY_MS"]

logger = logging.getLogger(__name__)

#: How long after the last edit Measure starts (edits in between restart the wait).
MEASURE_DELAY_MS = 1000


class QtLiveEngine(QObject):
    """Runs engine jobs for ``window.session`` through ``window.run_job``; tests may change the options."""

    def __init__(self, window: Any) -> None:
        super().__init__(window)
        self.window = window
        self.session = window.session
        self.profile_options: Any = None  # engine.measure.profiler.ProfileOptions; None = its defaults
        self.sweep_settings: Any = None  # engine.evaluate.sensitivity.SweepSettings; None = its defaults
        self.measure_repeats = 20
        self.max_drop = 0.01  # Tune's accuracy budget (metric units); the window keeps it in QSettings
        self.tune_options: Any = None  # engine.optimize.tune.TuneOptions for the effort; None = its defaults
        self.auto_measure = True
        self.prediction: Any = None  # engine.jobs.catalogue.Prediction of the current plan
        self.measured_plan: dict | None = None  # the plan (as JSON) the session's "current" was measured for
        self._measure_timer = QTimer(self)
        self._measure_timer.setSingleShot(True)
        self._measure_timer.setInterval(MEASURE_DELAY_MS)
        self._measure_timer.timeout.connect(self.measure)
        self._callbacks = {
            "plan": lambda _: self._plan_changed(),
            "profile": lambda _: self._tables_changed(),
            "sensitivity": lambda _: self._tables_changed(),
        }
        for name, callback in self._callbacks.items():
            getattr(self.session.events, name).connect(callback)
        self._undo = window.undo_stack
        self._undo.indexChanged.connect(self._undo_changed)

    def close(self) -> None:
        self._measure_timer.stop()
        self._undo.indexChanged.disconnect(self._undo_changed)
        for name, callback in self._callbacks.items():
            getattr(self.session.events, name).disconnect(callback)

    # --- what a job needs ---------------------------------------------------------------------

    def _model_args(self) -> dict[str, Any] | None:
        if self.session.graph is None or self.session.model_path is None:
            self.window.set_status("Open a model first.")
            return None
        return {"path": str(self.session.model_path), "input_shapes": dict(self.session.input_shapes)}

    def _evaluator(self, quiet: bool = False) -> str | None:
        """The evaluator path when one is set and the user agreed to run it."""
        path = self.session.evaluator_path
        if path is None or not self.session.evaluator_trusted:
            if not quiet:
                self.window.set_status("Sensitivity needs an evaluator (File ▸ Open evaluator…)" if path is None
                                       else f"{path.name}: evaluator from a session file; open it yourself to run it")
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

    def profile(self) -> Any:
        args = self._model_args()
        if args is None:
            return None
        return self.window.run_job("engine.jobs.catalogue:profile_model_job", {**args, "options": self.profile_options},
                                   "Profiling", self.session.set_profile, kind="profile")

    def sensitivity(self) -> Any:
        args, evaluator = self._model_args(), self._evaluator()
        if args is None or evaluator is None:
            return None
        return self.window.run_job("engine.jobs.catalogue:sensitivity_model_job",
                                   {**args, "evaluator": evaluator, "settings": self.sweep_settings},
                                   "Sensitivity", self.session.set_sensitivity, kind="sensitivity")

    def tune(self) -> Any:
        """Tune within ``max_drop`` in the worker; the route lands as one undoable plan change plus its trials."""
        args, evaluator = self._model_args(), self._evaluator()
        if args is None or evaluator is None:
            return None
        plan = self.session.plan if self.session.plan is not None else Plan()
        kwargs = {**args, "evaluator": evaluator, "max_drop": self.max_drop, "plan_dict": plan.to_dict(),
                  "options": self.tune_options}
        return self.window.run_job("engine.jobs.catalogue:tune_model_job", kwargs, f"Tuning (max drop {self.max_drop:g})",
                                   lambda outcome: self._tuned(plan, outcome), kind="tune")

    def _tuned(self, before: Plan, outcome: Any) -> None:
        from dataclasses import replace

        session = self.session
        if session.profile is None:
            session.set_profile(outcome.profile)
        if session.sensitivity is None:
            session.set_sensitivity(outcome.sensitivity)
        # the route's routines pinned per layer; the user's prune/rank edits stay as they were
        layers = {n.name: replace(before.settings_for(n.name), precision=outcome.routines.get(n.name, "fp32"))
                  for n in session.graph.layers}
        after = Plan(default=before.default, layers={**before.layers, **layers}, ops=outcome.ops)
        self._undo.push(SetPlanCommand(session, session.plan, after, f"tune (max drop {self.max_drop:g})"))
        session.set_baseline(outcome.baseline)
        for trial in outcome.trials:
            session.add_trial(trial)
        session.set_route(outcome.route)
        if all(after.settings_for(n.name).prune is None and after.settings_for(n.name).rank is None
               for n in session.graph.layers):
            self._measure_timer.stop()  # tune measured exactly this variant
            self.measured_plan = after.to_dict()
            session.set_current(outcome.measured)
        drop = (outcome.baseline.metric or 0.0) - (outcome.measured.metric or 0.0)
        text = f"tuned: {outcome.measured.ms:.3f} ms (fp32 {outcome.baseline.ms:.3f} ms), drop {drop:.4g}"
        self.window.set_status(text + (f" — {outcome.note}" if outcome.note else ""))

    def _undo_changed(self, _index: int) -> None:
        try:
            edited = self._undo.count() > 0  # clear() (a new model) is not an edit
        except RuntimeError:  # the stack is being destroyed with the window
            return
        if edited:
            self.schedule_measure()

    def schedule_measure(self) -> None:
        """Measure the current plan about a second from now (a newer edit restarts the wait)."""
        if self.auto_measure and self.session.graph is not None:
            self._measure_timer.start()

    def measure(self) -> Any:
        """Build the current plan's variant and measure it in the worker (replacing an earlier Measure)."""
        self._measure_timer.stop()
        args = self._model_args()
        if args is None:
            return None
        plan = self.session.plan if self.session.plan is not None else Plan()
        prediction = self.prediction or predict_plan(self.session.graph, plan)
        kwargs = {**args, "plan": plan.to_dict(), "routines": dict(prediction.routines),
                  "evaluator": self._evaluator(quiet=True), "repeats": self.measure_repeats}
        return self.window.run_job("engine.jobs.catalogue:measure_plan_job", kwargs, "Measuring",
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
        if not current:
            return  # the user moved on: a result for an older plan never lands on the new one
        self.measured_plan = outcome.plan
        # fp32 timed in turns with the variant in the same job: the measured speedup compares like with like
        self.session.set_baseline(replace(outcome.baseline, metric=base_metric,
                                          bytes=outcome.baseline.bytes or getattr(baseline, "bytes", None)))
        self.session.set_current(outcome.measured)  # last, so views showing "current" see the trial too
        warning = next((n for n in outcome.notes if "random inputs" in n), "")
        if warning:
            self.window.set_status(f"Measured. {warning}")

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

    def predict(self) -> Any:
        """Recompute the route of the current plan from the cached tables (no ONNX Runtime)."""
        graph = self.session.graph
        if graph is None:
            self.prediction = None
            return None
        plan = self.session.plan if self.session.plan is not None else Plan()
        try:
            self.prediction = predict_plan(graph, plan, self.session.profile, self.session.sensitivity, self.max_drop)
        except Exception as exc:  # a half-made table must not break editing
            logger.exception("prediction failed")
            self.window.set_status(f"prediction failed: {exc}")
            return None
        self.session.set_route(self.prediction.route())
        return self.prediction

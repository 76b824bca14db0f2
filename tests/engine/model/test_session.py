"""The Session object: one event per field, dirty tracking, evaluator trust (no files, no Qt)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.model.session import Measurement, Session, Trial
from engine.io.session_file import UntrustedEvaluatorError


def test_each_setter_emits_its_own_event_and_marks_dirty() -> None:
    s = Session()
    seen: list[tuple[str, object]] = []
    for name in s.events.names:
        getattr(s.events, name).connect(lambda value, name=name: seen.append((name, value)))
    s.set_notes("hello")
    assert seen == [("notes", "hello"), ("dirty", True)] and s.dirty
    seen.clear()
    s.set_baseline(Measurement(ms=2.0))
    assert seen == [("baseline", Measurement(ms=2.0))]  # already dirty: no second dirty event
    s.mark_saved(Path("x.layerlab.json"))
    assert not s.dirty and seen[-1] == ("dirty", False)


def test_selection_is_view_state_and_does_not_dirty() -> None:
    s = Session()
    s.set_selection(("conv_0",))
    assert s.selection == ("conv_0",) and not s.dirty


def test_add_trial_replaces_the_list() -> None:
    s = Session()
    before = s.trials
    trial = Trial(plan={}, routines={"a": "int8"}, predicted=Measurement(ms=1.0))
    s.add_trial(trial)
    assert s.trials == [trial] and before == []
    assert Trial.from_json(trial.to_json()) == trial


def test_new_model_clears_results_of_the_old_one() -> None:
    s = Session()
    s.set_current(Measurement(ms=1.0))
    s.add_trial(Trial(plan={}, routines={}, predicted=Measurement()))
    s.set_model(Path("m.onnx"), graph=None, input_shapes={"x": (1, 3)})
    assert s.current is None and s.trials == [] and s.input_shapes == {"x": (1, 3)}


def test_profile_measured_here_replaces_the_recorded_machine() -> None:
    s = Session()
    s.machine = {"cpu": "elsewhere"}
    s.set_profile({"layers": []})
    assert s.machine is None


def test_evaluator_runs_only_when_trusted() -> None:
    s = Session()
    with pytest.raises(UntrustedEvaluatorError):
        s.require_trusted_evaluator()
    s.set_evaluator(Path("mine.py"))
    assert s.require_trusted_evaluator() == Path("mine.py")
    s.set_evaluator(Path("theirs.py"), trusted=False)
    with pytest.raises(UntrustedEvaluatorError, match="theirs.py"):
        s.require_trusted_evaluator()

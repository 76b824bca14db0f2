"""The Session object: one event per field, dirty tracking, evaluator trust (no files, no Qt)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.model.session import Measurement, Session, Trial
from engine.io.session_file import UntrustedEvaluatorError


def test_each_setter_emits_its_own_event_and_marks_dirty() -> None:
    s = Session()
    seen: list[tuple[str, object]] = []
    for name in s.events:
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


def test_the_signals_are_the_fields() -> None:
    assert sorted(Session().events) == sorted(Session.FIELDS)


def test_a_batch_announces_each_field_once_with_its_last_value() -> None:
    s = Session()
    seen: list[tuple[str, object]] = []
    for name in s.events:
        getattr(s.events, name).connect(lambda value, name=name: seen.append((name, value)))
    with s.batch():
        s.set_notes("a")
        with s.batch():  # nested: only the outer batch announces
            s.set_notes("b")
            s.add_trial(Trial(plan={}, routines={}, predicted=Measurement(ms=1.0)))
        assert seen == [] and s.notes == "b"  # the fields change at once; only the announcements wait
    assert seen == [("trials", s.trials), ("notes", "b"), ("dirty", True)]  # in Session.FIELDS order


def test_a_new_model_is_announced_after_the_old_results_are_gone() -> None:
    s = Session()
    s.set_current(Measurement(ms=1.0))
    state: list[object] = []
    s.events.model.connect(lambda _: state.append((s.current, s.trials)))
    s.events.current.connect(lambda _: state.append(s.graph))
    s.set_model(Path("m.onnx"), graph="g")
    assert state == [(None, []), "g"]  # each view sees the whole new state, whichever signal comes first


def test_a_closed_view_disconnects_from_every_field() -> None:
    s = Session()
    calls: list[object] = []
    callback = calls.append
    for name in ("plan", "notes"):
        getattr(s.events, name).connect(callback)
    s.events.disconnect(callback)
    s.set_notes("x")
    assert calls == [] and len(s.events.plan) == 0

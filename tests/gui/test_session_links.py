"""A bug in a view's session callback is logged once and never breaks the plan edit or job that emitted."""

from __future__ import annotations

import logging

from engine.model.plan import Plan
from engine.model.session import Session
from gui.plan_commands import SetPlanCommand
from gui.session_links import connect_view


def test_a_failing_callback_is_logged_once_and_the_others_still_run(caplog) -> None:
    session = Session()
    seen = []

    def broken(plan) -> None:
        raise ZeroDivisionError("view bug")

    links = connect_view(session.events, {"plan": broken}, "broken view")
    other = connect_view(session.events, {"plan": lambda plan: seen.append(plan)}, "other view")
    first, second = Plan.from_dict({"ops": "int8"}), Plan()
    with caplog.at_level(logging.DEBUG, logger="gui.session_links"):
        session.set_plan(first)  # raised EmitLoopError out of set_plan before the guard
        session.set_plan(second)
    assert session.plan is second and seen == [first, second]  # the emit went on to the next view
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "broken view on plan" in errors[0].getMessage()
    assert errors[0].exc_info[0] is ZeroDivisionError  # with its traceback
    assert any(r.levelno == logging.DEBUG and "again" in r.getMessage() for r in caplog.records)
    links.disconnect()
    links.disconnect()  # twice is harmless
    session.set_plan(first)
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 1  # disconnected: not called
    other.disconnect()


def test_a_broken_view_does_not_break_an_undoable_plan_edit(window, qtbot, monkeypatch, caplog) -> None:
    window.live.auto_measure = False
    name = window.session.graph.layers[0].name

    def broken() -> None:
        raise RuntimeError("badge bug")

    monkeypatch.setattr(window.graph_view, "_update_badges", broken)
    after = Plan.from_dict({"layers": {name: {"precision": "int8"}}})
    with caplog.at_level(logging.ERROR, logger="gui.session_links"):
        window.undo_stack.push(SetPlanCommand(window.session, window.session.plan, after, "int8"))
        qtbot.waitUntil(lambda: window.session.route is not None and window.session.route.routines[name] == "int8",
                        timeout=10_000)  # the live engine, connected after the view, still predicted
    assert window.session.plan is after and window.undo_stack.count() == 1
    assert [r.exc_info[0] for r in caplog.records if r.name == "gui.session_links"] == [RuntimeError]

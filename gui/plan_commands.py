"""Undoable plan edits: every change the user makes to the plan is a QUndoCommand calling ``session.set_plan``.

Plans are replaced, never mutated, so a command keeps the plan before and after as they are.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any, Callable, Iterable

from PySide6.QtGui import QUndoCommand

from engine.model.plan import LayerSettings, Plan

__all__ = ["SetPlanCommand", "edit_layers"]

logger = logging.getLogger(__name__)


class SetPlanCommand(QUndoCommand):
    """Replace the session's plan with ``after``; undo puts ``before`` back."""

    def __init__(self, session: Any, before: Plan | None, after: Plan, text: str) -> None:
        super().__init__(text)
        self.session = session
        self.before = before
        self.after = after

    def redo(self) -> None:
        self.session.set_plan(self.after)

    def undo(self) -> None:
        self.session.set_plan(self.before)


def edit_layers(plan: Plan | None, names: Iterable[str], change: Callable[[LayerSettings], LayerSettings]) -> Plan:
    """A new plan where each named layer's own entry is ``change(entry)``; ``plan`` is left as it was.

    A layer without an entry starts from one that inherits the default's precision and pruning,
    so editing one field does not silently pin the others.
    """
    plan = plan if plan is not None else Plan()
    layers = dict(plan.layers)
    for name in names:
        own = layers.get(name) or replace(plan.default, precision=None, rank=None)
        layers[name] = change(own)
    return Plan(default=plan.default, layers=layers)

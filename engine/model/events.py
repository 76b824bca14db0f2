"""The session's change signals, through psygnal (the Qt-free signal library napari uses).

``SessionEvents`` is a ``psygnal.SignalGroup`` with one signal per session field; each carries the
field's new value. Views connect to the fields they show (``session.events.plan.connect(cb)``) and
disconnect on close (``session.events.disconnect(cb)`` removes ``cb`` from every signal).

``batched(events)`` pauses every signal around a compound edit (a new model clears six fields; a
tune lands a plan, a baseline, trials and a route) and, on leaving, emits each signal that fired
once, with its last value, in field order: a view that listens to several fields repaints
once per field instead of once per intermediate state, and never sees a half-made session.
"""

from __future__ import annotations

import logging
import weakref
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

from psygnal import Signal, SignalGroup

__all__ = ["SessionEvents", "batched"]

logger = logging.getLogger(__name__)


class SessionEvents(SignalGroup):
    """One signal per ``engine.model.session.Session`` field, in ``Session.FIELDS`` order."""

    model = Signal(object)
    evaluator = Signal(object)
    plan = Signal(object)
    profile = Signal(object)
    sensitivity = Signal(object)
    route = Signal(object)
    baseline = Signal(object)
    current = Signal(object)
    trials = Signal(object)
    calibration = Signal(object)
    selection = Signal(object)
    notes = Signal(object)
    dirty = Signal(object)


_depth: "weakref.WeakKeyDictionary[SignalGroup, int]" = weakref.WeakKeyDictionary()


def _last(_earlier: tuple, later: tuple) -> tuple:
    return later


@contextmanager
def batched(events: SignalGroup, order: Sequence[str] = ()) -> Iterator[None]:
    """Hold every signal of ``events`` until the block ends; then each emits once, with its last value.

    The held signals emit in ``order`` (psygnal lists a group's signals alphabetically), then the rest.

    Batches nest: only the outermost one emits (psygnal's pause is not counted, so the depth is kept here).
    """
    depth = _depth.get(events, 0)
    _depth[events] = depth + 1
    names = [*order, *sorted(set(events) - set(order))]
    signals: list[Any] = [events[name] for name in names]
    if depth == 0:
        for signal in signals:
            signal.pause()
    try:
        yield
    finally:
        _depth[events] = depth
        if depth == 0:
            for signal in signals:
                signal.resume(reducer=_last)

"""Views' connections to the session's events: a bug in a view never breaks the engine code that emitted.

psygnal re-raises an exception from a callback inside ``emit()`` (as ``EmitLoopError``), so a broken
repaint would abort the engine job or plan edit that announced the change, and skip the views after
it. Every connection a view makes goes through ``connect_view``: the callback runs guarded, an
exception is logged with its traceback once per view, field and kind of error (later repeats at
debug level), and the emit goes on to the next callback.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["SessionLinks", "connect_view", "guarded"]

logger = logging.getLogger(__name__)


def guarded(callback: Callable[..., Any], where: str) -> Callable[..., None]:
    """``callback`` that logs (traceback once per kind of error) instead of raising; ``where`` names it in the log."""
    seen: set[tuple[type, str]] = set()

    def run(*args: Any) -> None:
        try:
            callback(*args)
        except Exception as exc:  # a view's bug: log it, let the emitter and the other views go on
            key = (type(exc), str(exc))
            if key in seen:
                logger.debug("%s failed again: %r", where, exc)
                return
            seen.add(key)
            logger.error("%s failed (the change itself went through): %r", where, exc, exc_info=exc)

    return run


class SessionLinks:
    """The guarded connections of one view to ``events`` (a psygnal ``SignalGroup``), by field name."""

    def __init__(self, events: Any, callbacks: Mapping[str, Callable[..., Any]], owner: str) -> None:
        self._events = events
        self._slots = {name: guarded(callback, f"{owner} on {name}") for name, callback in callbacks.items()}
        for name, slot in self._slots.items():
            getattr(events, name).connect(slot)

    def disconnect(self) -> None:
        """Stop listening (the view closes); calling it twice is harmless."""
        for name, slot in self._slots.items():
            getattr(self._events, name).disconnect(slot)
        self._slots = {}


def connect_view(events: Any, callbacks: Mapping[str, Callable[..., Any]], owner: str) -> SessionLinks:
    """Connect each ``callbacks[field]`` to ``events.<field>``, guarded; keep the result to disconnect."""
    return SessionLinks(events, callbacks, owner)

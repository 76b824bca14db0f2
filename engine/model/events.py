"""Plain-callback events: the engine announces changes without Qt (napari's pattern, without the library).

A model object owns one ``Event`` per field; views subscribe to what they show and disconnect on
close. Emitting calls the callbacks in order; a failing callback is logged and does not stop the rest,
so one broken view cannot block the session.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

__all__ = ["Event", "EventGroup"]

logger = logging.getLogger(__name__)

Callback = Callable[[Any], None]


class Event:
    """One announcement; callbacks receive the new value."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._callbacks: list[Callback] = []

    def connect(self, callback: Callback) -> Callback:
        """Call ``callback(value)`` on every emit; returns it so it can be used as a decorator."""
        if callback not in self._callbacks:
            self._callbacks.append(callback)
        return callback

    def disconnect(self, callback: Callback | None = None) -> None:
        """Stop calling ``callback`` (every callback when None); unknown callbacks are ignored."""
        if callback is None:
            self._callbacks.clear()
        elif callback in self._callbacks:
            self._callbacks.remove(callback)

    def emit(self, value: Any = None) -> None:
        """Call every connected callback with ``value``."""
        for callback in list(self._callbacks):
            try:
                callback(value)
            except Exception:  # one broken subscriber must not break the others
                logger.exception("callback for event %r failed", self.name)

    def __len__(self) -> int:
        return len(self._callbacks)


class EventGroup:
    """A named set of events, one per field: ``group.plan.connect(...)``."""

    def __init__(self, *names: str) -> None:
        self._names = names
        for name in names:
            setattr(self, name, Event(name))

    def disconnect_all(self, callback: Callback) -> None:
        """Remove ``callback`` from every event of the group (a closing view calls this)."""
        for name in self._names:
            getattr(self, name).disconnect(callback)

    @property
    def names(self) -> tuple[str, ...]:
        return self._names

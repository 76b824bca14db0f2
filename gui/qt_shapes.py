"""The input shapes and where they came from, always in sight: a permanent widget of the status bar.

Every figure the window shows was measured at these shapes, so they must not scroll away with the
next status message. The open job says how the dims it did not get were settled (the evaluator's
most frequent shape, batch 1); the shape dialog's answer is "given in the dialog"; a model opened
at shapes given on the command line or restored from a session file needs no note. The notes
belong to the graph they came with: another model clears them. Text only, no numerics.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

from PySide6.QtWidgets import QLabel

from gui.qt_shape_dialog import shapes_label

__all__ = ["QtShapes", "short_note"]

logger = logging.getLogger(__name__)

# The CLI's advice inside a resolve note; the window has its own way (File ▸ Open with the dialog)
_CLI_HINT = re.compile(r"\s*\(give --input or --dim to change it\)")


def short_note(note: str) -> str:
    """A resolve note as the status bar shows it: without the command-line hint."""
    return _CLI_HINT.sub("", note).strip()


class QtShapes(QLabel):
    """'inputs x=1x3x48x320 — batch dim of x set to 1; x: 1x3x48x320 from the evaluator's 36 sample(s)'."""

    def __init__(self, session: Any, parent: Any = None) -> None:
        super().__init__(parent)
        self.session = session
        self.setObjectName("input_shapes")
        self._graph: Any = None  # the graph the notes are about
        self._notes: list[str] = []
        self._callback = lambda _: self.refresh()
        session.events.model.connect(self._callback)
        self.refresh()

    def close_view(self) -> None:
        self.session.events.disconnect(self._callback)

    def set_notes(self, notes: Sequence[str]) -> None:
        """How the current model's open dims were settled (said once when it opened, kept here)."""
        self._graph = self.session.graph
        self._notes = [short_note(n) for n in notes if n]
        self.refresh()

    def refresh(self) -> None:
        graph = self.session.graph
        if graph is None:
            self.setText("")
            self.setToolTip("")
            return
        if graph is not self._graph:  # another model (or a session file): its own shapes, no stale notes
            self._graph, self._notes = graph, []
        shapes = "inputs " + shapes_label({t.name: t.shape for t in graph.inputs})
        text = shapes + (" — " + "; ".join(self._notes) if self._notes else "")
        self.setText(text)
        self.setToolTip("Every time and metric shown was measured at these input shapes.\n" + "\n".join([shapes, *self._notes]))

"""The input shapes and where they came from, always in sight: a permanent widget of the status bar.

Every figure the window shows was measured at these shapes, so they must not scroll away with the
next status message. Where each shape came from (given with --input or in the shape dialog, --dim,
the evaluator's most frequent shape, batch 1) is the session's ``shape_notes``: set when a model
opens, saved in the session file, so a reopened session shows them again. Text only, no numerics.
"""

from __future__ import annotations

import logging
import re
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
        self._callback = lambda _: self.refresh()
        session.events.model.connect(self._callback)
        self.refresh()

    def close_view(self) -> None:
        self.session.events.disconnect(self._callback)

    def refresh(self) -> None:
        graph = self.session.graph
        if graph is None:
            self.setText("")
            self.setToolTip("")
            return
        notes = [short_note(n) for n in self.session.shape_notes]
        shapes = "inputs " + shapes_label({t.name: t.shape for t in graph.inputs})
        text = shapes + (" — " + "; ".join(notes) if notes else "")
        self.setText(text)
        self.setToolTip("Every time and metric shown was measured at these input shapes.\n" + "\n".join([shapes, *notes]))

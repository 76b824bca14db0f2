"""The shape dialog: the window asks for the input dims a model leaves open instead of guessing them.

Opening a model whose dims neither ``--input``/``--dim`` nor the evaluator fix ends here
(``engine.jobs.catalogue.open_model`` returns them as ``missing``). Each input gets one field,
prefilled with what is known: fixed sizes, the batch as 1, and the other dims by their names
(``1x3x48xwidth``) for the user to replace with sizes. OK is enabled once every field is concrete.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence

from PySide6.QtWidgets import QDialog, QDialogButtonBox, QFormLayout, QLabel, QLineEdit, QVBoxLayout, QWidget

__all__ = ["QtShapeDialog", "ask_shapes", "parse_shape", "prefill", "shapes_label"]

logger = logging.getLogger(__name__)


def prefill(dims: Sequence[int | str | None]) -> str:
    """The field's first text: sizes where known, dim names where not, '?' for unnamed dims."""
    return "x".join("?" if d is None else str(d) for d in dims)


def parse_shape(text: str) -> tuple[int, ...] | None:
    """``1x3x48x320`` -> (1, 3, 48, 320); ``scalar`` -> (); None while any dim is not a positive size."""
    text = text.strip().lower()
    if text in ("scalar", "()", "[]"):
        return ()
    try:
        shape = tuple(int(d) for d in text.split("x"))
    except ValueError:
        return None
    return shape if shape and all(d > 0 for d in shape) else None


class QtShapeDialog(QDialog):
    """Asks the concrete shape of every input in ``missing`` (input -> dims, unresolved ones as names or None)."""

    def __init__(self, model_name: str, missing: Mapping[str, Sequence[int | str | None]],
                 known: Mapping[str, Sequence[int]] | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"Input shapes of {model_name}")
        self.setObjectName("shape_dialog")
        self.setMinimumWidth(440)
        self._known = {k: tuple(v) for k, v in dict(known or {}).items()}
        layout = QVBoxLayout(self)
        intro = QLabel(f"{model_name} leaves these input dims open. LayerLab measures at concrete shapes and "
                       "never guesses one: give each dim a size (e.g. 1x3x48x320). The batch is 1 unless you change it.")
        intro.setWordWrap(True)
        layout.addWidget(intro)
        form = QFormLayout()
        self.fields: dict[str, QLineEdit] = {}
        for name, dims in missing.items():
            field = QLineEdit(prefill(dims))
            field.setObjectName(f"shape_{name}")
            field.setToolTip(f"declared: {prefill(dims) or 'no shape'}")
            field.textChanged.connect(self._validate)
            form.addRow(name, field)
            self.fields[name] = field
        layout.addLayout(form)
        self.problem = QLabel("")
        self.problem.setObjectName("shape_problem")
        layout.addWidget(self.problem)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout.addWidget(self.buttons)
        self._validate()

    def shapes(self) -> dict[str, tuple[int, ...]] | None:
        """Every input's shape (the known ones too), or None while a field is not concrete."""
        out = dict(self._known)
        for name, field in self.fields.items():
            shape = parse_shape(field.text())
            if shape is None:
                return None
            out[name] = shape
        return out

    def _validate(self) -> None:
        bad = [name for name, field in self.fields.items() if parse_shape(field.text()) is None]
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(not bad)
        self.problem.setText(f"still open: {', '.join(bad)} (every dim a positive whole number)" if bad else "")


def ask_shapes(parent: QWidget, model_name: str, missing: Mapping[str, Sequence[int | str | None]],
               known: Mapping[str, Sequence[int]], on_shapes: Callable[[dict[str, tuple[int, ...]]], None]) -> QtShapeDialog:
    """Show the dialog window-modal without blocking; ``on_shapes`` gets every input's shape on OK."""
    dialog = QtShapeDialog(model_name, missing, known, parent)
    dialog.accepted.connect(lambda: on_shapes(dialog.shapes() or {}))
    dialog.open()
    return dialog


def shapes_label(shapes: Mapping[str, Sequence[int | str | None] | None]) -> str:
    """x=1x3x48x320, sr=scalar: how the title and the status line state the shapes in use."""
    return ", ".join(f"{k}={'?' if v is None else (prefill(v) or 'scalar')}" for k, v in shapes.items()) or "none"

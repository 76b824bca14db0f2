"""Finding and walking in the graph view: the Ctrl+F box and its matches, and arrow-key steps along the edges.

``QtGraphFind`` owns the search box floating over the view's top-right corner; ``step`` moves the
selection to a neighbour. Both only select through ``QtGraphView.select`` (the session hears of it).
"""

from __future__ import annotations

import logging
from typing import Any

from PySide6.QtCore import QObject, Qt
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import QLineEdit

__all__ = ["QtGraphFind", "step"]

logger = logging.getLogger(__name__)


class QtGraphFind(QObject):
    """The find box of ``view`` (a ``QtGraphView``): Enter goes to the next match, Esc closes."""

    def __init__(self, view: Any) -> None:
        super().__init__(view)
        self.view = view
        self.matches: list[str] = []
        self._index = 0
        self.box = QLineEdit(view)
        self.box.setPlaceholderText("find node or op (Enter: next, Esc: close)")
        self.box.setClearButtonEnabled(True)
        self.box.resize(320, 28)
        self.box.hide()
        self.box.textChanged.connect(self.search)
        self.box.returnPressed.connect(self.next_match)
        hide = QShortcut(QKeySequence("Escape"), self.box)
        hide.setContext(Qt.ShortcutContext.WidgetShortcut)
        hide.activated.connect(self.hide)

    def show(self) -> None:
        self.box.move(self.view.viewport().width() - self.box.width() - 12, 10)
        self.box.show()
        self.box.setFocus()
        self.box.selectAll()

    def hide(self) -> None:
        self.box.hide()
        self.view.setFocus()

    def search(self, text: str) -> list[str]:
        """Select every node whose name or op type contains ``text`` (case-insensitive); centre on the first."""
        needle = text.strip().lower()
        self.matches = [n for n, item in self.view.items.items()
                        if needle and (needle in n.lower() or needle in item.node.op_type.lower())]
        self._index = 0
        self.view.select(self.matches, centre=True)
        return self.matches

    def next_match(self) -> None:
        if self.matches:
            self._index = (self._index + 1) % len(self.matches)
            self.view.centerOn(self.view.items[self.matches[self._index]])


def step(view: Any, key: Any) -> str | None:
    """Move ``view``'s selection along an edge (up/down) or along its rank (left/right); returns the new node."""
    items = view.items
    current = view.session.selection[-1] if view.session.selection else None
    if current not in items:
        target = next(iter(items), None)
    else:
        x = items[current].pos().x()
        if key in (Qt.Key.Key_Up, Qt.Key.Key_Down):
            pool = view.preds[current] if key == Qt.Key.Key_Up else view.succs[current]
            target = min(pool, key=lambda n: abs(items[n].pos().x() - x), default=None)
        else:
            rank = view.ranks[current]
            row = sorted((n for n, r in view.ranks.items() if r == rank), key=lambda n: items[n].pos().x())
            i = row.index(current) + (1 if key == Qt.Key.Key_Right else -1)
            target = row[i] if 0 <= i < len(row) else None
    if target is not None:
        view.select([target], centre=True)
    return target

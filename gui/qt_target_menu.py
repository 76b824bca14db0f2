"""The Target menu: profile on this machine or on a named remote target (``layerlab agent``) from targets.json.

Picking a target makes the next profiles run there (``engine.jobs.catalogue.profile_model_job`` with
``target``) and re-profiles the open model; a permanent label in the status bar says where the numbers
come from. The list is read from the config file each time the menu opens, so edits show at once.
"""

from __future__ import annotations

import logging
from typing import Any

from PySide6.QtGui import QAction, QActionGroup
from PySide6.QtWidgets import QLabel

from engine.errors import LayerLabError
from engine.measure.targets import load_targets, targets_path

__all__ = ["QtTargetMenu"]

logger = logging.getLogger(__name__)

_HERE = "This machine"


class QtTargetMenu:
    """Builds the menu on ``window``'s menu bar and the status label; ``current`` is the target name or None."""

    def __init__(self, window: Any) -> None:
        self.window = window
        self.current: str | None = None
        self.menu = window.menuBar().addMenu("Tar&get")
        self.menu.aboutToShow.connect(self.rebuild)
        self.label = QLabel()
        self.label.setObjectName("target_label")
        window.statusBar().addPermanentWidget(self.label)
        self.group = QActionGroup(self.menu)
        self.rebuild()
        self._show()

    def rebuild(self) -> None:
        """The menu's entries: this machine, then every named target (the chosen one checked)."""
        self.menu.clear()
        self.group = QActionGroup(self.menu)
        try:
            names = sorted(load_targets())
        except LayerLabError as exc:
            names = []
            self.window.set_status(str(exc))
        for name in [None, *names]:
            action = QAction(_HERE if name is None else name, self.menu, checkable=True)
            action.setChecked(name == self.current)
            action.triggered.connect(lambda _=False, n=name: self.choose(n))
            self.group.addAction(action)
            self.menu.addAction(action)
        self.menu.addSeparator()
        info = self.menu.addAction(f"Targets are read from {targets_path()}")
        info.setEnabled(False)

    def choose(self, name: str | None) -> None:
        """Profile on ``name`` (None: here) from now on, and profile the open model there."""
        if name == self.current:
            return
        self.current = name
        self.window.live.target = name
        self._show()
        if self.window.session.graph is not None:
            self.window.live.profile()

    def _show(self) -> None:
        self.label.setText(f"Numbers from: {self.current or _HERE.lower()}")
        self.label.setToolTip("Profiles run on this target (Target menu)")

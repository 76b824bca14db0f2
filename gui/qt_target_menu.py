"""The Target menu: profile on this machine or on a named remote target (``layerlab agent``) from targets.json,
and which other execution providers to time routines on there.

Picking a target makes the next profiles run there (``engine.jobs.catalogue.profile_model_job`` with
``target``) and re-profiles the open model; a permanent label in the status bar says where the numbers
come from and on which providers. The list is read from the config file each time the menu opens, so
edits show at once.

*Execution providers* lists what the chosen target's ONNX Runtime has (asked in the worker by the
``providers`` job: the window never loads ONNX Runtime itself). Checking one adds its routine tables to
the profile (``fp32@<EP>``, ``int8@<EP>``: every layer's segment timed there, with the crossing costs) and
re-profiles; DPRS, the prediction and Tune may then place layers on it, and the Inspector shows each
layer's times per provider and lets the plan move it (an undoable plan edit).
"""

from __future__ import annotations

import logging
from typing import Any

from PySide6.QtGui import QAction, QActionGroup
from PySide6.QtWidgets import QLabel

from engine.errors import LayerLabError
from engine.jobs import catalogue
from engine.measure.providers import CPU, short_name
from engine.measure.targets import load_targets, targets_path

__all__ = ["QtTargetMenu"]

logger = logging.getLogger(__name__)

_HERE = "This machine"


class QtTargetMenu:
    """Builds the menu on ``window``'s menu bar and the status label; ``current`` is the target name or None,
    ``available`` the providers each target reported (None: this machine)."""

    def __init__(self, window: Any) -> None:
        self.window = window
        self.current: str | None = None
        self.available: dict[str | None, list[str]] = {}
        self._asking: set[str | None] = set()
        self.menu = window.menuBar().addMenu("Tar&get")
        self.menu.aboutToShow.connect(self.rebuild)
        self.label = QLabel()
        self.label.setObjectName("target_label")
        window.statusBar().addPermanentWidget(self.label)
        self.group = QActionGroup(self.menu)
        self.providers_menu = None
        self.rebuild()
        self._show()

    @property
    def providers(self) -> tuple[str, ...]:
        """The other execution providers profiles time routines on (the window's live engine keeps them)."""
        return tuple(self.window.live.providers)

    def rebuild(self) -> None:
        """The menu's entries: this machine, then every named target (the chosen one checked), then the
        chosen target's execution providers."""
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
        self.providers_menu = self.menu.addMenu("Execution providers")
        self.providers_menu.aboutToShow.connect(lambda: self._fill_providers(ask=True))
        self._fill_providers(ask=False)
        self.menu.addSeparator()
        info = self.menu.addAction(f"Targets are read from {targets_path()}")
        info.setEnabled(False)

    def _fill_providers(self, ask: bool) -> None:
        """The chosen target's providers, checkable; ``ask``: ask the target when they are not known yet."""
        menu = self.providers_menu
        menu.clear()
        cpu = menu.addAction(f"{short_name(CPU)} (always)")
        cpu.setCheckable(True)
        cpu.setChecked(True)
        cpu.setEnabled(False)
        known = self.available.get(self.current)
        if known is None:
            if ask:
                self.ask()
            menu.addAction("asking the target…" if self.current in self._asking else "(not asked yet)").setEnabled(False)
            return
        others = [p for p in known if p != CPU]
        if not others:
            menu.addAction("(no other provider on this target)").setEnabled(False)
        for p in others:
            action = menu.addAction(short_name(p))
            action.setCheckable(True)
            action.setChecked(p in self.providers)
            action.setToolTip(f"time every layer's segment on {p} too (fp32 and int8), and the crossings to CPU")
            action.toggled.connect(lambda on, p=p: self.toggle(p, on))

    def ask(self) -> None:
        """Ask the current target (in the worker) which execution providers its ONNX Runtime has."""
        target = self.current
        if target in self._asking or target in self.available:
            return
        self._asking.add(target)

        def landed(providers: list[str], target: str | None = target) -> None:
            self._asking.discard(target)
            self.set_available(target, providers)

        self.window.run_job(catalogue.PROVIDERS, {"target": target}, "Asking for execution providers", landed,
                            kind="providers")

    def set_available(self, target: str | None, providers: list[str]) -> None:
        """What ``target`` reported; providers it lacks are dropped from the chosen ones."""
        self.available[target] = list(providers)
        if target == self.current:
            kept = tuple(p for p in self.providers if p in providers)
            if kept != self.providers:
                self.window.live.providers = kept
                self._show()
            if self.providers_menu is not None:
                self._fill_providers(ask=False)

    def toggle(self, provider: str, on: bool) -> None:
        """Time routines on ``provider`` too (or no longer), and profile the open model again."""
        chosen = [p for p in self.providers if p != provider] + ([provider] if on else [])
        if tuple(chosen) == self.providers:
            return
        self.window.live.providers = tuple(chosen)
        self._show()
        if self.window.session.graph is not None:
            self.window.live.profile()

    def choose(self, name: str | None) -> None:
        """Profile on ``name`` (None: here) from now on, and profile the open model there."""
        if name == self.current:
            return
        self.current = name
        self.window.live.target = name
        known = self.available.get(name, [])  # the chosen providers carry over where the new target has them
        self.window.live.providers = tuple(p for p in self.providers if p in known)
        self._show()
        if self.window.session.graph is not None:
            self.window.live.profile()

    def _show(self) -> None:
        where = self.current or _HERE.lower()
        on = ", ".join(short_name(p) for p in (CPU, *self.providers))
        self.label.setText(f"Numbers from: {where} · {on}")
        self.label.setToolTip("Profiles run on this target, with routines on these execution providers (Target menu)")

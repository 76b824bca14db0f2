"""The Inspector's execution-provider row: the selected layer's routine times on each provider the profile
timed, which provider the plan runs it on, and a combo to move it (the Inspector makes that an undoable
plan edit).

The times come from the session's profile (``fp32@OpenVINO``: the layer's segment timed on OpenVINO,
``engine.measure.provider_tables``); the plan's ``provider`` field says where a layer runs (None: CPU).
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from PySide6.QtWidgets import QComboBox, QLabel

from engine.measure.providers import CPU, short_name, split_routine

__all__ = ["QtProviderRow", "provider_times"]

logger = logging.getLogger(__name__)


def provider_times(routines: dict[str, float]) -> dict[str, dict[str, float]]:
    """provider -> base routine -> ms from a layer's routine table (CPU first, then the others by name)."""
    out: dict[str, dict[str, float]] = {CPU: {}}
    for routine, ms in routines.items():
        base, provider = split_routine(routine)
        if base in ("fp32", "int8", "int8_dynamic", "fp16"):
            out.setdefault(provider, {})[base] = float(ms)
    return {p: out[p] for p in sorted(out, key=lambda p: (p != CPU, p))}


class QtProviderRow:
    """A combo (CPU + the providers the profile timed this layer on) and a label with the times per provider.

    ``on_chosen(provider)`` gets the full provider name, None for CPU, when the user picks one."""

    def __init__(self, on_chosen: Callable[[str | None], None]) -> None:
        self.combo = QComboBox()
        self.combo.setToolTip("where this layer (and the ops after it up to the next layer) runs")
        self.combo.activated.connect(lambda i: on_chosen(self._provider(i)))
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setObjectName("provider_times")

    def _provider(self, index: int) -> str | None:
        provider = self.combo.itemData(index)
        return None if provider == CPU else provider

    def show(self, routines_by_layer: dict[str, dict[str, float]], chosen: dict[str, str | None]) -> None:
        """Fill for the selected layers: their routine tables (layer -> routine -> ms) and plan providers."""
        providers = [CPU]
        for table in routines_by_layer.values():
            providers += [p for p in provider_times(table) if p not in providers]
        self.combo.clear()
        for p in providers:
            self.combo.addItem(short_name(p), p)
        current = {p or CPU for p in chosen.values()}
        for p in current - set(providers):  # the plan names a provider the profile has no times for
            self.combo.addItem(f"{short_name(p)} (not profiled)", p)
        self.combo.setCurrentIndex(self.combo.findData(current.pop()) if len(current) == 1 else -1)
        self.combo.setPlaceholderText("(mixed)")
        self.combo.setEnabled(len(providers) > 1 or self.combo.count() > 1)
        self.label.setText(self._text(routines_by_layer, chosen))
        self.label.setVisible(bool(self.label.text()))

    @staticmethod
    def _text(routines_by_layer: dict[str, dict[str, float]], chosen: dict[str, str | None]) -> str:
        if len(routines_by_layer) != 1:
            return ""
        (name, table), = routines_by_layer.items()
        times = provider_times(table)
        if len(times) < 2:
            return ""
        plan = chosen.get(name) or CPU
        rows = [f"{'▶ ' if p == plan else ''}{short_name(p)}: " + ", ".join(f"{b} {ms:.3f} ms" for b, ms in t.items())
                for p, t in times.items()]
        return "per provider (segment times):\n" + "\n".join(rows) + f"\nplan: runs on {short_name(plan)}"

    def clear(self) -> None:
        self.combo.clear()
        self.combo.setEnabled(False)
        self.label.setText("")
        self.label.hide()

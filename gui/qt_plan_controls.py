"""Plan-wide controls of the window: Tune's max-drop box (toolbar), the ops-precision toggle (Edit menu)
and the structural check of the sweep and tune (Jobs menu).

They act on the live engine and the session's plan, not on a layer, so they live apart from the
inspector; the ops toggle is an undoable plan edit and follows the plan when it changes. The max drop
and the structural check are job options, not plan edits: like the max drop, the check is remembered
in QSettings (nothing to undo; the next Sensitivity run uses it).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from PySide6.QtCore import QObject
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QDoubleSpinBox

from engine.model.plan import Plan
from gui.plan_commands import SetPlanCommand

__all__ = ["QtPlanControls"]

logger = logging.getLogger(__name__)


class QtPlanControls(QObject):
    """Builds ``max_drop_box`` and ``ops_action`` for ``window`` (a QtMainWindow)."""

    def __init__(self, window: Any) -> None:
        super().__init__(window)
        self.window = window
        self.max_drop_box = self._max_drop_box()
        self.ops_action = QAction("Quantize &ops between layers too (int8)", window)
        self.ops_action.setCheckable(True)
        self.ops_action.setToolTip("The plan's ops: Add, Concat, pooling … in int8 as whole-model quantization "
                                   "does; fewer conversions, maybe less accuracy (measured, not predicted)")
        self.ops_action.triggered.connect(self._toggle_ops)
        self.structural_action = self._structural_action()

    def _max_drop_box(self) -> QDoubleSpinBox:
        """Tune's accuracy budget, in the metric's units, remembered in QSettings."""
        box = QDoubleSpinBox()
        box.setPrefix("max drop ")
        box.setDecimals(4)
        box.setRange(0.0, 1e6)
        box.setSingleStep(0.005)
        box.setToolTip("Tune's accuracy budget: the largest metric drop allowed (0.01 = one point of accuracy)")
        box.setValue(float(self.window.settings.value("tune/max_drop", 0.01)))
        self.window.live.max_drop = box.value()
        box.valueChanged.connect(self._max_drop_changed)
        return box

    def _max_drop_changed(self, value: float) -> None:
        self.window.live.max_drop = float(value)
        self.window.settings.setValue("tune/max_drop", float(value))
        self.window.live.predict()  # auto layers are chosen within the budget

    def _structural_action(self) -> QAction:
        """Whether Sensitivity also measures prune:0.25/0.5 and rank:0.25/0.5 (one evaluation per variant)
        and Tune may choose them (``tune --structural``)."""
        action = QAction("Sweep and tune with &structural variants (prune, rank)", self.window)
        action.setCheckable(True)
        action.setToolTip("Sensitivity also measures the drop of pruning each prune group by 25 % and 50 % and of "
                          "factoring each layer at two ranks (one whole evaluation per variant: slower), and Tune "
                          "may choose them (each variant timed end to end)")
        on = str(self.window.settings.value("sweep/structural", "false")).lower() == "true"
        action.setChecked(on)
        self.window.live.sweep_structural = on
        action.toggled.connect(self._structural_changed)
        return action

    def _structural_changed(self, checked: bool) -> None:
        self.window.live.sweep_structural = bool(checked)
        self.window.settings.setValue("sweep/structural", "true" if checked else "false")
        self.window.set_status("The next sweep and tune take structural variants too (prune, rank)" if checked
                               else "The next sweep and tune take precisions only")

    def _toggle_ops(self, checked: bool) -> None:
        """The plan's ops precision follows the check, as an undoable edit."""
        session = self.window.session
        before = session.plan if session.plan is not None else Plan()
        ops = "int8" if checked else "fp32"
        if before.ops != ops:
            self.window.undo_stack.push(SetPlanCommand(session, session.plan, replace(before, ops=ops), f"ops {ops}"))

    def sync(self, *_: Any) -> None:
        """Check the toggle when the session's plan quantizes its ops."""
        plan = self.window.session.plan
        self.ops_action.setChecked(plan is not None and plan.ops == "int8")

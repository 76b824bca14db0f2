"""The inspector: facts of the selected layer(s), per-routine latency and drop bars, and the plan controls.

Every control edit becomes a ``SetPlanCommand`` on the window's undo stack; the inspector itself only
repaints from the session (selection, plan, profile, sensitivity). Settings that cannot apply are
disabled and the reason is shown under the controls and in the tooltip.
"""

from __future__ import annotations

import html
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QUndoStack
from PySide6.QtWidgets import (QCheckBox, QComboBox, QFormLayout, QGroupBox, QHBoxLayout, QLabel, QSlider,
                               QVBoxLayout, QWidget)

from engine.jobs import catalogue
from engine.model.plan import PRUNE_MODES, Plan, PruneSettings
from gui.colour_modes import layers_by_name, sensitivity_drop
from gui.graph_items import shape_label
from gui.layer_options import PRECISION_ORDER, RankInfo, facts_for, layer_options, rank_info, store_facts
from gui.plan_commands import SetPlanCommand, edit_layers
from engine.measure.providers import CPU, short_name
from gui.qt_provider_row import QtProviderRow
from gui.session_links import connect_view

__all__ = ["QtInspector"]

logger = logging.getLogger(__name__)

# the rank slider's curve: of the weight alone, or of the layer's output on the evaluator's calibration data
ENERGY_TITLES = {False: "energy kept vs rank (weights)", True: "energy kept vs rank (on calibration data)"}


def _bar_plot(title: str, unit: str) -> pg.PlotWidget:
    plot = pg.PlotWidget(background="w")
    plot.setTitle(title, size="9pt")
    plot.setLabel("left", unit)
    plot.setFixedHeight(140)
    plot.setMouseEnabled(False, False)
    plot.hideButtons()
    return plot


class QtInspector(QWidget):
    """Shows and edits the layers in ``session.selection``; edits go on ``undo_stack``."""

    def __init__(self, session: Any, undo_stack: QUndoStack, parent: Any = None) -> None:
        super().__init__(parent)
        self.session = session
        self.undo_stack = undo_stack
        self._updating = False
        self.title = QLabel()
        self.title.setWordWrap(True)
        self.title.setTextFormat(Qt.TextFormat.RichText)
        self.facts = QLabel()
        self.facts.setWordWrap(True)
        self.facts.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.latency_plot = _bar_plot("latency by routine", "ms")
        self.drop_plot = _bar_plot("accuracy drop by routine", "drop")
        self.results_note = QLabel()
        self.results_note.setStyleSheet("color: #666")

        self.precision = QComboBox()
        for p in PRECISION_ORDER:
            self.precision.addItem(p, p)
        self.precision.activated.connect(self._precision_chosen)
        self.provider = QtProviderRow(self._provider_chosen)
        self.prune = QSlider(Qt.Orientation.Horizontal)
        self.prune.setRange(0, 95)
        self.prune.setSingleStep(5)
        self.prune.setPageStep(10)
        self.prune_label = QLabel("0%")
        self.prune_mode = QComboBox()
        for m in PRUNE_MODES:
            self.prune_mode.addItem(m, m)
        self.prune.valueChanged.connect(self._prune_moved)
        self.prune.sliderReleased.connect(self._prune_commit)
        self.prune_mode.activated.connect(lambda _: self._prune_commit())
        self.rank_on = QCheckBox("factor (truncated SVD)")
        self.rank_on.clicked.connect(self._rank_toggled)
        self.rank = QSlider(Qt.Orientation.Horizontal)
        self.rank.setRange(1, 1)
        self.rank_label = QLabel("-")
        self.rank.valueChanged.connect(self._rank_moved)
        self.rank.sliderReleased.connect(self._rank_commit)
        self.energy_plot = pg.PlotWidget(background="w")
        self.energy_plot.setFixedHeight(130)
        self.energy_plot.setTitle(ENERGY_TITLES[False], size="9pt")
        self.energy_plot.setMouseEnabled(False, False)
        self.energy_plot.hideButtons()
        self._energy_curve = self.energy_plot.plot(pen=pg.mkPen("#4c78a8", width=2))
        self._rank_line = pg.InfiniteLine(angle=90, pen=pg.mkPen("#e45756", width=2))
        self._even_line = pg.InfiniteLine(angle=90, pen=pg.mkPen("#888", style=Qt.PenStyle.DashLine))
        self.energy_plot.addItem(self._rank_line)
        self.energy_plot.addItem(self._even_line)
        self.reasons = QLabel()
        self.reasons.setWordWrap(True)
        self.reasons.setStyleSheet("color: #a05000")

        prune_row = QHBoxLayout()
        prune_row.addWidget(self.prune, 1)
        prune_row.addWidget(self.prune_label)
        prune_row.addWidget(self.prune_mode)
        rank_row = QHBoxLayout()
        rank_row.addWidget(self.rank, 1)
        rank_row.addWidget(self.rank_label)
        form = QFormLayout()
        form.addRow("Precision", self.precision)
        form.addRow("Provider", self.provider.combo)
        form.addRow("Prune", prune_row)
        form.addRow("Low rank", self.rank_on)
        form.addRow("Rank", rank_row)
        self.controls = QGroupBox("Plan")
        box = QVBoxLayout(self.controls)
        box.addLayout(form)
        box.addWidget(self.energy_plot)
        box.addWidget(self.reasons)
        layout = QVBoxLayout(self)
        for w in (self.title, self.facts, self.latency_plot, self.drop_plot, self.results_note, self.provider.label,
                  self.controls):
            layout.addWidget(w)
        layout.addStretch(1)

        self._run_job: Callable[..., Any] | None = None
        self._callbacks = {name: (lambda _: self.refresh()) for name in ("selection", "plan", "profile", "sensitivity")}
        self._callbacks["model"] = self._model_changed
        self._callbacks["evaluator"] = lambda _: self._request_facts()  # its calibration: data-aware energy
        self._facts_job: tuple[Any, tuple] | None = None  # the layer-options job asked for, and for what
        self._links = connect_view(session.events, self._callbacks, "inspector")
        self.refresh()

    def attach_jobs(self, run_job: Callable[..., Any]) -> None:
        """Use the window's ``run_job`` to compute layer options in the worker (once per model, cached)."""
        self._run_job = run_job
        self._request_facts()

    def _model_changed(self, _: Any) -> None:
        self._request_facts()
        self.refresh()

    def _request_facts(self) -> None:
        graph, path = self.session.graph, self.session.model_path
        if self._run_job is None or graph is None or path is None:
            return
        evaluator = self.session.evaluator_path if self.session.evaluator_trusted else None
        evaluator = None if evaluator is None else str(evaluator)
        facts = facts_for(graph)
        if facts is not None and facts.complete and getattr(facts, "evaluator", None) == evaluator:
            return
        request = (graph.sha256, str(path), dict(self.session.input_shapes), evaluator)
        if self._facts_job is not None and self._facts_job[1] == request and getattr(self._facts_job[0], "running", False):
            return  # already on its way (a reopened session of the same model)
        job = self._run_job(catalogue.LAYER_FACTS,
                            {"path": str(path), "input_shapes": request[2], "evaluator": evaluator},
                            "Layer options", self._facts_arrived, kind="layer_facts")
        self._facts_job = (job, request)

    def _facts_arrived(self, facts: Any) -> None:
        store_facts(facts)
        if self.session.graph is not None and facts.sha256 == self.session.graph.sha256:
            self.refresh()

    def close_view(self) -> None:
        self._links.disconnect()

    # --- what is selected -------------------------------------------------------------------------

    @property
    def layers(self) -> list[str]:
        """The selected nodes that are layers (ops in the selection cannot be tuned)."""
        graph = self.session.graph
        if graph is None:
            return []
        tunable = {n.name for n in graph.layers}
        return [n for n in self.session.selection if n in tunable]

    def _plan(self) -> Plan:
        return self.session.plan if self.session.plan is not None else Plan()

    # --- repaint ----------------------------------------------------------------------------------

    def refresh(self) -> None:
        self._updating = True
        try:
            self._show_facts()
            self._show_results()
            self._show_controls()
        finally:
            self._updating = False

    def _show_facts(self) -> None:
        graph, selection = self.session.graph, self.session.selection
        if graph is None:
            self.title.setToolTip("")
            self.title.setText("<b>No model</b>")
            self.facts.setText("Open a model with File ▸ Open or drop an .onnx file on the window.")
            return
        self.title.setToolTip(graph.label if graph.path else "")  # the full path; the title shows its file name
        if not selection:
            self.title.setText(f"<b>{html.escape(Path(graph.path).name if graph.path else graph.label)}</b>")
            self.facts.setText(f"{len(graph.nodes)} nodes, {len(graph.layers)} layers. Select a node to inspect it.")
            return
        if len(selection) > 1:
            self.title.setText(f"<b>{len(selection)} nodes selected</b> ({len(self.layers)} layers)")
            names = ", ".join(selection[:8]) + (" …" if len(selection) > 8 else "")
            self.facts.setText(f"Edits apply to every selected layer.\n{names}")
            return
        node = graph.node(selection[0])
        kind = "layer" if node.tunable else "op (not tunable)"
        self.title.setText(f"<b>{html.escape(node.name)}</b><br>{html.escape(node.op_type)} · {kind}")
        ins = [shape_label(graph.tensors[t].shape) if t in graph.tensors else "?" for t in node.inputs if t]
        lines = [
            f"inputs: {', '.join(ins) or '-'}",
            f"outputs: {', '.join(shape_label(s) for s in node.out_shapes) or '-'}",
            f"MACs: {node.macs:,}" if node.macs is not None else "MACs: unknown",
            f"params: {node.params:,} ({node.weight_bytes:,} bytes)",
            f"category: {node.category}",
        ]
        settings = self.session.plan.settings_for(node.name) if self.session.plan is not None else None
        if settings is not None and settings.precision == "int8":
            lines.append(f"int8 calibration: {settings.calibration or 'minmax'}")
            if settings.cle:
                lines.append("cross-layer equalization: with the Conv that feeds it")
            if settings.smoothquant is not None:
                lines.append(f"SmoothQuant: alpha {settings.smoothquant:g} (activation outliers moved into the weights)")
            if settings.symmetric:
                lines.append("activations: symmetric ranges (uint8, zero point 128)")
            if settings.bias_correction:
                lines.append("bias correction: on the calibration samples")
        self.facts.setText("\n".join(lines))

    def _show_results(self) -> None:
        selection = self.session.selection
        name = selection[0] if len(selection) == 1 else None
        notes = []
        profile = layers_by_name(getattr(self.session.profile, "layers", None))
        entry = profile.get(name) if name else None
        routines = dict(getattr(entry, "routines", {}) or {}) if entry is not None else {}
        self._bars(self.latency_plot, routines, "#4c78a8")
        if name and not profile:
            notes.append("not profiled yet")
        sens = getattr(self.session.sensitivity, "layers", None) or {}
        ls = sens.get(name) if name else None
        drops = dict(getattr(ls, "drops", {}) or {}) if ls is not None else {}
        self._bars(self.drop_plot, drops, "#e45756")
        if name and not sens:
            notes.append("no sensitivity yet")
        elif ls is not None and sensitivity_drop(ls) and getattr(ls, "sqnr_db", None) is not None:
            sqnr = ls.sqnr_db.get("int8") if isinstance(ls.sqnr_db, dict) else ls.sqnr_db  # engine: per routine
            if sqnr is not None:
                notes.append(f"int8 SQNR {float(sqnr):.1f} dB")
        self.results_note.setText(" · ".join(notes))
        self.results_note.setVisible(bool(notes))

    @staticmethod
    def _bars(plot: pg.PlotWidget, values: dict[str, float], colour: str) -> None:
        plot.clear()
        plot.setVisible(bool(values))
        if not values:
            return
        names = list(values)
        heights = [float(values[n]) for n in names]
        plot.addItem(pg.BarGraphItem(x=list(range(len(names))), height=heights, width=0.6, brush=colour))
        plot.getAxis("bottom").setTicks([[(i, n) for i, n in enumerate(names)]])

    def _show_controls(self) -> None:
        layers, graph = self.layers, self.session.graph
        self.controls.setEnabled(bool(layers))
        if not layers:
            self.controls.setTitle("Plan (select a layer)" if graph is not None else "Plan")
            self.provider.clear()
            self.reasons.setText("")
            self.energy_plot.hide()
            return
        self.controls.setTitle("Plan" if len(layers) == 1 else f"Plan ({len(layers)} layers)")
        options = layer_options(graph, layers)
        plan = self._plan()
        settings = [plan.settings_for(n) for n in layers]
        reasons = []
        model = self.precision.model()
        for i, p in enumerate(PRECISION_ORDER):
            blocked = options.precision_blocked.get(p, "")
            model.item(i).setEnabled(not blocked)
            model.item(i).setToolTip(blocked or ("fp16 has no CPU kernels: it runs as fp32 on CPU" if p == "fp16" else ""))
            if blocked:
                reasons.append(f"{p}: {blocked}")
        precisions = {s.precision for s in settings}
        self.precision.setCurrentIndex(PRECISION_ORDER.index(precisions.pop()) if len(precisions) == 1 else -1)
        self.precision.setPlaceholderText("(mixed)")
        profile = layers_by_name(getattr(self.session.profile, "layers", None))
        self.provider.show({n: dict(getattr(profile.get(n), "routines", {}) or {}) for n in layers},
                           {n: s.provider for n, s in zip(layers, settings)})

        ratios = {round(100 * s.prune.ratio) if s.prune else 0 for s in settings}
        modes = {s.prune.mode for s in settings if s.prune}
        has_rank = any(s.rank is not None for s in settings)
        prune_reason = options.prune_blocked or ("remove the rank first: pruning or a rank, not both" if has_rank else "")
        self.prune.setEnabled(not prune_reason)
        self.prune_mode.setEnabled(not prune_reason)
        self.prune.setToolTip(prune_reason)
        self.prune.setValue(max(ratios) if ratios else 0)
        self.prune_label.setText(f"{self.prune.value()}%" if len(ratios) == 1 else "mixed")
        for i, m in enumerate(PRUNE_MODES):
            blocked = options.mode_blocked.get(m, "")
            self.prune_mode.model().item(i).setEnabled(not blocked)
            self.prune_mode.model().item(i).setToolTip(blocked)
            if blocked:
                reasons.append(f"{m} pruning: {blocked}")
        self.prune_mode.setCurrentIndex(PRUNE_MODES.index(modes.pop()) if len(modes) == 1 else 0)
        if prune_reason:
            reasons.append(f"prune: {prune_reason}")

        pruned = any(s.prune is not None and s.prune.ratio > 0 for s in settings)
        rank_reason = options.rank_blocked or ("remove pruning first: pruning or a rank, not both" if pruned else "")
        info = rank_info(graph, layers[0]) if not options.rank_blocked else None
        self.rank_on.setEnabled(not rank_reason)
        self.rank_on.setToolTip(rank_reason)
        self.rank_on.setChecked(has_rank)
        self.rank.setEnabled(not rank_reason and has_rank)
        if isinstance(info, RankInfo):
            self.rank.setRange(1, info.max_rank)
            self.rank.setValue(settings[0].rank or self._suggested_rank(info))
            self.rank_label.setText(f"{self.rank.value()} / {info.max_rank}" if has_rank else "off")
            self._energy_curve.setData(list(range(1, len(info.energy) + 1)), list(info.energy))
            self.energy_plot.setTitle(ENERGY_TITLES[bool(getattr(info, "data_aware", False))], size="9pt")
            self._even_line.setValue(info.break_even)
            self._rank_line.setValue(self.rank.value())
            self._rank_line.setVisible(has_rank)
            self.energy_plot.show()
        else:
            self.rank_label.setText("-")
            self.energy_plot.hide()
        if rank_reason:
            reasons.append(f"rank: {rank_reason}")
        self.reasons.setText("\n".join(reasons))
        self.reasons.setVisible(bool(reasons))

    @staticmethod
    def _suggested_rank(info: RankInfo) -> int:
        """The smallest rank keeping 90% of the energy, within the allowed range."""
        k = next((i + 1 for i, e in enumerate(info.energy) if e >= 0.9), info.max_rank)
        return max(1, min(k, info.max_rank))

    # --- edits ------------------------------------------------------------------------------------

    def _push(self, text: str, change: Any) -> None:
        layers = self.layers
        if self._updating or not layers:
            return
        before = self.session.plan
        after = edit_layers(before, layers, change)
        if before is not None and after.to_dict() == before.to_dict():
            return
        target = layers[0] if len(layers) == 1 else f"{len(layers)} layers"
        self.undo_stack.push(SetPlanCommand(self.session, before, after, f"{text} of {target}"))

    def _precision_chosen(self, index: int) -> None:
        precision = self.precision.itemData(index)
        self._push(f"Set precision {precision}", lambda s: replace(s, precision=precision))

    def _provider_chosen(self, provider: str | None) -> None:
        where = short_name(provider or CPU)
        self._push(f"Run on {where}", lambda s: replace(s, provider=provider))

    def _prune_moved(self, value: int) -> None:
        self.prune_label.setText(f"{value}%")
        if not self._updating and not self.prune.isSliderDown():
            self._prune_commit()  # keyboard and page steps commit at once; drags on release

    def _prune_commit(self) -> None:
        ratio = self.prune.value() / 100
        mode = self.prune_mode.currentData()
        prune = PruneSettings(ratio, mode) if ratio > 0 else None
        self._push(f"Prune {self.prune.value()}% {mode}", lambda s: replace(s, prune=prune))

    def _rank_toggled(self, on: bool) -> None:
        rank = self.rank.value() if on else None
        self._push("Set rank" if on else "Remove rank", lambda s: replace(s, rank=rank))

    def _rank_moved(self, value: int) -> None:
        self.rank_label.setText(f"{value} / {self.rank.maximum()}")
        self._rank_line.setValue(value)
        if not self._updating and not self.rank.isSliderDown():
            self._rank_commit()

    def _rank_commit(self) -> None:
        rank = self.rank.value()
        self._push(f"Set rank {rank}", lambda s: replace(s, rank=rank))

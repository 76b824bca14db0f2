"""The optimization report as a document: a list of blocks both renderers draw.

``build_report(session)`` turns a session into a list of blocks (headings, facts, tables, figures,
code); ``engine.report.html.render_html`` and ``engine.report.pdf.render_pdf`` draw the same blocks,
so both formats say the same thing; ``engine.report.write.write_report`` picks one by file suffix. Contents: model, machine, ONNX Runtime version and date; baseline vs optimized;
where int8 calibration came from (the evaluator's ``calibration()``, samples split off from scoring,
a given file, or random inputs, which gets a warning paragraph) and at which shapes; the per-layer
table; sensitivity and latency bar charts; the graph coloured by routine; the Pareto chart of every
trial; notes; the plan as JSON. Every string from the model or the session is
escaped with ``html.escape`` (in SVG too, see ``engine.report.charts.to_svg``).
"""

from __future__ import annotations

import datetime
import json
import logging
from dataclasses import dataclass
from typing import Union

from engine.evaluate.calibration import RANDOM_WARNING, describe, uses_int8
from engine.report.words import speed_words
from engine.errors import LayerLabError
from engine.report.export import LayerRow, layer_rows, routine_label, routine_names
from engine.report.provider_export import assignment_settings
from engine.report.charts import (
    Drawing,
    bar_chart,
    graph_drawing,
    scatter_chart,
)
from engine.model.session import Measurement, Session
from engine.io.session_file import machine_info, to_data

__all__ = ["Heading", "Facts", "Table", "Figure", "Paragraph", "Code", "Report", "Block", "build_report"]

logger = logging.getLogger(__name__)



@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Facts:
    rows: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    numeric: tuple[bool, ...]  # right-aligned columns


@dataclass(frozen=True)
class Figure:
    drawing: Drawing
    caption: str


@dataclass(frozen=True)
class Paragraph:
    text: str
    warning: bool = False  # drawn so that it cannot be missed (random calibration, ...)


@dataclass(frozen=True)
class Code:
    text: str


Block = Union[Heading, Facts, Table, Figure, Paragraph, Code]


@dataclass(frozen=True)
class Report:
    title: str
    blocks: tuple[Block, ...]


# --- formatting ---------------------------------------------------------------------------------


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f} ms" if value < 10 else f"{value:.1f} ms"


def _num(value: float | None, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}g}"


def _count(value: int | float | None, unit: str = "") -> str:
    if value is None:
        return "–"
    for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g} {suffix}{unit}"
    return f"{value:g} {unit}".strip()


# --- building -----------------------------------------------------------------------------------


def _header(session: Session) -> Facts:
    graph = session.graph
    machine = session.machine or machine_info()
    shapes = ", ".join(f"{k}={'x'.join(map(str, v))}" for k, v in session.input_shapes.items()) or "as in the model"
    rows = [
        ("Model", str(session.model_path or "–")),
        ("sha256", graph.sha256 if graph is not None else "–"),
        ("Input shapes", shapes),
        *([("Shapes from", "; ".join(session.shape_notes))] if session.shape_notes else []),
        ("Layers / nodes", f"{len(graph.layers)} / {len(graph.nodes)}" if graph is not None else "–"),
        ("MACs / params", f"{_count(graph.total_macs)} / {_count(graph.total_params)}" if graph is not None else "–"),
        ("Evaluator", str(session.evaluator_path or "none (fidelity to fp32 outputs)")),
        ("Machine", f"{machine.get('cpu') or '?'}, {machine.get('cores') or '?'} cores, {machine.get('system') or '?'}"),
        ("ONNX Runtime", str(machine.get("onnxruntime") or "?")),
        *([("Target", f"{machine['target']} (remote agent)")] if machine.get("target") else []),
        ("Session", str(session.path or "unsaved")),
        ("Date", datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")),
    ]
    return Facts(tuple(rows))


def _comparison(session: Session) -> list[Block]:
    base, cur = session.baseline, session.current
    route = to_data(session.route) if session.route is not None else None
    predicted = "measured"
    if cur is None and isinstance(route, dict):
        cur, predicted = Measurement(ms=route.get("latency_ms")), "predicted (not measured yet)"
    if base is None and cur is None:
        return [Paragraph("No end-to-end measurement yet: run `layerlab tune` or measure in the window.")]
    base, cur = base or Measurement(), cur or Measurement()
    speedup = speed_words(base.ms, cur.ms, cur.ms_p10, cur.ms_p90)
    drop = base.metric - cur.metric if base.metric is not None and cur.metric is not None else None
    if drop is None and isinstance(route, dict) and route.get("drop") is not None:
        drop = route["drop"]
    size = cur.bytes / base.bytes if base.bytes and cur.bytes else None
    rows = (
        ("Latency", _ms(base.ms), _ms(cur.ms), speedup or "–"),
        ("Latency p10–p90", f"{_ms(base.ms_p10)} – {_ms(base.ms_p90)}", f"{_ms(cur.ms_p10)} – {_ms(cur.ms_p90)}", ""),
        ("Metric", _num(base.metric), _num(cur.metric), f"drop {_num(drop)}" if drop is not None else "–"),
        ("Size", _count(base.bytes, "B"), _count(cur.bytes, "B"), f"{size:.2f}x" if size else "–"),
    )
    return [
        Table(("", "baseline (fp32)", f"optimized, {predicted}", "change"), rows, (False, True, True, True)),
    ]


def _calibration(session: Session) -> list[Block]:
    """Where int8 calibration came from and at which shapes; random inputs get a warning paragraph."""
    record = session.calibration
    if record is None:
        route = to_data(session.route) if session.route is not None else None
        routed = isinstance(route, dict) and "int8" in (route.get("routines") or {}).values()
        if not routed and (session.plan is None or not uses_int8(session.graph, session.plan)):
            return []  # no int8 anywhere: nothing was calibrated
        return [Heading("int8 calibration"),
                Paragraph("Not recorded in this session: measure or tune the plan to record where its int8 "
                          "calibration comes from.")]
    blocks: list[Block] = [Heading("int8 calibration"), Paragraph(f"int8 was calibrated on {describe(record)}.")]
    if record.random:
        blocks.append(Paragraph(f"Warning: {RANDOM_WARNING}. The metrics of the int8 variants in this report "
                                "may be lower than they would be with real calibration data.", warning=True))
    return blocks


def _layer_table(rows: list[LayerRow]) -> Table:
    body = tuple(
        (r.name, r.op, r.precision, r.prune or "–", str(r.rank) if r.rank is not None else "–", routine_label(r),
         _ms(r.ms), _ms(r.fp32_ms), _num(r.drop, 3), _count(r.macs), _count(r.params))
        for r in rows
    )
    header = ("layer", "op", "precision", "prune", "rank", "routine", "latency", "fp32 latency", "drop", "MACs",
              "params")
    numeric = (False, False, False, False, True, False, True, True, True, True, True)
    if any(r.provider for r in rows):  # a mixed-provider route: where each layer runs
        body = tuple(row[:6] + (r.provider.removesuffix("ExecutionProvider") or "CPU",) + row[6:] for row, r in zip(body, rows))
        header, numeric = header[:6] + ("provider",) + header[6:], numeric[:6] + (False,) + numeric[6:]
    return Table(header, body, numeric)


def _providers_paragraph(rows: list[LayerRow]) -> list[Paragraph]:
    """Which providers the layers run on, and the ORT session setting that places them (where it can)."""
    used = {r.name: r.provider for r in rows if r.provider}
    if not used:
        return []
    text, notes = assignment_settings(used)
    counts = ", ".join(f"{sum(p == q for p in used.values())} on {q.removesuffix('ExecutionProvider')}" for q in sorted(set(used.values())))
    return [Paragraph(f"Execution providers: {counts}, the other {len(rows) - len(used)} layers on CPU; each layer's ops "
                      f"run where it does. The exported model's nodes carry layer_ann; ONNX Runtime 1.2x+ places them with "
                      f"the session config entry session.layer_assignment_settings = \"{text}\". " + " ".join(notes))]


def _pareto(session: Session) -> Figure:
    route = to_data(session.route) if session.route is not None else None
    current_routines = route.get("routines") if isinstance(route, dict) else None
    points: list[tuple[float, float, str, bool]] = []
    for i, trial in enumerate(session.trials):
        ms = trial.measured.ms if trial.measured.ms is not None else trial.predicted.ms
        metric = trial.measured.metric if trial.measured.metric is not None else trial.predicted.metric
        if ms is not None and metric is not None:
            points.append((ms, metric, trial.label or f"trial {i + 1}", trial.routines == current_routines))
    cur = session.current
    if cur and cur.ms is not None and cur.metric is not None and not any(p[3] for p in points):
        points.append((cur.ms, cur.metric, "current", True))
    if session.baseline and session.baseline.ms is not None and session.baseline.metric is not None:
        points.append((session.baseline.ms, session.baseline.metric, "baseline (fp32)", False))
    drawing = scatter_chart(points, "latency (ms)", "metric (higher is better)", "Trials: latency vs metric")
    return Figure(drawing, f"{len(session.trials)} trials; the current configuration is marked in red.")


def build_report(session: Session) -> Report:
    """The report's blocks for ``session`` (which needs its graph)."""
    graph = session.graph
    if graph is None:
        raise LayerLabError("cannot write a report: the session has no model loaded")
    rows = layer_rows(session)
    name = session.model_path.name if session.model_path else graph.label
    blocks: list[Block] = [_header(session), Heading("Baseline vs optimized"), *_comparison(session)]
    blocks += _calibration(session)
    blocks += [Heading("Per-layer"), _layer_table(rows), *_providers_paragraph(rows)]
    labels = [r.name for r in rows]
    routines = [r for r in routine_names(rows) if r != "fp32"]
    if routines:
        series = {r: [row.drops.get(r) for row in rows] for r in routines}
        blocks += [Heading("Sensitivity"), Figure(bar_chart(labels, series, "", "Metric drop when only this layer changes"), "Higher bars: the layer loses more accuracy with that routine.")]
    if any(r.ms is not None or r.fp32_ms is not None for r in rows):
        series = {"fp32": [r.fp32_ms for r in rows], "chosen": [r.ms for r in rows]}
        blocks += [Heading("Latency"), Figure(bar_chart(labels, series, " ms", "Per-layer latency"), "fp32 against the chosen routine.")]
    chosen = {r.name: r.routine for r in rows}
    nodes = [(n.name, n.op_type) for n in graph.nodes]
    edges = [(e.src, e.dst) for e in graph.edges]
    blocks += [Heading("Graph by routine"), Figure(graph_drawing(nodes, edges, chosen), "Layers coloured by routine; ops in grey.")]
    blocks += [Heading("Trials"), _pareto(session)]
    if session.notes:
        blocks += [Heading("Notes"), Paragraph(session.notes)]
    plan = to_data(session.plan)
    blocks += [Heading("Plan"), Code(json.dumps(plan, indent=2) if plan is not None else "no plan (all fp32)")]
    return Report(f"LayerLab report: {name}", tuple(blocks))

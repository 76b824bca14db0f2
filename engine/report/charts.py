"""Charts for the report as small vector drawings: bars, a scatter (Pareto) and the graph by routine.

A chart is a ``Drawing``: a size and a list of primitives (rectangles, polylines, circles, text) in
points, y growing downward. ``to_svg`` turns one into inline SVG for the HTML report and
``engine.report.pdf`` draws the same primitives into the PDF, so both formats show the same charts.
Every text goes through ``html.escape`` in ``to_svg``: node names come from the model file.
"""

from __future__ import annotations

import html
import logging
import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence, Union

__all__ = [
    "Rect",
    "Line",
    "Circle",
    "Text",
    "Drawing",
    "to_svg",
    "routine_color",
    "bar_chart",
    "scatter_chart",
    "graph_drawing",
]

logger = logging.getLogger(__name__)

_PALETTE = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#eeca3b", "#9d755d")
_FIXED = {"fp32": "#9aa5b1", "fp16": "#4c78a8", "int8": "#f58518", "int8_dynamic": "#e45756", "op": "#e8e8e8"}
_WIDTH = 720.0
_CHAR = 0.55  # average glyph width / font size, to reserve room for labels


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    w: float
    h: float
    fill: str
    stroke: str | None = None
    title: str = ""


@dataclass(frozen=True)
class Line:
    points: tuple[tuple[float, float], ...]
    stroke: str = "#888888"
    width: float = 1.0


@dataclass(frozen=True)
class Circle:
    x: float
    y: float
    r: float
    fill: str
    stroke: str | None = None
    title: str = ""


@dataclass(frozen=True)
class Text:
    x: float
    y: float  # baseline
    text: str
    size: float = 9.0
    anchor: str = "start"  # start | middle | end
    fill: str = "#222222"
    bold: bool = False


Item = Union[Rect, Line, Circle, Text]


@dataclass
class Drawing:
    width: float
    height: float
    items: list[Item] = field(default_factory=list)


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _n(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def to_svg(drawing: Drawing) -> str:
    """Inline SVG markup (no external references); all text escaped."""
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_n(drawing.width)}" height="{_n(drawing.height)}" '
        f'viewBox="0 0 {_n(drawing.width)} {_n(drawing.height)}" font-family="Helvetica, Arial, sans-serif">'
    ]
    for item in drawing.items:
        if isinstance(item, Rect):
            stroke = f' stroke="{_esc(item.stroke)}"' if item.stroke else ""
            title = f"<title>{_esc(item.title)}</title>" if item.title else ""
            out.append(
                f'<rect x="{_n(item.x)}" y="{_n(item.y)}" width="{_n(item.w)}" height="{_n(item.h)}" '
                f'fill="{_esc(item.fill)}"{stroke}>{title}</rect>'
            )
        elif isinstance(item, Line):
            pts = " ".join(f"{_n(x)},{_n(y)}" for x, y in item.points)
            out.append(
                f'<polyline points="{pts}" fill="none" stroke="{_esc(item.stroke)}" stroke-width="{_n(item.width)}"/>'
            )
        elif isinstance(item, Circle):
            stroke = f' stroke="{_esc(item.stroke)}" stroke-width="1.5"' if item.stroke else ""
            title = f"<title>{_esc(item.title)}</title>" if item.title else ""
            out.append(
                f'<circle cx="{_n(item.x)}" cy="{_n(item.y)}" r="{_n(item.r)}" fill="{_esc(item.fill)}"{stroke}>'
                f"{title}</circle>"
            )
        else:
            weight = ' font-weight="bold"' if item.bold else ""
            out.append(
                f'<text x="{_n(item.x)}" y="{_n(item.y)}" font-size="{_n(item.size)}" text-anchor="{item.anchor}" '
                f'fill="{_esc(item.fill)}"{weight}>{_esc(item.text)}</text>'
            )
    out.append("</svg>")
    return "".join(out)


def routine_color(routine: str, known: Sequence[str] = ()) -> str:
    """A stable colour per routine: fixed for the common precisions, else from a palette."""
    if routine in _FIXED:
        return _FIXED[routine]
    base = routine.split("/")[0].split(":")[0]
    if base in _FIXED:
        return _FIXED[base]
    index = list(known).index(routine) if routine in known else sum(map(ord, routine))
    return _PALETTE[index % len(_PALETTE)]


def _clip(text: str, chars: int) -> str:
    return text if len(text) <= chars else text[: max(chars - 1, 1)] + "\u2026"


def _nice_max(value: float) -> float:
    if value <= 0 or not math.isfinite(value):
        return 1.0
    exp = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if step * exp >= value:
            return step * exp
    return 10 * exp


def _legend(drawing: Drawing, names: Sequence[str], colors: Mapping[str, str], x: float, y: float) -> None:
    for name in names:
        drawing.items.append(Rect(x, y - 8, 10, 10, colors[name]))
        drawing.items.append(Text(x + 14, y, name, 9))
        x += 24 + len(name) * 9 * _CHAR


def bar_chart(
    labels: Sequence[str], series: Mapping[str, Sequence[float | None]], unit: str, title: str = ""
) -> Drawing:
    """Horizontal grouped bars, one row per label (layer), one bar per series; None draws no bar."""
    names = list(series)
    colors = {name: routine_color(name, names) for name in names}
    bar, gap = 7.0, 6.0
    row = bar * max(len(names), 1) + gap
    label_w = min(max([len(label) for label in labels] + [4]) * 8 * _CHAR + 8, 220)
    top = 34.0
    plot_w = _WIDTH - label_w - 60
    d = Drawing(_WIDTH, top + row * len(labels) + 26)
    values = [v for vs in series.values() for v in vs if v is not None and math.isfinite(v)]
    lo = min(values + [0.0])
    hi = _nice_max(max(values + [0.0]))
    span = hi - lo if hi > lo else 1.0
    zero = label_w + (0 - lo) / span * plot_w
    if title:
        d.items.append(Text(0, 12, title, 11, bold=True))
    _legend(d, names, colors, label_w, 28)
    for i, label in enumerate(labels):
        y = top + i * row
        d.items.append(Text(label_w - 6, y + row / 2 + 1, _clip(label, int((label_w - 8) / (8 * _CHAR))), 8, "end"))
        for j, name in enumerate(names):
            value = series[name][i]
            if value is None or not math.isfinite(value):
                continue
            x0 = label_w + (min(value, 0) - lo) / span * plot_w
            w = abs(value) / span * plot_w
            d.items.append(Rect(x0, y + j * bar, max(w, 0.5), bar - 1, colors[name], title=f"{label} {name}: {value:.4g}{unit}"))
    bottom = top + row * len(labels)
    d.items.append(Line(((zero, top - 4), (zero, bottom)), "#444444"))
    for k in range(5):
        value = lo + span * k / 4
        x = label_w + plot_w * k / 4
        d.items.append(Line(((x, bottom), (x, bottom + 4)), "#444444"))
        d.items.append(Text(x, bottom + 14, f"{value:.3g}{unit}", 8, "middle"))
    return d


def scatter_chart(
    points: Sequence[tuple[float, float, str, bool]], x_label: str, y_label: str, title: str = ""
) -> Drawing:
    """Points ``(x, y, label, highlighted)``; highlighted points are drawn larger and labelled."""
    d = Drawing(_WIDTH, 320)
    left, top, right, bottom = 60.0, 30.0, _WIDTH - 20, 280.0
    if title:
        d.items.append(Text(0, 12, title, 11, bold=True))
    d.items.append(Line(((left, top), (left, bottom), (right, bottom)), "#444444"))
    d.items.append(Text((left + right) / 2, bottom + 34, x_label, 9, "middle"))
    d.items.append(Text(4, top - 8, y_label, 9))
    finite = [(x, y) for x, y, _, _ in points if math.isfinite(x) and math.isfinite(y)]
    if not finite:
        d.items.append(Text((left + right) / 2, (top + bottom) / 2, "no measured trials", 10, "middle"))
        return d
    xs, ys = [p[0] for p in finite], [p[1] for p in finite]
    x_lo, x_hi = min(xs + [0.0]), _nice_max(max(xs))
    y_pad = (max(ys) - min(ys)) * 0.1 or abs(max(ys)) * 0.05 or 1.0
    y_lo, y_hi = min(ys) - y_pad, max(ys) + y_pad

    def at(x: float, y: float) -> tuple[float, float]:
        return (
            left + (x - x_lo) / ((x_hi - x_lo) or 1) * (right - left),
            bottom - (y - y_lo) / ((y_hi - y_lo) or 1) * (bottom - top),
        )

    for k in range(5):
        x = left + (right - left) * k / 4
        d.items.append(Text(x, bottom + 14, f"{x_lo + (x_hi - x_lo) * k / 4:.3g}", 8, "middle"))
        y = bottom - (bottom - top) * k / 4
        d.items.append(Text(left - 4, y + 3, f"{y_lo + (y_hi - y_lo) * k / 4:.4g}", 8, "end"))
    for x, y, label, highlight in sorted(points, key=lambda p: p[3]):  # highlighted ones on top
        if not (math.isfinite(x) and math.isfinite(y)):
            continue
        px, py = at(x, y)
        tip = f"{label}: {x:.4g}, {y:.4g}"
        if highlight:
            d.items.append(Circle(px, py, 6, "#e45756", "#222222", tip))
            d.items.append(Text(px + 9, py - 6, _clip(label, 40), 9, bold=True))
        else:
            d.items.append(Circle(px, py, 3.5, "#4c78a8", None, tip))
    return d


def graph_drawing(
    nodes: Sequence[tuple[str, str]], edges: Sequence[tuple[str, str]], routines: Mapping[str, str]
) -> Drawing:
    """The model graph top to bottom; ``nodes`` are (name, op_type); a box's colour is its routine."""
    from engine.layout.layered import layout_graph

    names = [name for name, _ in nodes]
    ops = dict(nodes)
    size = (150.0, 30.0)
    layout = layout_graph(names, edges, {name: size for name in names}, node_gap=16.0, rank_gap=28.0)
    known = sorted(set(routines.values()))
    d = Drawing(max(layout.width, 300.0), layout.height + 30)
    colors = {r: routine_color(r, known) for r in known}
    colors["op"] = _FIXED["op"]
    _legend(d, known + ["op"], colors, 0, 12)
    dy = 24.0
    for points in layout.edges.values():
        d.items.append(Line(tuple((x, y + dy) for x, y in points), "#999999", 0.8))
    for name in names:
        (cx, cy), (w, h) = layout.positions[name], layout.sizes[name]
        routine = routines.get(name)
        fill = colors[routine] if routine else colors["op"]
        tip = f"{name} ({ops[name]})" + (f": {routine}" if routine else "")
        d.items.append(Rect(cx - w / 2, cy - h / 2 + dy, w, h, fill, "#555555", tip))
        d.items.append(Text(cx, cy + dy - 2, _clip(ops[name], 24), 8, "middle", bold=True))
        d.items.append(Text(cx, cy + dy + 9, _clip(name, 28), 7, "middle"))
    return d

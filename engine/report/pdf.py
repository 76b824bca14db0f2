"""The report as PDF, written by a small PDF generator of our own (standard library only).

Why not a library: Qt may not be used below ``engine/``; weasyprint and matplotlib are heavy
dependencies (Cairo/Pango, or a whole plotting stack) for one export; Pillow can only embed raster
pages. The report needs text, tables, rectangles, lines and circles, which PDF draws natively with
its 14 standard fonts (no font embedding), so ~300 lines give a vector PDF with selectable text,
drawing the same ``Drawing`` charts as the HTML. Limits: text is WinAnsi (Latin-1 plus a few
signs; anything else prints as "?"), and column widths use the Helvetica metrics below.
"""

from __future__ import annotations

import logging
import zlib

from engine.report.document import Code, Facts, Figure, Heading, Paragraph, Report, Table
from engine.report.charts import Circle, Drawing, Line, Rect, Text

__all__ = ["render_pdf"]

logger = logging.getLogger(__name__)

_W, _H, _M = 595.0, 842.0, 40.0  # A4 in points, margin
_AVAIL = _W - 2 * _M
_MIN_START = 200.0  # room a page-spanning figure wants before it starts on the current page
# Helvetica advance widths (1/1000 em) for ASCII 32..126, from the standard AFM.
_HELV = [
    278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278, 278,
    556, 556, 556, 556, 556, 556, 556, 556, 556, 556, 278, 278, 584, 584, 584, 556,
    1015, 667, 667, 722, 722, 667, 611, 778, 722, 278, 500, 667, 556, 833, 722, 778,
    667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, 278, 278, 278, 469, 556,
    333, 556, 556, 500, 556, 556, 278, 556, 556, 222, 222, 500, 222, 833, 556, 556,
    556, 556, 333, 500, 278, 556, 500, 722, 500, 500, 500, 334, 260, 334, 584,
]  # fmt: skip
_FONTS = {"F1": "Helvetica", "F2": "Helvetica-Bold", "F3": "Courier"}


def _width(text: str, size: float, font: str = "F1") -> float:
    if font == "F3":
        return 0.6 * size * len(text)
    em = sum(_HELV[ord(c) - 32] if 32 <= ord(c) <= 126 else 556 for c in text) / 1000
    return em * size * (1.06 if font == "F2" else 1.0)


def _pdf_string(text: str) -> str:
    raw = text.encode("cp1252", errors="replace").decode("latin-1")
    raw = "".join(c if ord(c) >= 32 else " " for c in raw)
    return "(" + raw.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ")"


def _rgb(color: str) -> tuple[float, float, float]:
    color = color.lstrip("#")
    if len(color) != 6:
        return (0.5, 0.5, 0.5)
    return tuple(int(color[i : i + 2], 16) / 255 for i in (0, 2, 4))  # type: ignore[return-value]


def _fit(text: str, width: float, size: float, font: str = "F1") -> str:
    """``text`` cut with an ellipsis to fit ``width``."""
    if _width(text, size, font) <= width:
        return text
    while text and _width(text + "\u2026", size, font) > width:
        text = text[:-1]
    return text + "\u2026"


def _wrap(text: str, width: float, size: float, font: str = "F1") -> list[str]:
    lines: list[str] = []
    for para in text.split("\n"):
        line = ""
        for word in para.split(" "):
            candidate = f"{line} {word}" if line else word
            if _width(candidate, size, font) <= width:
                line = candidate
                continue
            if line:
                lines.append(line)
            while _width(word, size, font) > width:  # a word longer than the line: break it
                cut = max(1, int(len(word) * width / _width(word, size, font)))
                lines.append(word[:cut])
                word = word[cut:]
            line = word
        lines.append(line)
    return lines


class _Doc:
    """Pages of content operators and a cursor ``y`` measured from the top of the page."""

    def __init__(self) -> None:
        self.pages: list[list[str]] = []
        self.y = 0.0
        self.new_page()

    def new_page(self) -> None:
        self.pages.append([])
        self.y = _M

    def ensure(self, height: float) -> None:
        if self.y + height > _H - _M and self.y > _M:
            self.new_page()

    @property
    def ops(self) -> list[str]:
        return self.pages[-1]

    def text(self, x: float, y: float, text: str, size: float, font: str = "F1", anchor: str = "start", color: str = "#222222") -> None:
        if anchor != "start":
            x -= _width(text, size, font) / (2 if anchor == "middle" else 1)
        r, g, b = _rgb(color)
        self.ops.append(f"{r:.3f} {g:.3f} {b:.3f} rg BT /{font} {size:.2f} Tf {x:.2f} {_H - y:.2f} Td {_pdf_string(text)} Tj ET")

    def rect(self, x: float, y: float, w: float, h: float, fill: str | None, stroke: str | None = None) -> None:
        paint = []
        if fill:
            paint.append("{:.3f} {:.3f} {:.3f} rg".format(*_rgb(fill)))
        if stroke:
            paint.append("{:.3f} {:.3f} {:.3f} RG 0.5 w".format(*_rgb(stroke)))
        op = "B" if fill and stroke else "f" if fill else "S"
        self.ops.append(f"{' '.join(paint)} {x:.2f} {_H - y - h:.2f} {w:.2f} {h:.2f} re {op}")

    def polyline(self, points: list[tuple[float, float]], stroke: str, width: float) -> None:
        path = " ".join(f"{x:.2f} {_H - y:.2f} {'m' if i == 0 else 'l'}" for i, (x, y) in enumerate(points))
        self.ops.append("{:.3f} {:.3f} {:.3f} RG {:.2f} w ".format(*_rgb(stroke), width) + path + " S")

    def circle(self, x: float, y: float, r: float, fill: str, stroke: str | None) -> None:
        k, cy = 0.5523 * r, _H - y
        path = (
            f"{x + r:.2f} {cy:.2f} m {x + r:.2f} {cy + k:.2f} {x + k:.2f} {cy + r:.2f} {x:.2f} {cy + r:.2f} c "
            f"{x - k:.2f} {cy + r:.2f} {x - r:.2f} {cy + k:.2f} {x - r:.2f} {cy:.2f} c "
            f"{x - r:.2f} {cy - k:.2f} {x - k:.2f} {cy - r:.2f} {x:.2f} {cy - r:.2f} c "
            f"{x + k:.2f} {cy - r:.2f} {x + r:.2f} {cy - k:.2f} {x + r:.2f} {cy:.2f} c"
        )
        paint = "{:.3f} {:.3f} {:.3f} rg".format(*_rgb(fill))
        if stroke:
            paint += " {:.3f} {:.3f} {:.3f} RG 1 w".format(*_rgb(stroke))
        self.ops.append(f"{paint} {path} {'b' if stroke else 'f'}")


def _draw(doc: _Doc, drawing: Drawing, top: float, scale: float, shift: float, visible: float) -> None:
    """Items of ``drawing`` whose drawing-y lies in [shift, shift + visible/scale], placed at ``top``."""
    doc.ops.append(f"q {_M:.2f} {_H - top - visible:.2f} {_AVAIL:.2f} {visible:.2f} re W n")  # clip to the slice
    ox = _M + max(0.0, (_AVAIL - drawing.width * scale) / 2)

    def at(x: float, y: float) -> tuple[float, float]:
        return ox + x * scale, top + (y - shift) * scale

    for item in drawing.items:
        if isinstance(item, Rect):
            x, y = at(item.x, item.y)
            doc.rect(x, y, item.w * scale, item.h * scale, item.fill, item.stroke)
        elif isinstance(item, Line):
            doc.polyline([at(x, y) for x, y in item.points], item.stroke, item.width * scale)
        elif isinstance(item, Circle):
            x, y = at(item.x, item.y)
            doc.circle(x, y, item.r * scale, item.fill, item.stroke)
        elif isinstance(item, Text):
            x, y = at(item.x, item.y)
            doc.text(x, y, item.text, item.size * scale, "F2" if item.bold else "F1", item.anchor, item.fill)
    doc.ops.append("Q")


def _figure(doc: _Doc, fig: Figure) -> None:
    scale = min(1.0, _AVAIL / drawing_width(fig.drawing))
    height = fig.drawing.height * scale
    # on one page when it fits on a page; a taller one starts here unless little room is left
    doc.ensure(height if height <= _H - 2 * _M else _MIN_START)
    shift = 0.0
    while True:  # a drawing taller than a page continues on the next ones
        visible = min(height - shift * scale, _H - _M - doc.y)
        _draw(doc, fig.drawing, doc.y, scale, shift, visible)
        doc.y += visible
        shift += visible / scale
        if shift * scale >= height - 0.5:
            break
        doc.new_page()
    doc.ensure(14)
    doc.text(_M, doc.y + 10, fig.caption, 8, color="#666666")
    doc.y += 16


def drawing_width(drawing: Drawing) -> float:
    return max(drawing.width, 1.0)


def _table(doc: _Doc, table: Table) -> None:
    size, row_h, pad = 7.0, 11.0, 4.0
    cols = len(table.header)
    natural = [
        min(max([_width(r[i], size) for r in table.rows] + [_width(table.header[i], size, "F2")]), 220) + 2 * pad
        for i in range(cols)
    ]
    excess = sum(natural) - _AVAIL
    widths = list(natural)
    if excess > 0:  # shrink the text columns (numbers keep their width)
        text_cols = [i for i in range(cols) if not table.numeric[i]] or list(range(cols))
        room = sum(natural[i] for i in text_cols)
        for i in text_cols:
            widths[i] = max(natural[i] - excess * natural[i] / room, 24.0)

    def row(cells: tuple[str, ...], font: str, shade: str | None) -> None:
        doc.ensure(row_h)
        if shade:
            doc.rect(_M, doc.y, sum(widths), row_h, shade)
        x = _M
        for i, cell in enumerate(cells):
            text = _fit(cell, widths[i] - 2 * pad, size, font)
            if table.numeric[i]:
                doc.text(x + widths[i] - pad, doc.y + 8, text, size, font, "end")
            else:
                doc.text(x + pad, doc.y + 8, text, size, font)
            x += widths[i]
        doc.y += row_h

    doc.ensure(row_h * 3)
    row(table.header, "F2", "#eeeeee")
    for i, cells in enumerate(table.rows):
        if doc.y + row_h > _H - _M:
            doc.new_page()
            row(table.header, "F2", "#eeeeee")
        row(cells, "F1", "#f8f8f8" if i % 2 else None)
    doc.y += 8


def _code_lines(text: str, size: float) -> list[str]:
    """Monospaced lines cut at the page width, indentation kept."""
    per_line = max(int(_AVAIL / (0.6 * size)), 8)
    return [line[i : i + per_line] for line in text.splitlines() for i in range(0, max(len(line), 1), per_line)]


def _lines(doc: _Doc, lines: list[str], size: float, font: str, x: float = _M) -> None:
    for line in lines:
        doc.ensure(size * 1.35)
        doc.text(x, doc.y + size, line, size, font)
        doc.y += size * 1.35


def render_pdf(report: Report) -> bytes:
    """The report as the bytes of a PDF file."""
    doc = _Doc()
    _lines(doc, _wrap(report.title, _AVAIL, 16, "F2"), 16, "F2")
    doc.y += 6
    blocks = report.blocks
    for index, block in enumerate(blocks):
        if isinstance(block, Heading):
            after = blocks[index + 1] if index + 1 < len(blocks) else None
            first = 60.0  # never a heading alone at the bottom of a page
            if isinstance(after, Figure):  # keep it with its figure when that fits on one page
                height = after.drawing.height * min(1.0, _AVAIL / drawing_width(after.drawing))
                first = height if height <= _H - 2 * _M - 40 else _MIN_START
            doc.ensure(first + 40)
            doc.y += 10
            _lines(doc, _wrap(block.text, _AVAIL, 12, "F2"), 12, "F2")
            doc.polyline([(_M, doc.y), (_W - _M, doc.y)], "#cccccc", 0.5)
            doc.y += 6
        elif isinstance(block, Facts):
            for key, value in block.rows:
                lines = _wrap(value, _AVAIL - 100, 8)
                doc.ensure(10 * len(lines))
                doc.text(_M, doc.y + 8, key, 8, "F2", color="#555555")
                _lines(doc, lines, 8, "F1", _M + 100)
        elif isinstance(block, Table):
            _table(doc, block)
        elif isinstance(block, Figure):
            _figure(doc, block)
        elif isinstance(block, Paragraph):
            _lines(doc, _wrap(block.text, _AVAIL, 9), 9, "F1")
            doc.y += 4
        elif isinstance(block, Code):
            _lines(doc, _code_lines(block.text, 7), 7, "F3")
    return _assemble(doc.pages, report.title)


def _assemble(pages: list[list[str]], title: str) -> bytes:
    objects: list[bytes] = []

    def add(body: bytes) -> int:
        objects.append(body)
        return len(objects)

    add(b"<< /Type /Catalog /Pages 2 0 R >>")
    add(b"")  # the page tree, filled in once the pages are numbered
    font_refs = " ".join(
        f"/{key} {add(f'<< /Type /Font /Subtype /Type1 /BaseFont /{name} /Encoding /WinAnsiEncoding >>'.encode())} 0 R"
        for key, name in _FONTS.items()
    )
    kids = []
    for number, ops in enumerate(pages, 1):
        footer = f"0.5 0.5 0.5 rg BT /F1 7 Tf {_W / 2 - 20:.2f} 20 Td {_pdf_string(f'page {number} of {len(pages)}')} Tj ET"
        stream = zlib.compress("\n".join([*ops, footer]).encode("latin-1"))
        content = add(b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream) + stream + b"\nendstream")
        kids.append(add(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {_W:.0f} {_H:.0f}] "
            f"/Resources << /Font << {font_refs} >> >> /Contents {content} 0 R >>".encode()
        ))  # fmt: skip
    objects[1] = f"<< /Type /Pages /Kids [{' '.join(f'{k} 0 R' for k in kids)}] /Count {len(kids)} >>".encode()
    info = add(f"<< /Title {_pdf_string(title)} /Producer (LayerLab) >>".encode("latin-1"))
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % off for off in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R /Info {info} 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)

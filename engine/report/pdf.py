"""The report as PDF, drawn with fpdf2 in fonts that cover the scripts layer names come in.

fpdf2 embeds subsets of TrueType/OpenType fonts and shapes text with HarfBuzz (``uharfbuzz``), so
Arabic joins and right-to-left runs are ordered as the Unicode bidi algorithm says. Fonts, all
installed from PyPI as dependencies: FiraGO (``pymupdf-fonts``: Latin, Greek, Cyrillic, Arabic,
Hebrew, Thai, Devanagari) for text, Cascadia Mono for code, and Noto Sans CJK (``cvttf-notosanscjk-regular``)
as the fallback for Chinese, Japanese and Korean. The page layout (tables, charts drawn from the
same ``Drawing`` as the HTML, pages continued for tall figures) is LayerLab's own.
"""

from __future__ import annotations

import functools
import logging
import re
from pathlib import Path

from fpdf import FPDF

from engine.report.charts import Circle, Drawing, Line, Rect, Text
from engine.report.document import Code, Facts, Figure, Heading, Paragraph, Report, Table

__all__ = ["render_pdf", "font_files"]

logger = logging.getLogger(__name__)

_W, _H, _M = 595.0, 842.0, 40.0  # A4 in points, margin
_AVAIL = _W - 2 * _M
_MIN_START = 200.0  # room a page-spanning figure wants before it starts on the current page
_SANS, _MONO, _CJK = "sans", "mono", "cjk"


@functools.lru_cache(maxsize=1)
def font_files() -> dict[tuple[str, str], Path]:
    """(family, style) -> font file. pymupdf-fonts ships its fonts as bytes: written once into the cache."""
    import pymupdf_fonts

    from engine.io.examples import cache_dir

    folder = cache_dir() / "fonts"
    folder.mkdir(parents=True, exist_ok=True)
    files: dict[tuple[str, str], Path] = {}
    for key, code in ((( _SANS, ""), "figo"), ((_SANS, "B"), "figbo"), ((_MONO, ""), "cascadia")):
        path = folder / f"{code}.ttf"
        if not path.is_file():
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(pymupdf_fonts.myfont(code))
            tmp.replace(path)
        files[key] = path
    return files


def _cjk_font() -> Path:
    import cvttf_NotoSansCJK_Regular as cjk

    return next(Path(cjk.__file__).parent.glob("*.otf"))


def _rgb(color: str) -> tuple[int, int, int]:
    color = color.lstrip("#")
    if len(color) != 6:
        return (128, 128, 128)
    return tuple(int(color[i : i + 2], 16) for i in (0, 2, 4))  # type: ignore[return-value]


class _Doc:
    """An fpdf2 document with a cursor ``y`` measured from the top of the page."""

    def __init__(self, title: str, cjk: bool) -> None:
        pdf = FPDF(unit="pt", format="A4")
        pdf.set_auto_page_break(False)
        pdf.set_margins(_M, _M, _M)
        for (family, style), path in font_files().items():
            pdf.add_font(family, style, str(path))
        if cjk:  # parsing the 16 MB CJK font is most of the PDF's time: only when a name needs it
            pdf.add_font(_CJK, "", str(_cjk_font()))
            pdf.set_fallback_fonts([_CJK], exact_match=False)
        pdf.set_text_shaping(True)  # HarfBuzz: Arabic forms, right-to-left order
        self._shaping = pdf.text_shaping  # switched off for runs that need no shaping (see ``_shape``)
        self._widths: dict[tuple[str, float, str], float] = {}
        pdf.set_title(title)
        pdf.set_creator("LayerLab")
        pdf.set_producer("LayerLab (fpdf2)")
        pdf.alias_nb_pages()
        self.pdf = pdf
        self.pages = 0
        self.y = 0.0
        self.new_page()

    def new_page(self) -> None:
        self.pdf.add_page()
        self.pages += 1
        self.y = _M

    def ensure(self, height: float) -> None:
        if self.y + height > _H - _M and self.y > _M:
            self.new_page()

    def font(self, size: float, font: str = "F1") -> None:
        family, style = {"F1": (_SANS, ""), "F2": (_SANS, "B"), "F3": (_MONO, "")}[font]
        self.pdf.set_font(family, style, size)

    def _shape(self, text: str) -> None:
        """HarfBuzz and the bidi algorithm only for text that needs them: a run below U+0590 (Latin, Greek,
        Cyrillic, Armenian) is left to right with one glyph per character, and bidi analysis plus shaping
        cost ~2 ms per run in fpdf2 (most of a 400-layer report's time)."""
        self.pdf.text_shaping = self._shaping if _NEEDS_SHAPING.search(text) else None

    def width(self, text: str, size: float, font: str = "F1") -> float:
        """The width of ``text`` (measured once per text, size and font: tables and wrapping ask again and again)."""
        key = (text, size, font)
        width = self._widths.get(key)
        if width is None:
            self.font(size, font)
            self._shape(text)
            width = self._widths[key] = self.pdf.get_string_width(text)
        return width

    def text(self, x: float, y: float, text: str, size: float, font: str = "F1", anchor: str = "start",
             color: str = "#222222") -> None:
        """``text`` with its baseline at ``y``."""
        text = _printable(text)
        width = self.width(text, size, font)
        if anchor != "start":
            x -= width / (2 if anchor == "middle" else 1)
        self.font(size, font)
        self._shape(text)
        # After a run in the CJK fallback font fpdf2 may believe the page font is still the main
        # one and skip selecting it again (following cells then print with the wrong glyphs).
        self.pdf.current_font_is_set_on_page = False
        self.pdf.set_text_color(*_rgb(color))
        # cell(), not text(): only cells use the fallback fonts and text shaping. A cell of height
        # ``size`` puts the baseline 0.8 * size below its top.
        self.pdf.set_xy(x, y - 0.8 * size)
        self.pdf.cell(w=width + 1, h=size, text=text)

    def rect(self, x: float, y: float, w: float, h: float, fill: str | None, stroke: str | None = None) -> None:
        if fill:
            self.pdf.set_fill_color(*_rgb(fill))
        if stroke:
            self.pdf.set_draw_color(*_rgb(stroke))
            self.pdf.set_line_width(0.5)
        self.pdf.rect(x, y, w, h, style="DF" if fill and stroke else "F" if fill else "D")

    def polyline(self, points: list[tuple[float, float]], stroke: str, width: float) -> None:
        self.pdf.set_draw_color(*_rgb(stroke))
        self.pdf.set_line_width(width)
        self.pdf.polyline(points)

    def circle(self, x: float, y: float, r: float, fill: str, stroke: str | None) -> None:
        self.pdf.set_fill_color(*_rgb(fill))
        if stroke:
            self.pdf.set_draw_color(*_rgb(stroke))
            self.pdf.set_line_width(1)
        self.pdf.circle(x, y, r, style="DF" if stroke else "F")


def _has_cjk(report: Report) -> bool:
    """Whether any text of the report is Chinese, Japanese or Korean (which FiraGO does not cover)."""
    texts = [report.title]
    for block in report.blocks:
        if isinstance(block, Facts):
            texts += [v for row in block.rows for v in row]
        elif isinstance(block, Table):
            texts += [*block.header, *(c for row in block.rows for c in row)]
        elif isinstance(block, Figure):
            texts += [block.caption, *(i.text for i in block.drawing.items if isinstance(i, Text))]
        else:
            texts.append(block.text)
    return any(_CJK_RANGES.search(t) for t in texts)


# Hebrew onwards: right-to-left scripts, joining Arabic, Indic and Southeast Asian clusters, CJK (fallback font)
_NEEDS_SHAPING = re.compile("[^\u0000-\u058f]")

# Hangul Jamo, CJK radicals to Yi, Hangul syllables, CJK compatibility, halfwidth forms, the SIP planes
_CJK_RANGES = re.compile("[\u1100-\u11ff\u2e80-\ua4cf\uac00-\ud7af\uf900-\ufaff\ufe30-\ufe4f\uff00-\uffef\U00020000-\U0003ffff]")


def _printable(text: str) -> str:
    """Control characters (a newline inside a node name) as spaces: one text run stays one line."""
    return "".join(c if c.isprintable() else " " for c in text)


_EPSILON = 0.01  # points


def _fit(doc: _Doc, text: str, width: float, size: float, font: str = "F1") -> str:
    """``text`` cut with an ellipsis to fit ``width``."""
    text = _printable(text)
    width += _EPSILON  # a column as wide as its widest text must not cut that text over a rounding error
    if doc.width(text, size, font) <= width:
        return text
    low, high = 0, len(text)  # the longest prefix that fits, by bisection (names may be very long)
    while low < high:
        mid = (low + high + 1) // 2
        if doc.width(text[:mid] + "\u2026", size, font) <= width:
            low = mid
        else:
            high = mid - 1
    return text[:low] + "\u2026"


def _wrap(doc: _Doc, text: str, width: float, size: float, font: str = "F1") -> list[str]:
    lines: list[str] = []
    for para in text.split("\n"):
        line = ""
        for word in _printable(para).split(" "):
            candidate = f"{line} {word}" if line else word
            if doc.width(candidate, size, font) <= width:
                line = candidate
                continue
            if line:
                lines.append(line)
            while word and doc.width(word, size, font) > width:  # a word longer than the line: break it
                cut = max(1, int(len(word) * width / doc.width(word, size, font)))
                lines.append(word[:cut])
                word = word[cut:]
            line = word
        lines.append(line)
    return lines


def _draw(doc: _Doc, drawing: Drawing, top: float, scale: float, shift: float, visible: float,
          spans: list[tuple[float, float]]) -> None:
    """Items of ``drawing`` whose drawing-y lies in [shift, shift + visible/scale], placed at ``top``
    (``spans``: each item's drawing-y extent, from ``_span``)."""
    ox = _M + max(0.0, (_AVAIL - drawing.width * scale) / 2)

    def at(x: float, y: float) -> tuple[float, float]:
        return ox + x * scale, top + (y - shift) * scale

    low, high = shift - _SLACK, shift + visible / scale + _SLACK
    with doc.pdf.rect_clip(_M, top, _AVAIL, visible):  # only this page's slice of a tall drawing
        for item, (y0, y1) in zip(drawing.items, spans):
            if y0 > high or y1 < low:
                continue  # on another page's slice: drawing it clipped away cost as much as drawing it
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


_SLACK = 20.0  # drawing units: text hangs above its baseline, strokes beyond their points


def _span(item: Rect | Line | Circle | Text) -> tuple[float, float]:
    """The drawing-y extent of ``item`` (``_SLACK`` covers strokes and descenders)."""
    if isinstance(item, Rect):
        return item.y, item.y + item.h
    if isinstance(item, Line):
        ys = [y for _, y in item.points] or [0.0]
        return min(ys), max(ys)
    if isinstance(item, Circle):
        return item.y - item.r, item.y + item.r
    return item.y - item.size, item.y  # Text: y is the baseline


def _figure(doc: _Doc, fig: Figure) -> None:
    scale = min(1.0, _AVAIL / drawing_width(fig.drawing))
    height = fig.drawing.height * scale
    # on one page when it fits on a page; a taller one starts here unless little room is left
    doc.ensure(height if height <= _H - 2 * _M else _MIN_START)
    shift = 0.0
    spans = [_span(item) for item in fig.drawing.items]
    while True:  # a drawing taller than a page continues on the next ones
        visible = min(height - shift * scale, _H - _M - doc.y)
        _draw(doc, fig.drawing, doc.y, scale, shift, visible, spans)
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
        min(max([doc.width(r[i][:200], size) for r in table.rows] + [doc.width(table.header[i], size, "F2")]), 220)
        + 2 * pad
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
            text = _fit(doc, cell, widths[i] - 2 * pad, size, font)
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


def _lines(doc: _Doc, lines: list[str], size: float, font: str, x: float = _M, color: str = "#222222") -> None:
    for line in lines:
        doc.ensure(size * 1.35)
        doc.text(x, doc.y + size, line, size, font, color=color)
        doc.y += size * 1.35


def render_pdf(report: Report) -> bytes:
    """The report as the bytes of a PDF file."""
    doc = _Doc(report.title, _has_cjk(report))
    _lines(doc, _wrap(doc, report.title, _AVAIL, 16, "F2"), 16, "F2")
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
            _lines(doc, _wrap(doc, block.text, _AVAIL, 12, "F2"), 12, "F2")
            doc.polyline([(_M, doc.y), (_W - _M, doc.y)], "#cccccc", 0.5)
            doc.y += 6
        elif isinstance(block, Facts):
            for key, value in block.rows:
                lines = _wrap(doc, value, _AVAIL - 100, 8)
                doc.ensure(10 * len(lines))
                doc.text(_M, doc.y + 8, key, 8, "F2", color="#555555")
                _lines(doc, lines, 8, "F1", _M + 100)
        elif isinstance(block, Table):
            _table(doc, block)
        elif isinstance(block, Figure):
            _figure(doc, block)
        elif isinstance(block, Paragraph):
            font = "F2" if block.warning else "F1"  # a warning in bold red
            _lines(doc, _wrap(doc, block.text, _AVAIL, 9, font), 9, font, color="#a40000" if block.warning else "#222222")
            doc.y += 4
        elif isinstance(block, Code):
            _lines(doc, _code_lines(block.text, 7), 7, "F3")
    for page in range(1, doc.pages + 1):  # the footer, once the page count is known
        doc.pdf.page = page
        doc.text(_W / 2, _H - 20, f"page {page} of {doc.pages}", 7, anchor="middle", color="#808080")
    return bytes(doc.pdf.output())

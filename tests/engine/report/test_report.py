"""The report: self-contained HTML with escaped model strings, a PDF that renders, and the CLI."""

from __future__ import annotations

import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pytest

from engine.cli.main import main
from engine.report.document import build_report
from engine.report.html import render_html
from engine.report.write import write_report
from engine.report.charts import Drawing, Text, to_svg
from engine.model.session import Session
from engine.io.session_file import save_session
from tests.engine.io.test_session_file import HOSTILE, _private_cache, make_session  # noqa: F401 (autouse fixture)


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str | None]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs += attrs

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _html(tmp_path: Path, session: Session) -> str:
    write_report(session, tmp_path / "report.html")
    return (tmp_path / "report.html").read_text(encoding="utf-8")


def test_model_strings_are_escaped_everywhere(tmp_path: Path) -> None:
    text = _html(tmp_path, make_session(tmp_path, hostile=True))
    assert "<script>" not in text and '"&<>' not in text
    parsed = _Tags()
    parsed.feed(text)
    assert "script" not in parsed.tags
    assert not [a for a in parsed.attrs if a[0].startswith("on")]  # no event handlers slipped in
    shown = "".join(parsed.text)
    assert shown.count(HOSTILE[0]) >= 3 and shown.count(HOSTILE[1]) >= 3  # table, charts, graph: shown as text
    for svg in re.findall(r"<svg.*?</svg>", text, flags=re.DOTALL):
        ET.fromstring(svg)  # every chart is well-formed XML, so escaping held inside SVG too


def test_html_is_self_contained_and_has_every_section(tmp_path: Path) -> None:
    s = make_session(tmp_path)
    s.set_notes("Checked on <b>Monday</b>")
    text = _html(tmp_path, s)
    assert not re.search(r"(src|href)\s*=", text) and "<link" not in text and "@import" not in text
    assert re.findall(r"https?://[^\s\"']+", text) == ["http://www.w3.org/2000/svg"] * text.count("<svg")
    for needle in ("Baseline vs optimized", "Per-layer", "Sensitivity", "Latency", "Graph by routine", "Trials",
                   "Plan", "ONNX Runtime", "1.85x faster", "block1_b", "tuned", "&lt;b&gt;Monday"):  # fmt: skip
        assert needle in text, needle
    assert text.count("<svg") == 4  # sensitivity, latency, graph, Pareto


def test_report_of_a_session_with_nothing_measured(tmp_path: Path) -> None:
    full = make_session(tmp_path)
    bare = Session()
    bare.set_model(full.model_path, full.graph)
    report = build_report(bare)
    text = render_html(report)
    assert "No end-to-end measurement yet" in text and "no measured trials" in text


def test_svg_escapes_text() -> None:
    svg = to_svg(Drawing(10, 10, [Text(0, 0, '</text><script>alert(1)</script>"')]))
    assert "<script>" not in svg
    ET.fromstring(svg)


def test_pdf_renders(tmp_path: Path) -> None:
    s = make_session(tmp_path, hostile=True)
    write_report(s, tmp_path / "report.pdf")
    data = (tmp_path / "report.pdf").read_bytes()
    assert data.startswith(b"%PDF-1.") and data.rstrip().endswith(b"%%EOF")
    from pypdf import PdfReader

    extracted = "".join(page.extract_text() for page in PdfReader(tmp_path / "report.pdf").pages)
    for needle in ("Baseline vs optimized", "block1_b", HOSTILE[0], HOSTILE[1], "1.85x faster", '"precision": "int8"'):
        assert needle in extracted, needle
    if not shutil.which("pdftotext") or not shutil.which("pdftoppm"):
        pytest.skip("poppler-utils not installed: cannot render the PDF here")
    text = subprocess.run(["pdftotext", "-layout", str(tmp_path / "report.pdf"), "-"], capture_output=True, text=True, check=True).stdout
    for needle in ("Baseline vs optimized", "block1_b", HOSTILE[0], "1.85x faster", '"precision": "int8"'):
        assert needle in text, needle
    done = subprocess.run(["pdftoppm", "-r", "30", "-png", str(tmp_path / "report.pdf"), str(tmp_path / "page")], capture_output=True, text=True, check=False)
    assert done.returncode == 0 and "Error" not in done.stderr, done.stderr
    assert len(list(tmp_path.glob("page-*.png"))) >= 2


def test_pdf_cells_as_wide_as_their_column_are_not_cut(tmp_path: Path) -> None:
    """A column is as wide as its widest text: that text (often the header, e.g. drop or rank) shows whole."""
    from pypdf import PdfReader

    from engine.report.document import Table
    from engine.report.pdf import _Doc, _fit, _table

    s = make_session(tmp_path)
    write_report(s, tmp_path / "report.pdf")
    extracted = "".join(page.extract_text() for page in PdfReader(tmp_path / "report.pdf").pages)
    header = build_report(s).blocks
    tables = [b for b in header if isinstance(b, Table)]
    cells = {c for t in tables for c in (*t.header, *(c for row in t.rows for c in row))}
    cut = sorted(c for c in cells if c and c not in extracted and c.replace(" ", "") not in extracted.replace(" ", ""))
    assert not cut and "\u2026" not in extracted, (cut, extracted.count("\u2026"))
    doc = _Doc("t", False)
    for text in ("drop", "rank", "Latency p10\u2013p90", "9.456 ms \u2013 11.8 ms", "fp32 latency"):
        for font in ("F1", "F2"):
            width = doc.width(text, 7.0, font)
            assert _fit(doc, text, width + 8.0 - 8.0, 7.0, font) == text  # the table's pad added and taken off
    _table(doc, Table(("drop", "rank"), (("0", "\u2013"),), (True, True)))  # draws without raising


def test_cli_writes_html_and_rejects_other_suffixes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LAYERLAB_CACHE", str(tmp_path / "cache"))
    session = tmp_path / "s.layerlab.json"
    save_session(make_session(tmp_path), session)
    assert main(["report", str(session), "-o", str(tmp_path / "r.html"), "--csv", str(tmp_path / "l.csv")]) == 0
    assert (tmp_path / "r.html").is_file() and (tmp_path / "l.csv").is_file()
    assert main(["report", str(session), "-o", str(tmp_path / "r.docx")]) == 2
    assert "must end in .html or .pdf" in capsys.readouterr().err
    (tmp_path / "model.onnx").rename(tmp_path / "moved.onnx")
    assert main(["report", str(session), "-o", str(tmp_path / "r.html")]) == 2
    assert "--model" in capsys.readouterr().err
    assert main(["report", str(session), "-o", str(tmp_path / "r.pdf"), "--model", str(tmp_path / "moved.onnx")]) == 0


_SCRIPTS = {
    "stem": "畳み込み層",  # Japanese
    "block0_a": "卷积层一",  # Chinese
    "block0_b": "Свёртка_один",  # Cyrillic
    "block1_a": "طبقة_الالتفاف",  # Arabic (right to left, joined forms)
    "block1_b": "שכבת_קונבולוציה",  # Hebrew (right to left)
}


def test_pdf_keeps_names_in_every_script(tmp_path: Path) -> None:
    """CJK, Cyrillic, Arabic and Hebrew layer names survive into the PDF's text (the old writer printed '?')."""
    import onnx
    from pypdf import PdfReader

    session = make_session(tmp_path)
    model = onnx.load(str(session.model_path))
    for node in model.graph.node:
        node.name = _SCRIPTS.get(node.name, node.name)
    (tmp_path / "u").mkdir()
    renamed = tmp_path / "u" / "model.onnx"
    onnx.save(model, renamed)
    from engine.ir.graph import load_model

    bare = Session()
    bare.set_model(renamed, load_model(renamed))
    write_report(bare, tmp_path / "u.pdf")
    # pypdf reads the CJK run (fpdf2 writes it as a CFF font with an embedded UCS-2 encoding CMap)
    # with a NUL before each character; poppler's pdftotext reads the same bytes cleanly.
    text = "".join(page.extract_text() for page in PdfReader(tmp_path / "u.pdf").pages).replace("\x00", "")
    for name in _SCRIPTS.values():
        # a right-to-left name is laid out in visual order: its words come out right to left, each
        # word's letters in logical order; so look for every word
        assert all(word in text for word in name.split("_")), (name, text[:400])
    assert "Свёртка_один" in text and "畳み込み層" in text
    assert "?" * 3 not in text


def _marker(field: str) -> str:
    return f"<img src=x onerror=alert('{field}')>"


def test_every_report_field_is_escaped(tmp_path: Path) -> None:
    """Each header value and session string carries its own markup; each must come out as text, never as a tag."""
    folder = tmp_path / _marker("folder")
    folder.mkdir()
    s = make_session(folder, hostile=True)
    s.input_shapes = {_marker("input"): (1, 3, 16, 16)}
    s.machine = {"cpu": _marker("cpu"), "cores": _marker("cores"), "system": _marker("system"),
                 "python": "3", "onnxruntime": _marker("ort")}
    s.evaluator_path = folder / f"{_marker('evaluator')}.py"
    s.path = folder / f"{_marker('session')}.layerlab.json"
    s.set_notes(_marker("notes"))
    s.shape_notes = [_marker("shapes")]
    text = _html(tmp_path, s)
    parsed = _Tags()
    parsed.feed(text)
    assert "img" not in parsed.tags and "script" not in parsed.tags
    assert not [a for a in parsed.attrs if a[0].startswith("on")]
    shown = "".join(parsed.text)
    for field in ("folder", "input", "cpu", "cores", "system", "ort", "evaluator", "session", "notes", "shapes"):
        assert _marker(field) in shown, field
        assert _marker(field) not in text, field  # only its escaped form is in the file


def test_report_says_where_int8_calibration_came_from(tmp_path: Path) -> None:
    s = make_session(tmp_path)  # calibrated on samples split off from the evaluator's
    text = _html(tmp_path, s)
    assert "int8 was calibrated on 8 samples split off from the evaluator&#x27;s 40 (not scored); 8 input(s) at " \
           "x=1x3x16x16." in text
    assert 'class="warning"' not in text
    s.set_calibration(None)  # the plan has int8 but nothing recorded how it was calibrated
    assert "Not recorded in this session" in _html(tmp_path, s)
    s.set_plan(None)
    s.set_route(None)
    assert "int8 calibration" not in _html(tmp_path, s)  # no int8 anywhere: nothing to say


def test_random_calibration_session_report_carries_the_warning(tmp_path: Path) -> None:
    import html

    from pypdf import PdfReader

    from engine.evaluate.calibration import RANDOM_WARNING, calibration_for
    from engine.io.session_file import load_session

    s = make_session(tmp_path)
    record = calibration_for(s.graph).record()  # no evaluator: random inputs at the graph's shapes
    assert record.random and record.count == 4 and record.shapes == {"x": [[1, 3, 16, 16]]}
    s.set_calibration(record)
    save_session(s, tmp_path / "s.layerlab.json")
    loaded = load_session(tmp_path / "s.layerlab.json")  # the report of the session as the file keeps it
    assert loaded.calibration == record
    text = _html(tmp_path, loaded)
    assert f'<p class="warning">Warning: {html.escape(RANDOM_WARNING)}.' in text
    assert "int8 was calibrated on random inputs (no evaluator); 4 input(s) at x=1x3x16x16." in text
    write_report(loaded, tmp_path / "report.pdf")
    pdf = " ".join("".join(page.extract_text() for page in PdfReader(tmp_path / "report.pdf").pages).split())
    assert f"Warning: {RANDOM_WARNING}." in pdf
    assert "int8 was calibrated on random inputs (no evaluator); 4 input(s) at x=1x3x16x16." in pdf


def test_report_says_where_the_input_shapes_came_from(tmp_path: Path) -> None:
    import html

    from pypdf import PdfReader

    from engine.io.session_file import load_session
    from tests.engine.io.test_session_file import SHAPE_NOTES

    save_session(make_session(tmp_path), tmp_path / "s.layerlab.json")
    loaded = load_session(tmp_path / "s.layerlab.json")  # the report of the session as the file keeps it
    said = "; ".join(SHAPE_NOTES)
    assert html.escape(said) in _html(tmp_path, loaded)
    write_report(loaded, tmp_path / "report.pdf")
    pdf = " ".join("".join(page.extract_text() for page in PdfReader(tmp_path / "report.pdf").pages).split())
    assert " ".join(SHAPE_NOTES[0].split()) in pdf and "batch dim of x (batch) set to 1" in pdf
    loaded.shape_notes = []  # shapes given nowhere else (a session made before the notes were kept)
    assert "Shapes from" not in _html(tmp_path, loaded)

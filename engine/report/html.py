"""The report as one self-contained HTML file: inline CSS and SVG, no network.

Every string from the model or the session is escaped with ``html.escape`` (in SVG too, see
``engine.report.charts.to_svg``).
"""

from __future__ import annotations

import html
import importlib.resources
import logging
import string
from pathlib import Path

from engine.report.charts import to_svg
from engine.report.document import Block, Facts, Figure, Heading, Paragraph, Report, Table

__all__ = ["render_html"]

logger = logging.getLogger(__name__)

_TEMPLATE = Path(str(importlib.resources.files("resources") / "report_template.html"))


def _html_block(block: Block) -> str:
    e = html.escape
    if isinstance(block, Heading):
        return f"<h{block.level}>{e(block.text)}</h{block.level}>"
    if isinstance(block, Facts):
        rows = "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in block.rows)
        return f'<table class="facts">{rows}</table>'
    if isinstance(block, Table):
        head = "".join(f"<th>{e(h)}</th>" for h in block.header)
        body = "".join(
            "<tr>" + "".join(f'<td class="{"num" if n else ""}">{e(c)}</td>' for c, n in zip(row, block.numeric)) + "</tr>"
            for row in block.rows
        )
        return f'<table class="data"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
    if isinstance(block, Figure):
        return f'<figure>{to_svg(block.drawing)}<figcaption>{e(block.caption)}</figcaption></figure>'
    if isinstance(block, Paragraph):
        tag = '<p class="warning">' if block.warning else "<p>"
        return "".join(f"{tag}{e(part)}</p>" for part in block.text.split("\n\n"))
    return f"<pre>{e(block.text)}</pre>"


def render_html(report: Report) -> str:
    """One self-contained HTML document."""
    template = string.Template(_TEMPLATE.read_text(encoding="utf-8"))
    body = "\n".join(_html_block(b) for b in report.blocks)
    return template.substitute(title=html.escape(report.title), body=body)

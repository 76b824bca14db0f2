"""Writing the report to disk: HTML or PDF by the file's suffix, atomically.

``write_report`` does it in one call (the CLI). The window's worker job (``engine.jobs.report_job``)
takes the steps apart: ``check_report_path`` before any work, ``render_report`` (the slow part, which a
cancel may abandon), then ``save_report``, so a cancelled export leaves no file behind.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from engine.errors import LayerLabError
from engine.io.files import atomic_write_text
from engine.model.session import Session
from engine.report.document import build_report
from engine.report.html import render_html
from engine.report.pdf import render_pdf

__all__ = ["write_report", "check_report_path", "render_report", "save_report"]

logger = logging.getLogger(__name__)


def check_report_path(path: str | os.PathLike[str]) -> Path:
    """``path`` as a Path; LayerLabError naming it when the suffix is not .html/.htm/.pdf or its folder is missing."""
    path = Path(path)
    if path.suffix.lower() not in (".html", ".htm", ".pdf"):
        raise LayerLabError(f"{path}: report must end in .html or .pdf")
    if not path.parent.is_dir():
        raise LayerLabError(f"{path}: folder {path.parent} does not exist")
    return path


def render_report(session: Session, path: str | os.PathLike[str]) -> bytes | str:
    """The report of ``session`` in the format ``path``'s suffix names: PDF bytes or HTML text."""
    report = build_report(session)
    return render_pdf(report) if Path(path).suffix.lower() == ".pdf" else render_html(report)


def save_report(path: str | os.PathLike[str], data: bytes | str) -> Path:
    """Write what ``render_report`` made to ``path`` atomically (readers see the old file or the new one)."""
    path = Path(path)
    if isinstance(data, str):
        atomic_write_text(path, data)
    else:
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            tmp.write_bytes(data)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    logger.info("wrote report %s", path)
    return path


def write_report(session: Session, path: str | os.PathLike[str]) -> Path:
    """Write the report as HTML (``.html``/``.htm``) or PDF (``.pdf``), atomically."""
    path = check_report_path(path)
    return save_report(path, render_report(session, path))

"""Writing the report to disk: HTML or PDF by the file's suffix, atomically."""

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

__all__ = ["write_report"]

logger = logging.getLogger(__name__)


def write_report(session: Session, path: str | os.PathLike[str]) -> Path:
    """Write the report as HTML (``.html``/``.htm``) or PDF (``.pdf``), atomically."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".html", ".htm", ".pdf"):
        raise LayerLabError(f"{path}: report must end in .html or .pdf")
    if not path.parent.is_dir():
        raise LayerLabError(f"{path}: folder {path.parent} does not exist")
    report = build_report(session)
    if suffix == ".pdf":
        data = render_pdf(report)
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            tmp.write_bytes(data)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    else:
        atomic_write_text(path, render_html(report))
    logger.info("wrote report %s", path)
    return path

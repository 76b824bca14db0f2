"""``layerlab report``: write a session's optimization report as one HTML file or a PDF."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

__all__ = ["add_parser", "run"]

logger = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="optimization report of a session (HTML or PDF)")
    p.add_argument("session", help="session file (.layerlab.json)")
    p.add_argument("-o", "--output", required=True, help="report.html (self-contained) or report.pdf")
    p.add_argument("--model", help="the session's model, when it has moved since the session was saved")
    p.add_argument("--csv", help="also write the per-layer table as CSV")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from engine.report.export import write_layer_csv
    from engine.report.write import write_report
    from engine.io.session_file import ModelMovedError, load_session

    try:
        session = load_session(args.session, model_path=args.model)  # the report never runs the evaluator
    except ModelMovedError as exc:
        raise type(exc)(f"{exc}; pass --model PATH", exc.expected_path, exc.session_path) from None
    path = write_report(session, Path(args.output))
    print(f"wrote {path}")
    if args.csv:
        print(f"wrote {write_layer_csv(session, args.csv)}")
    return 0

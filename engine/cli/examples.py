"""``layerlab examples``: list the example models, or fetch one."""

from __future__ import annotations

import argparse
import logging
import sys

__all__ = ["add_parser", "run"]

logger = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("examples", help="list or fetch the example models")
    p.add_argument("--fetch", metavar="NAME", help="download and verify an example")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from engine.io.examples import fetch_example, list_examples

    if args.fetch:
        example = fetch_example(args.fetch, progress=lambda msg: print(msg, file=sys.stderr))
        print(example.model)
        return 0
    for ex in list_examples():
        where = str(ex.model) if ex.model else f"not fetched: layerlab examples --fetch {ex.name}"
        print(f"{ex.name:<12} {ex.description}\n{'':<12} model: {where}\n{'':<12} eval:  {ex.eval or '-'}")
    return 0

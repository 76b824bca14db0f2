"""The ``layerlab`` command: one sub-command per job, each a thin shell over the engine.

Errors a user can fix (``LayerLabError``) end with exit code 2 and one line on stderr; the command
never shows a traceback for bad input. ``LAYERLAB_DEBUG=1`` shows tracebacks for everything.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from importlib import metadata
from types import ModuleType
from typing import Sequence

from engine.errors import LayerLabError, one_line

__all__ = ["main", "build_parser", "command_modules"]

logger = logging.getLogger(__name__)

# One module per sub-command, each with ``add_parser(sub)`` (sets ``func=run``) and ``run(args) -> int``;
# listed in the order ``layerlab --help`` shows them.
_MODULES = ["inspect", "examples", "profile", "apply", "report", "gui", "evaluate", "sensitivity", "tune", "bench", "agent"]


def command_modules() -> list[ModuleType]:
    """The command modules, imported (each keeps its heavy imports inside ``run``)."""
    return [importlib.import_module(f"engine.cli.{name}") for name in _MODULES]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every sub-command."""
    parser = argparse.ArgumentParser(prog="layerlab", description="Profile and optimize ONNX models layer by layer.")
    parser.add_argument("--version", action="version", version=f"layerlab {_version()}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the engine does")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in command_modules():
        module.add_parser(sub)
    return parser


def _version() -> str:
    try:
        return metadata.version("layerlab")
    except metadata.PackageNotFoundError:
        return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``layerlab`` command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    _quiet_libraries(args.verbose)
    if args.command is None:  # plain `layerlab` opens the window
        args = parser.parse_args([*(sys.argv[1:] if argv is None else argv), "gui"])
    try:
        return args.func(args)
    except LayerLabError as exc:
        if os.environ.get("LAYERLAB_DEBUG"):
            raise
        print(f"layerlab {args.command}: error: {one_line(exc, 1000)}", file=sys.stderr)
        return 2
    except MemoryError as exc:  # a shape or model too big for this machine: say so in one line
        if os.environ.get("LAYERLAB_DEBUG"):
            raise
        print(f"layerlab {args.command}: error: out of memory ({one_line(exc)})", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head`: not an error
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print(f"layerlab {args.command}: interrupted", file=sys.stderr)
        return 130


def _quiet_libraries(verbose: bool) -> None:
    """An error is one line: ONNX Runtime's own log and numpy's RuntimeWarnings (overflow in a user's
    data, NaN in a hostile model) would print before it. ``-v`` shows them again, as log records."""
    logging.captureWarnings(True)
    logging.getLogger("py.warnings").setLevel(logging.INFO if verbose else logging.ERROR)
    try:
        import onnxruntime as ort
    except ImportError:  # the window-less commands that need it say so themselves
        return
    ort.set_default_logger_severity(2 if verbose else 4)  # 4: fatal only; errors reach us as exceptions


if __name__ == "__main__":
    sys.exit(main())

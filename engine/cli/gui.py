"""``layerlab gui``: open the explorer window (plain ``layerlab`` does the same), optionally on a model.

Qt is imported inside ``run`` only, so the engine and the other commands work where Qt is absent.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from pathlib import Path

from engine.cli.common import add_shape_arguments
from engine.errors import LayerLabError

__all__ = ["add_parser", "run"]

logger = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("gui", help="open the explorer window (the default with no command)")
    p.add_argument("model", nargs="?", help="ONNX file, or an example name (see `layerlab examples`)")
    add_shape_arguments(p)
    p.add_argument("--eval", metavar="E", type=Path, help="evaluator: a .npz data set or an evaluator script (default: the example's)")
    p.add_argument("--screenshot", metavar="OUT.png", type=Path,
                   help="wait until loading, profiling (and sensitivity with --eval) finish, save a PNG of the window and exit")
    p.add_argument("--colour", metavar="MODE", choices=("kind", "sensitivity", "latency", "routine", "macs"),
                   help="colour the graph by kind, sensitivity, latency, routine or macs")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from engine.cli.common import evaluator_path, given_by, input_shapes, resolve_model

    from engine.ir.resolve import parse_dim

    model, shapes = None, {}
    if getattr(args, "model", None):
        model, defaults = resolve_model(args.model)
        shapes = input_shapes(args, defaults)
    dims = dict(parse_dim(text) for text in getattr(args, "dim", None) or [])
    evaluator = evaluator_path(args, required=False) if model is not None else getattr(args, "eval", None)
    evaluator = Path(evaluator) if evaluator is not None else None
    if evaluator is not None and not Path(evaluator).exists():
        raise LayerLabError(f"{evaluator}: no such evaluator file")
    screenshot = getattr(args, "screenshot", None)
    if screenshot is not None:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # a screenshot needs no display
    elif sys.platform.startswith("linux") and not any(
        os.environ.get(v) for v in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")
    ):
        raise LayerLabError("no display to open the window on (DISPLAY is not set); see `layerlab --help`")
    try:
        # The one place the engine reaches into gui/, at run time only: by name, so that the
        # headless contract (import-linter) holds for every static import below engine/.
        run_app = importlib.import_module("gui.app").run_app
    except ImportError as exc:
        raise LayerLabError(f"the window needs PySide6 and pyqtgraph ({exc}); the other commands work without") from None
    colour = getattr(args, "colour", None)
    extra = ({"colour": colour} if colour else {}) | ({"dims": dims} if dims else {}) | ({"given_by": given_by(args)} if shapes else {})
    return run_app(model, shapes, evaluator, screenshot, **extra)

"""Helpers shared by the sub-commands: model resolution, input shapes, number formatting."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Sequence

__all__ = ["format_count", "resolve_model", "input_shapes", "shape_text", "add_model_arguments", "evaluator_path",
           "add_target_arguments", "remote_target"]

logger = logging.getLogger(__name__)


def format_count(value: int | float | None, unit: str = "") -> str:
    """Human-readable count: 1234567 -> '1.23M'; None -> '?'."""
    if value is None:
        return "?"
    for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g}{suffix}{unit}"
    return f"{value:.3g}{unit}" if isinstance(value, float) else f"{value}{unit}"


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """MODEL and --input, the same for every command that reads a model."""
    parser.add_argument("model", help="ONNX file, or an example name (see `layerlab examples`)")
    parser.add_argument(
        "--input", action="append", metavar="NAME=SHAPE", help="concrete input shape, e.g. x=1x3x48x320 (repeatable)"
    )


def resolve_model(text: str) -> tuple[Path, dict[str, tuple[int, ...]]]:
    """A model path, or the name of an example (fetched when needed); returns the path and its default shapes."""
    path = Path(text)
    if path.exists() or path.suffix == ".onnx" or os.sep in text:
        return path, {}
    from engine.io.examples import get_example

    example = get_example(text, fetch=True)
    assert example.model is not None
    return example.model, dict(example.input_shapes)


def input_shapes(args: argparse.Namespace, defaults: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    """Shapes from --input; an example's default shapes when none are given."""
    from engine.ir.graph import parse_input_shape

    if not args.input:
        return dict(defaults)
    return dict(parse_input_shape(text) for text in args.input)


def shape_text(shape: Sequence[object] | None) -> str:
    """1x3x48x320; '?' for unknown dims or shapes."""
    if shape is None:
        return "?"
    return "x".join("?" if d is None else str(d) for d in shape) or "scalar"


def evaluator_path(args: argparse.Namespace, *, required: bool = True) -> str | None:
    """--eval, or the evaluator of the example named as MODEL; None (or an error when required) otherwise."""
    from engine.errors import LayerLabError

    if args.eval:
        return str(args.eval)
    model = getattr(args, "model", None)
    if model and not Path(model).exists() and not model.endswith(".onnx") and os.sep not in model:
        from engine.io.examples import get_example

        example = get_example(model)
        if example.eval is not None:
            return str(example.eval)
    if required:
        raise LayerLabError(f"{model}: give an evaluator with --eval (a .py file or an .npz)")
    return None


def add_target_arguments(parser: argparse.ArgumentParser) -> None:
    """--target, --token-file, --cafile: measure on a remote agent (``layerlab agent``) instead of here."""
    parser.add_argument("--target", metavar="HOST:PORT|NAME",
                        help="measure on a remote agent (HOST:PORT, https://HOST:PORT, or a name from targets.json)")
    parser.add_argument("--token-file", metavar="FILE", help="the agent's bearer token (file of mode 600)")
    parser.add_argument("--cafile", metavar="PEM", help="CA certificate to verify an https:// target")


def remote_target(args: argparse.Namespace) -> object | None:
    """The RemoteTarget named by --target (its info fetched, so a wrong token fails here), or None."""
    if not getattr(args, "target", None):
        return None
    from engine.measure.remote import RemoteTarget
    from engine.measure.targets import resolve_target

    remote = RemoteTarget(resolve_target(args.target, args.token_file, args.cafile))
    remote.info()
    return remote

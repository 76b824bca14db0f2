"""The ``layerlab`` command: one sub-command per job, each a thin shell over the engine.

Errors a user can fix (``LayerLabError``) end with exit code 2 and one line on stderr; the command
never shows a traceback for bad input. ``LAYERLAB_DEBUG=1`` shows tracebacks for everything.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from importlib import metadata
from pathlib import Path
from typing import Callable, Sequence

from engine.errors import LayerLabError

__all__ = ["main", "build_parser", "resolve_model", "format_count"]

logger = logging.getLogger(__name__)

_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def _command(name: str) -> Callable[[Callable[[argparse.Namespace], int]], Callable[[argparse.Namespace], int]]:
    def register(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        _COMMANDS[name] = func
        return func

    return register


def format_count(value: int | float | None, unit: str = "") -> str:
    """Human-readable count: 1234567 -> '1.23M'; None -> '?'."""
    if value is None:
        return "?"
    for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g}{suffix}{unit}"
    return f"{value:g}{unit}" if isinstance(value, float) else f"{value}{unit}"


def resolve_model(text: str) -> tuple[Path, dict[str, tuple[int, ...]]]:
    """A model path, or the name of an example (fetched when needed); returns the path and its default shapes."""
    path = Path(text)
    if path.exists() or path.suffix == ".onnx" or os.sep in text:
        return path, {}
    from engine.examples import get_example

    example = get_example(text, fetch=True)
    assert example.model is not None
    return example.model, dict(example.input_shapes)


def _input_shapes(args: argparse.Namespace, defaults: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    from engine.graph import parse_input_shape

    shapes = dict(defaults)
    for text in args.input or []:
        name, shape = parse_input_shape(text)
        shapes[name] = shape
    return shapes


def _shape_text(shape: Sequence[object] | None) -> str:
    if shape is None:
        return "?"
    return "x".join("?" if d is None else str(d) for d in shape) or "scalar"


@_command("inspect")
def _inspect(args: argparse.Namespace) -> int:
    from engine.graph import load_model

    path, defaults = resolve_model(args.model)
    graph = load_model(path, _input_shapes(args, defaults if not args.input else {}))
    if args.json:
        out = {
            "model": str(path),
            "opset": graph.opset,
            "inputs": [{"name": t.name, "dtype": t.dtype, "shape": t.shape} for t in graph.inputs],
            "layers": [
                {
                    "name": n.name,
                    "op": n.op_type,
                    "tunable": n.tunable,
                    "macs": n.macs,
                    "params": n.params,
                    "out_shape": n.out_shapes[0] if n.out_shapes else None,
                }
                for n in graph.nodes
            ],
            "totals": {"macs": graph.total_macs, "params": graph.total_params},
        }
        print(json.dumps(out, indent=1))
        return 0
    rows = [n for n in graph.nodes if args.all or n.tunable]
    print(f"{path}  opset {graph.opset}  {len(graph.nodes)} nodes, {len(graph.layers)} layers")
    for t in graph.inputs:
        print(f"  input  {t.name}: {t.dtype} {_shape_text(t.shape)}")
    for t in graph.outputs:
        print(f"  output {t.name}: {t.dtype} {_shape_text(t.shape)}")
    width = max([len(n.name) for n in rows] + [4])
    print(f"\n{'name':<{width}}  {'op':<14} {'out shape':<18} {'MACs':>8} {'params':>8} {'bytes':>8}")
    for n in rows:
        shape = _shape_text(n.out_shapes[0] if n.out_shapes else None)
        print(
            f"{n.name:<{width}}  {n.op_type:<14} {shape:<18} {format_count(n.macs):>8} "
            f"{format_count(n.params):>8} {format_count(n.weight_bytes, 'B'):>8}"
        )
    print(
        f"\ntotal: {format_count(graph.total_macs)} MACs, {format_count(graph.total_params)} params, "
        f"{format_count(graph.total_weight_bytes, 'B')} weights"
    )
    if graph.total_macs is None:
        print("(some MACs unknown: give concrete input shapes with --input NAME=DxDx...)")
    return 0


@_command("examples")
def _examples(args: argparse.Namespace) -> int:
    from engine.examples import fetch_example, list_examples

    if args.fetch:
        example = fetch_example(args.fetch, progress=lambda msg: print(msg, file=sys.stderr))
        print(example.model)
        return 0
    for ex in list_examples():
        where = str(ex.model) if ex.model else "not fetched: layerlab examples --fetch " + ex.name
        print(f"{ex.name:<12} {ex.description}\n{'':<12} model: {where}\n{'':<12} eval:  {ex.eval or '-'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every sub-command."""
    parser = argparse.ArgumentParser(prog="layerlab", description="Profile and optimize ONNX models layer by layer.")
    parser.add_argument("--version", action="version", version=f"layerlab {_version()}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the engine does")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("inspect", help="layer table: shapes, MACs, params, bytes")
    p.add_argument("model", help="ONNX file, or an example name (see `layerlab examples`)")
    p.add_argument("--input", action="append", metavar="NAME=SHAPE", help="concrete input shape, e.g. x=1x3x48x320")
    p.add_argument("--all", action="store_true", help="list every node, not only the layers")
    p.add_argument("--json", action="store_true", help="print JSON (every node)")

    p = sub.add_parser("examples", help="list or fetch the example models")
    p.add_argument("--fetch", metavar="NAME", help="download and verify an example")
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
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return _COMMANDS[args.command](args)
    except LayerLabError as exc:
        if os.environ.get("LAYERLAB_DEBUG"):
            raise
        print(f"layerlab {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head`: not an error
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print(f"layerlab {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

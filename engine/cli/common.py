"""Helpers shared by the sub-commands: model resolution, input shapes, number formatting."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

__all__ = ["add_int8_arguments", "int8_choices", "format_count", "resolve_model", "input_shapes", "given_by", "load_graph", "load_graph_noted", "shape_text", "shapes_text",
           "add_model_arguments", "add_shape_arguments", "evaluator_path", "add_target_arguments", "remote_target",
           "add_providers_argument", "providers_of"]

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
    """MODEL, --input and --dim, the same for every command that reads a model."""
    parser.add_argument("model", help="ONNX file, or an example name (see `layerlab examples`)")
    add_shape_arguments(parser)


def add_shape_arguments(parser: argparse.ArgumentParser) -> None:
    """--input NAME=SHAPE and --dim NAME=VALUE (both repeatable)."""
    parser.add_argument(
        "--input", action="append", metavar="NAME=SHAPE",
        help="concrete input shape, e.g. x=1x3x48x320, or sr=scalar for a rank-0 input (repeatable)",
    )
    parser.add_argument(
        "--dim", action="append", metavar="NAME=VALUE",
        help="size of a named symbolic dim in every input, e.g. --dim sequence_length=128 (repeatable)",
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
    """Shapes from --input; an example's default shapes when neither --input nor --dim is given."""
    from engine.ir.graph import parse_input_shape

    if not getattr(args, "input", None):
        return {} if getattr(args, "dim", None) else dict(defaults)
    return dict(parse_input_shape(text) for text in args.input)


def load_graph(args: argparse.Namespace, path: Path, defaults: dict[str, tuple[int, ...]], *,
               evaluator: Any = None, strict: bool = True) -> Any:
    """The model loaded at input shapes settled by ``engine.ir.resolve``'s order: --input/--dim, the evaluator, batch 1.

    Every choice not given on the command line is said on stderr, once the model has loaded (a bad
    file is one line, nothing before it). ``strict``: a dim still unknown is an error naming it and
    both flags; otherwise the inputs that stay dynamic keep their symbolic dims.
    """
    return load_graph_noted(args, path, defaults, evaluator=evaluator, strict=strict)[0]


def given_by(args: argparse.Namespace) -> str:
    """How shapes ``input_shapes`` returns were given: on the command line, or an example's default."""
    return "with --input" if getattr(args, "input", None) else "as the example's default"


def load_graph_noted(args: argparse.Namespace, path: Path, defaults: dict[str, tuple[int, ...]], *,
                     evaluator: Any = None, strict: bool = True) -> tuple[Any, list[str]]:
    """``load_graph`` and where its input shapes came from (``ResolvedShapes.sources``), which a
    session file and the report keep."""
    import onnx

    from engine.ir.graph import load_model
    from engine.ir.resolve import declared_inputs, parse_dim, resolve_input_shapes, sample_shapes

    explicit = input_shapes(args, defaults)
    dims = dict(parse_dim(text) for text in getattr(args, "dim", None) or [])
    try:  # the declared inputs only: no external data, no validation (load_model reports a bad file)
        declared = declared_inputs(onnx.load(str(path), load_external_data=False))
    except Exception:  # noqa: BLE001 - load_model names the problem in one line
        return load_model(path, explicit), []
    samples = sample_shapes(inputs for inputs, _ in evaluator.samples()) if evaluator is not None else None
    resolved = resolve_input_shapes(declared, explicit, dims, samples, label=str(path), given_by=given_by(args))
    if strict and resolved.missing:
        load_model(path, resolved.shapes)  # a broken file is the first thing to say
        resolved.require(str(path))
    graph = load_model(path, resolved.shapes)
    for note in resolved.notes:
        print(f"{path.name}: {note}", file=sys.stderr)
    return graph, resolved.sources


def shapes_text(shapes: Mapping[str, Sequence[object]]) -> str:
    """x=1x3x48x320, sr=scalar: how the output states the shapes it used."""
    return ", ".join(f"{name}={shape_text(tuple(shape))}" for name, shape in shapes.items()) or "none"


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


def add_int8_arguments(parser: argparse.ArgumentParser) -> None:
    """The sweep's int8 variants per layer (tune and sensitivity): calibration methods and int8 methods."""
    parser.add_argument("--calibration", default="minmax", metavar="M,...",
                        help="int8 calibration methods to try per layer, the smallest drop wins: minmax, percentile99.9, "
                             "percentile99.99, percentile99.999, entropy (default: minmax)")
    parser.add_argument("--int8-methods", default="", metavar="M,...",
                        help="per-layer int8 methods to try on top of each calibration method, alone and together, the "
                             "smallest drop wins: cle (cross-layer equalization of the Conv pair the layer ends), "
                             "bias_correction, smoothquant (activation outliers of a MatMul/Gemm moved into its weights), "
                             "symmetric (the layer's activation ranges symmetric: uint8 with zero point 128) "
                             "(default: none)")


def int8_choices(args: argparse.Namespace) -> dict[str, tuple[str, ...]]:
    """``calibration`` and ``int8_methods`` for SweepSettings or TuneOptions, from ``add_int8_arguments``."""
    split = lambda text: tuple(m.strip() for m in text.split(",") if m.strip())
    return {"calibration": split(args.calibration), "int8_methods": split(args.int8_methods)}


def add_target_arguments(parser: argparse.ArgumentParser) -> None:
    """--target, --token-file, --cafile: measure on a remote agent (``layerlab agent``) instead of here."""
    parser.add_argument("--target", metavar="HOST:PORT|NAME",
                        help="measure on a remote agent (HOST:PORT, https://HOST:PORT, or a name from targets.json)")
    parser.add_argument("--token-file", metavar="FILE", help="the agent's bearer token (file of mode 600)")
    parser.add_argument("--cafile", metavar="PEM", help="CA certificate to verify an https:// target")


def add_providers_argument(parser: argparse.ArgumentParser) -> None:
    """--providers A,B: other execution providers whose per-layer routine tables are built (here or on --target)."""
    parser.add_argument("--providers", default="", metavar="A,B",
                        help="also time every layer's segment as a micro-model on these execution providers (fp32 and int8), "
                             "as routines fp32@<EP>/int8@<EP>, with the cost of crossing between them and CPU")


def providers_of(args: argparse.Namespace) -> tuple[str, ...]:
    """The --providers list, in order, without blanks or repeats."""
    return tuple(dict.fromkeys(p.strip() for p in getattr(args, "providers", "").split(",") if p.strip()))


def remote_target(args: argparse.Namespace) -> object | None:
    """The RemoteTarget named by --target (its info fetched, so a wrong token fails here), or None."""
    if not getattr(args, "target", None):
        return None
    from engine.measure.remote import RemoteTarget
    from engine.measure.targets import resolve_target

    remote = RemoteTarget(resolve_target(args.target, args.token_file, args.cafile))
    remote.info()
    return remote

"""Concrete input shapes for a model with symbolic dims: never guessed, always said.

Order, per dim that the file leaves open (a ``dim_param``, no value, or a value <= 0 as Paddle
exports write ``-1``):

1. ``--input NAME=SHAPE`` fixes a whole input; ``--dim NAME=VALUE`` a named dim in every input.
2. The evaluator's samples: the most frequent shape of each input (a note shows the spread when
   the samples vary).
3. A leading dim named like a batch (``batch``, ``batch_size``, ``N``; or Paddle's ``-1``/unnamed
   leading dim) is 1, and a note says so. It comes after the evaluator on purpose: an evaluator
   whose samples have a batch of 4 must be profiled at 4, or its feeds would not fit.
4. Otherwise :func:`resolve_input_shapes` raises one line naming the dims and both flags; the
   window asks instead (:attr:`ResolvedShapes.missing`).

``notes`` say what was chosen without being given (printed by the CLI); ``given`` says what was
given and how (``--input``, ``--dim``, the shape dialog, an example's default). Both together,
:attr:`ResolvedShapes.sources`, are where the shapes came from: the session file and the report keep it.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import onnx

from engine.errors import SettingsError

__all__ = ["BATCH_NAMES", "DeclaredInput", "ResolvedShapes", "declared_inputs", "parse_dim", "resolve_input_shapes",
           "sample_shapes", "shape_label"]

logger = logging.getLogger(__name__)

#: Dim names taken for a batch (compared lower-case) when they lead an input's shape.
BATCH_NAMES = frozenset({"batch", "batch_size", "batchsize", "n", "bs", "p2o.dynamicdimension.n"})

Dim = int | str | None  # a fixed size, a named dim, an unnamed dynamic dim


@dataclass(frozen=True)
class DeclaredInput:
    """A graph input as the file declares it: dims are ints (fixed), names, or None (unnamed or <= 0)."""

    name: str
    dtype: int  # ONNX elem_type
    dims: tuple[Dim, ...] | None  # None: the file gives no shape at all

    @property
    def dynamic(self) -> bool:
        return self.dims is None or any(not isinstance(d, int) for d in self.dims)


@dataclass
class ResolvedShapes:
    """The shapes chosen for every dynamic input, where each came from, and what is still missing."""

    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    missing: dict[str, tuple[Dim, ...]] = field(default_factory=dict)  # input -> dims with the unresolved left open
    given: list[str] = field(default_factory=list)  # what was given, and how: not repeated on the CLI

    @property
    def sources(self) -> list[str]:
        """Where every shape came from: what was given, then what was chosen (sessions and reports keep it)."""
        return [*self.given, *self.notes]

    def require(self, label: str) -> dict[str, tuple[int, ...]]:
        """The shapes; SettingsError naming every unresolved dim and both flags when any is left."""
        if not self.missing:
            return dict(self.shapes)
        parts, dims_flags, input_flags = [], [], []
        for name, dims in self.missing.items():
            open_dims = [f"dim {i}" + (f" {d!r}" if isinstance(d, str) else "") for i, d in enumerate(dims)
                         if not isinstance(d, int)]
            parts.append(f"{name} ({shape_label(dims)}: {', '.join(open_dims)})")
            dims_flags += [f"--dim {d}=N" for d in dims if isinstance(d, str)]
            input_flags.append(f"--input {name}={'x'.join(str(d) if isinstance(d, int) else 'N' for d in dims)}")
        hint = " or ".join(filter(None, [" ".join(input_flags), " ".join(dict.fromkeys(dims_flags))]))
        raise SettingsError(f"{label}: input dims unknown: {'; '.join(parts)}; give {hint}, or an evaluator with --eval")


def shape_label(dims: Sequence[Dim] | None) -> str:
    """1x3x48xwidth; '?' for unnamed dims; 'scalar' for rank 0."""
    if dims is None:
        return "?"
    return "x".join("?" if d is None else str(d) for d in dims) or "scalar"


def declared_inputs(model: onnx.ModelProto) -> list[DeclaredInput]:
    """The real inputs of ``model`` (initializers listed as inputs are constants, not inputs)."""
    inits = {t.name for t in model.graph.initializer}
    out = []
    for vi in model.graph.input:
        if vi.name in inits or not vi.type.HasField("tensor_type"):
            continue
        tt = vi.type.tensor_type
        dims: tuple[Dim, ...] | None = None
        if tt.HasField("shape"):
            dims = tuple(_dim(d) for d in tt.shape.dim)
        out.append(DeclaredInput(vi.name, int(tt.elem_type), dims))
    return out


def _dim(d: onnx.TensorShapeProto.Dimension) -> Dim:
    if d.HasField("dim_value"):
        return int(d.dim_value) if d.dim_value > 0 else None  # Paddle's -1 (and 0) mean dynamic
    if d.HasField("dim_param") and d.dim_param.strip() and d.dim_param.strip() != "?":
        return d.dim_param.strip()
    return None


def parse_dim(text: str) -> tuple[str, int]:
    """``seq=128`` (as given to ``--dim``) into a name and a positive size."""
    name, sep, value = text.partition("=")
    name = name.strip()
    if not sep or not name:
        raise SettingsError(f"--dim {text!r}: expected NAME=VALUE, e.g. --dim sequence_length=128")
    try:
        size = int(value)
    except ValueError:
        raise SettingsError(f"--dim {text!r}: the value must be a whole number") from None
    if size <= 0:
        raise SettingsError(f"--dim {text!r}: the value must be positive")
    return name, size


def sample_shapes(samples: Iterable[Mapping[str, object]]) -> dict[str, Counter[tuple[int, ...]]]:
    """How often each input shape occurs in an evaluator's sample inputs."""
    counts: dict[str, Counter[tuple[int, ...]]] = {}
    for inputs in samples:
        for name, array in inputs.items():
            shape = tuple(int(d) for d in getattr(array, "shape", ()))
            counts.setdefault(name, Counter())[shape] += 1
    return counts


def resolve_input_shapes(
    inputs: Sequence[DeclaredInput],
    explicit: Mapping[str, tuple[int, ...]] | None = None,
    dims: Mapping[str, int] | None = None,
    samples: Mapping[str, Counter[tuple[int, ...]]] | None = None,
    label: str = "<model>",
    given_by: str = "with --input",
) -> ResolvedShapes:
    """Concrete shapes for the dynamic inputs, in the module's order; ``missing`` lists what is left.
    ``given_by`` says how ``explicit`` was given, for ``given`` ("in the shape dialog", ...)."""
    explicit, dims, samples = dict(explicit or {}), dict(dims or {}), dict(samples or {})
    known = {i.name: i for i in inputs}
    for name in explicit:
        if name not in known:
            raise SettingsError(f"{label}: no input named {name!r} (inputs: {', '.join(known)})")
    names = {d for i in inputs for d in (i.dims or ()) if isinstance(d, str)}
    unused = sorted(set(dims) - names)
    if unused:
        raise SettingsError(f"{label}: no dim named {unused[0]!r} (named dims: {', '.join(sorted(names)) or 'none'})")
    out = ResolvedShapes()
    batch_set: list[str] = []
    for inp in inputs:
        if inp.name in explicit:
            out.shapes[inp.name] = _check_explicit(inp, explicit[inp.name], label)
            out.given.append(f"{inp.name}: {shape_label(out.shapes[inp.name])} given {given_by}")
            continue
        if not inp.dynamic:
            continue
        current: list[Dim] = list(inp.dims) if inp.dims is not None else []
        current = [dims.get(d, d) if isinstance(d, str) else d for d in current]
        if any(not isinstance(d, int) for d in current) or inp.dims is None:
            current = _from_samples(inp, current, samples.get(inp.name), out.notes) or current
        batch = inp.dims is not None and bool(current) and not isinstance(current[0], int) and _batch_like(inp.dims[0])
        if batch:
            current[0] = 1
        if inp.dims is None and not samples.get(inp.name):
            out.missing[inp.name] = ()  # no declared shape: only --input can say it
        elif all(isinstance(d, int) for d in current):
            out.shapes[inp.name] = tuple(int(d) for d in current)  # type: ignore[arg-type]
            if batch:  # said only where it is used: an input left open is not set at all
                batch_set.append(inp.name + (f" ({inp.dims[0]})" if isinstance(inp.dims[0], str) else ""))  # type: ignore[index]
        else:
            out.missing[inp.name] = tuple(current)
    out.given += [f"{name}={size} given with --dim" for name, size in dims.items()]
    if batch_set:
        out.notes.append(f"batch dim of {', '.join(batch_set)} set to 1 (give --input or --dim to change it)")
    for name, shape in out.shapes.items():
        logger.debug("%s: input %s at %s", label, name, shape_label(shape))
    return out


def _check_explicit(inp: DeclaredInput, shape: tuple[int, ...], label: str) -> tuple[int, ...]:
    if inp.dims is None:
        return tuple(shape)
    if len(inp.dims) != len(shape):
        raise SettingsError(f"{label}: input {inp.name!r} has rank {len(inp.dims)} ({shape_label(inp.dims)}), "
                            f"got {inp.name}={shape_label(shape)}")
    for i, (d, given) in enumerate(zip(inp.dims, shape)):
        if isinstance(d, int) and d != given:
            raise SettingsError(f"{label}: input {inp.name!r} dim {i} is fixed at {d}, got {given}")
    return tuple(shape)


def _from_samples(inp: DeclaredInput, current: list[Dim], counts: Counter[tuple[int, ...]] | None,
                  notes: list[str]) -> list[Dim] | None:
    """The most frequent sample shape where it fits the declared dims; a note on where it came from."""
    if not counts:
        return None
    fitting = Counter({s: c for s, c in counts.items()
                       if inp.dims is None or (len(s) == len(current) and all(
                           not isinstance(d, int) or d == v for d, v in zip(current, s)))})
    if not fitting:
        return None
    (shape, count), total = fitting.most_common(1)[0], sum(fitting.values())
    if len(fitting) == 1:
        notes.append(f"{inp.name}: {shape_label(shape)} from the evaluator's {total} sample(s)")
    else:
        spread = ", ".join(f"{shape_label(s)} x{c}" for s, c in fitting.most_common(4))
        more = f", ... {len(fitting) - 4} more" if len(fitting) > 4 else ""
        notes.append(f"{inp.name}: the evaluator's samples vary ({len(fitting)} shapes: {spread}{more}); "
                     f"using the most frequent, {shape_label(shape)} ({count} of {total})")
    return list(shape)


def _batch_like(dim: Dim) -> bool:
    """A leading dim that names a batch, or is left unnamed (Paddle writes -1 there)."""
    return dim is None or (isinstance(dim, str) and dim.lower() in BATCH_NAMES)

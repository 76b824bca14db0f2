"""Run a mixed-provider route: the graph split at provider borders, one ONNX Runtime session per part.

A route places each layer on an execution provider (``int8@OpenVINO`` runs int8 on OpenVINO, plain
``int8`` on the CPU provider); every op goes with its segment's layer (``engine.ir.partition.owners``).
The topological order is cut into maximal runs of one provider (``chunks``); each run becomes a
sub-model of the fp32 model (``cut``, typed at the profiled shapes), and its layers take their
precision inside it (``PrecisionPass``, int8 calibrated on the part's own inputs, computed by running
the fp32 parts before it). ``PartitionedSession`` runs the parts in order, each in a session on its
provider, handing tensors across as numpy arrays: the price of a provider border that
``engine.measure.provider_tables`` measures. It answers ``run(None, feeds)`` like an ORT session, so
the timing code (``time_runs``, ``interleaved_latency``) times it as it times a model.

This is how LayerLab *measures* a mixed route on any ONNX Runtime build. ORT builds that pin nodes to
devices themselves (``layer_ann``, ``engine.report.provider_export``) are the deployment route where
they exist.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import onnx

from engine.errors import LayerLabError, SettingsError
from engine.ir.graph import ModelGraph
from engine.ir.partition import Chunk, chunks, cut
from engine.measure import timing
from engine.measure.provider_costs import placement
from engine.measure.providers import CPU, split_routine
from engine.passes.precision import PrecisionPass

__all__ = ["Part", "PartitionedModel", "PartitionedSession", "build_parts", "partition"]

logger = logging.getLogger(__name__)

_PRECISIONS = ("fp32", "int8", "int8_dynamic", "fp16")


@dataclass(frozen=True)
class Part:
    """One session's worth of the route: a sub-model, the provider it runs on, what it reads and writes."""

    provider: str
    model: onnx.ModelProto
    inputs: list[str]
    outputs: list[str]


@dataclass(frozen=True)
class PartitionedModel:
    """The parts of a route in run order, and the graph's output names."""

    parts: list[Part]
    outputs: list[str]
    # ORT's intra-op threads spin after a run; parts run in turn must not (each part's spinning threads
    # would fight the next part for the cores: 25x slower on a loaded 2-core machine). None: spin only
    # when there is one part (a plain session, as deployed); False: never (a like-for-like control).
    spin: bool | None = None

    def session(self, threads: int, label: str) -> PartitionedSession:
        """Sessions for every part (ORT_ENABLE_ALL, ``threads`` each, as ``timing.make_session`` builds them)."""
        return PartitionedSession(self, threads, label)

    @property
    def providers(self) -> list[str]:
        return [p.provider for p in self.parts]


class PartitionedSession:
    """Runs the parts in order; ``run(None, feeds)`` returns the graph outputs like ``InferenceSession.run``."""

    def __init__(self, model: PartitionedModel, threads: int, label: str) -> None:
        self.model = model
        self.label = label
        spin = len(model.parts) == 1 if model.spin is None else model.spin
        self._sessions = [timing.make_session(p.model, threads, f"{label} [part {i} on {p.provider}]", provider=p.provider,
                                              spin=spin) for i, p in enumerate(model.parts)]

    def run(self, output_names: Sequence[str] | None, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        values = self.run_all(feeds)
        return [values[t] for t in (output_names or self.model.outputs)]

    def run_all(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every tensor handed between parts, and the outputs."""
        values = dict(feeds)
        for part, session in zip(self.model.parts, self._sessions):
            outs = session.run(part.outputs, {t: values[t] for t in part.inputs})
            values.update(zip(part.outputs, outs))
        return values


def partition(graph: ModelGraph, routines: Mapping[str, str], feeds: Mapping[str, np.ndarray],
              threads: int = 1) -> PartitionedModel:
    """The route ``routines`` (layer -> routine, others fp32 on CPU) as parts; ``feeds`` calibrate int8."""
    precision = {}
    for layer, routine in routines.items():
        precision[layer] = split_routine(routine)[0]
    return build_parts(graph, chunks(graph, placement(graph, routines)), precision, feeds, threads)


def build_parts(graph: ModelGraph, runs: Sequence[Chunk], precision: Mapping[str, str],
                feeds: Mapping[str, np.ndarray], threads: int = 1) -> PartitionedModel:
    """Parts for ``runs`` (chunks in topological order), each layer in its ``precision`` (fp32 when not named)."""
    bad = {k: v for k, v in precision.items() if v not in _PRECISIONS}
    if bad:
        layer, routine = next(iter(bad.items()))
        raise SettingsError(f"{graph.label}: routine {routine!r} of {layer!r} cannot run in a partitioned "
                            f"route (precisions: {', '.join(_PRECISIONS)})")
    outputs = [o.name for o in graph.outputs]
    fp32 = [_part(graph, c, i) for i, c in enumerate(runs)]
    if all(v == "fp32" for v in precision.values()):
        return PartitionedModel(fp32, outputs)
    # int8 calibrates on each part's own inputs: the fp32 values there, from the fp32 parts run in turn
    values = PartitionedModel([Part(CPU, p.model, p.inputs, p.outputs) for p in fp32], outputs).session(
        threads, graph.label).run_all(feeds)
    parts = []
    for chunk, part in zip(runs, fp32):
        chosen = {p: [n for n in chunk.nodes if precision.get(n) == p] for p in _PRECISIONS[1:]}
        if not any(chosen.values()):
            parts.append(part)
            continue
        sample = {t: values[t] for t in part.inputs}
        try:
            result = PrecisionPass(calibration=[sample, sample], **chosen)(part.model)
        except SettingsError as exc:
            raise LayerLabError(f"{graph.label}: precision of the part on {chunk.provider} failed ({exc})") from None
        parts.append(Part(part.provider, result.model, part.inputs, part.outputs))
    return PartitionedModel(parts, outputs)


def _part(graph: ModelGraph, chunk: Chunk, index: int) -> Part:
    model, inputs, outputs = cut(graph.model, chunk.nodes, infos=graph.tensors, name=f"part{index}")
    return Part(chunk.provider, model, inputs, outputs)


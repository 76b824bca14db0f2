"""A profile with fixed, known numbers for tune and DPRS tests: no timing can move what they check."""

from __future__ import annotations

from engine.ir.graph import ModelGraph
from engine.measure.tables import AdaptCost, LayerProfile, Profile, Stats

__all__ = ["fixed_profile"]


def fixed_profile(graph: ModelGraph) -> Profile:
    """A profile of ``graph`` with fixed, known numbers (no timing involved): node i takes 1 + i/4 ms in fp32
    and a tenth of that in int8 (ops 0.02 ms); every adapt on a layer's activations is priced by a small
    distinct number; the all-int8 run saw one Transpose and the fp32 run one reorder (so border weights
    are fractions); a Quantize costs 1.5x its micro-model in context, a Dequantize 1.25x."""
    layers, adapts = [], [AdaptCost("", "run", 0.05, "fp32")]
    for i, node in enumerate(graph.nodes):
        ms = 1.0 + i / 4 if node.tunable else 0.02
        routines = {"fp32": ms, "int8": ms / 10} if node.tunable else {}
        layers.append(LayerProfile(node.name, node.op_type, node.tunable, ms, routines, int8_ops=ms / 8))
    sites = dict.fromkeys(t for n in graph.layers for t in [*n.inputs, *n.outputs]
                          if t and t not in n.weights and t in graph.tensors)
    for k, t in enumerate(sites):
        four_d = len(graph.tensors[t].shape or ()) == 4
        for j, kind in enumerate(("quantize", "dequantize", "cast", "transpose", "layout")):
            if kind in ("quantize", "dequantize", "cast") or four_d:
                adapts.append(AdaptCost(t, kind, 0.001 * (1 + k) + 0.0003 * j))
    first = next(iter(sites))
    adapts += [AdaptCost(first, "transpose", 0.004, "int8"), AdaptCost(first, "reorder", 0.003, "fp32")]
    return Profile(Stats(9.0, 8.5, 9.5), 1.0, layers, adapts, threads=1, ort_version="fixed",
                   model_sha256=graph.sha256, adapt_scale={"quantize": 1.5, "dequantize": 1.25})

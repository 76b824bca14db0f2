"""``layerlab inspect``: the layer table (shapes, MACs, params, bytes) and totals."""

from __future__ import annotations

import argparse
import json
import logging

from engine.cli.common import add_model_arguments, format_count, load_graph, resolve_model, shape_text

__all__ = ["add_parser", "run"]

logger = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inspect", help="layer table: shapes, MACs, params, bytes")
    add_model_arguments(p)
    p.add_argument("--all", action="store_true", help="list every node, not only the layers")
    p.add_argument("--json", action="store_true", help="print JSON (every node)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from engine.ir.graph import load_model

    path, defaults = resolve_model(args.model)
    # Without --input/--dim the file's own dims are shown (symbolic ones as names, MACs '?'): a
    # description, not a measurement, so no batch default; dims still open stay symbolic too.
    graph = load_graph(args, path, defaults, strict=False) if args.input or args.dim else load_model(path, defaults)
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
        print(f"  input  {t.name}: {t.dtype} {shape_text(t.shape)}")
    for t in graph.outputs:
        print(f"  output {t.name}: {t.dtype} {shape_text(t.shape)}")
    width = max([len(n.name) for n in rows] + [4])
    print(f"\n{'name':<{width}}  {'op':<14} {'out shape':<18} {'MACs':>8} {'params':>8} {'bytes':>8}")
    for n in rows:
        shape = shape_text(n.out_shapes[0] if n.out_shapes else None)
        print(
            f"{n.name:<{width}}  {n.op_type:<14} {shape:<18} {format_count(n.macs):>8} "
            f"{format_count(n.params):>8} {format_count(n.weight_bytes, 'B'):>8}"
        )
    print(
        f"\ntotal: {format_count(graph.total_macs)} MACs, {format_count(graph.total_params)} params, "
        f"{format_count(graph.total_weight_bytes, 'B')} weights"
    )
    if graph.total_macs is None:
        print("(some MACs unknown: give concrete input shapes with --input NAME=DxDx... or --dim NAME=N)")
    return 0

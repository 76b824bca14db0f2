"""Benchmark for engine.layout: time ``layout_graph``, then ``wrap_layout`` into a 1.5:1 view, on 2,000-node model-like DAGs (and a random one).

Run ``python tests/bench/bench_layout.py``; it prints the median and spread (min..max) over repeats.
Target: each graph under a second on the project machines.
"""

from __future__ import annotations

import itertools
import logging
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a checkout

from engine.layout.layered import layout_graph  # after the path insert above
from engine.layout.wrap import wrap_layout

__all__ = ["chain", "main", "random_dag", "resnet_like", "transformer_like"]

logger = logging.getLogger(__name__)

Graph = tuple[list[str], list[tuple[str, str]]]


def chain(n: int) -> Graph:
    """n nodes in a line."""
    nodes = [f"n{i}" for i in range(n)]
    return nodes, list(itertools.pairwise(nodes))


def resnet_like(n: int) -> Graph:
    """Stem, then blocks conv-bn-relu-conv-bn-add-relu with a skip; every 4th skip has a 1x1 conv."""
    nodes, edges = ["input", "stem"], [("input", "stem")]
    prev, block = "stem", 0
    while len(nodes) + 8 <= n:
        b = f"b{block}"
        body = [f"{b}.conv1", f"{b}.bn1", f"{b}.relu1", f"{b}.conv2", f"{b}.bn2", f"{b}.add", f"{b}.relu"]
        nodes += body
        edges += [(prev, body[0])] + list(itertools.pairwise(body))
        if block % 4 == 0:
            nodes.append(f"{b}.down")
            edges += [(prev, f"{b}.down"), (f"{b}.down", f"{b}.add")]
        else:
            edges.append((prev, f"{b}.add"))
        prev, block = body[-1], block + 1
    while len(nodes) < n:
        edges.append((prev, f"tail{len(nodes)}"))
        prev = f"tail{len(nodes)}"
        nodes.append(prev)
    return nodes, edges


def transformer_like(n: int) -> Graph:
    """Pre-norm blocks: LN, q/k/v, scores, softmax, context, proj, add, LN, MLP, add (two skips)."""
    nodes, edges = ["tokens", "embed"], [("tokens", "embed")]
    x, layer = "embed", 0
    block = [("x", "ln1"), ("ln1", "q"), ("ln1", "k"), ("ln1", "v"), ("q", "scores"), ("k", "scores"),
             ("scores", "softmax"), ("softmax", "context"), ("v", "context"), ("context", "proj"),
             ("proj", "add1"), ("x", "add1"), ("add1", "ln2"), ("ln2", "fc1"), ("fc1", "gelu"),
             ("gelu", "fc2"), ("fc2", "add2"), ("add1", "add2")]
    names = ["ln1", "q", "k", "v", "scores", "softmax", "context", "proj", "add1",
             "ln2", "fc1", "gelu", "fc2", "add2"]
    while len(nodes) + len(names) <= n:
        p = f"l{layer}."
        nodes += [p + s for s in names]
        edges += [(x if a == "x" else p + a, p + b) for a, b in block]
        x, layer = p + "add2", layer + 1
    while len(nodes) < n:
        edges.append((x, f"tail{len(nodes)}"))
        x = f"tail{len(nodes)}"
        nodes.append(x)
    return nodes, edges


def random_dag(n: int, seed: int = 0) -> Graph:
    """A harder, wider case: each node takes 1-3 inputs from the 30 nodes before it."""
    rng = random.Random(seed)
    nodes = [f"n{i}" for i in range(n)]
    edges = [(nodes[rng.randrange(max(0, i - 30), i)], nodes[i])
             for i in range(1, n) for _ in range(rng.randint(1, 3))]
    return nodes, edges


def _time(graph: Graph, repeats: int) -> tuple[list[float], list[float], int]:
    nodes, edges = graph
    times, wraps, columns = [], [], 0
    for _ in range(repeats):
        start = time.perf_counter()
        layout = layout_graph(nodes, edges)
        middle = time.perf_counter()
        columns = len(wrap_layout(layout, 1.5).columns)
        times.append(middle - start)
        wraps.append(time.perf_counter() - middle)
    return times, wraps, columns


def main(repeats: int = 7, n: int = 2000) -> None:
    """Print median and spread of layout time for each benchmark graph."""
    for name, make in (("chain", chain), ("resnet-like", resnet_like), ("transformer-like", transformer_like),
                       ("random-dag", random_dag)):
        graph = make(n)
        times, wraps, columns = _time(graph, repeats)
        print(f"{name:17s} nodes={len(graph[0]):5d} edges={len(graph[1]):5d}  "
              f"median {statistics.median(times) * 1e3:7.1f} ms  "
              f"spread {min(times) * 1e3:.1f}..{max(times) * 1e3:.1f} ms  "
              f"wrap {statistics.median(wraps) * 1e3:6.1f} ms ({min(wraps) * 1e3:.1f}..{max(wraps) * 1e3:.1f}) "
              f"into {columns} columns  ({repeats} repeats)")


if __name__ == "__main__":
    main()

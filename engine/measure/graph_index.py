"""Plan-independent walks of a graph that latency prediction repeats, done once per graph and kept.

``predict_ms`` and DPRS's route problem ask, for every Conv layer's input and output tensor, which
layers the tensor reaches through ops (``reached_layers``); the answer depends only on the graph, yet
it was walked again for every plan (about 47 ms a prediction on a 1,000-node model, most of a live
prediction). ``graph_index(graph)`` keeps the producers, consumers and every answer asked for, per
graph object, for as long as that graph lives; a graph whose node list changed gets a fresh index.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Mapping
from typing import Any

__all__ = ["GraphIndex", "graph_index", "reached_layers"]

logger = logging.getLogger(__name__)

_ISLAND_LIMIT = 32  # tensors explored per border: islands are local, and this bounds the cost


def reached_layers(tensor: str, producers: Mapping[str, Any], consumers: Mapping[str, list[Any]], upstream: bool,
                   past_open_ends: bool = False) -> tuple[list[Any], bool]:
    """Layers reached from ``tensor`` through ops, and whether a graph input/output or a constant (open end)
    was reached; ``past_open_ends``: walk on past them (an op next to a constant still sits next to its layers)."""
    frontier, seen, found, open_end = [tensor], set(), {}, False
    while frontier and len(seen) < _ISLAND_LIMIT:
        t = frontier.pop()
        if t in seen:
            continue
        seen.add(t)
        nodes = ([producers[t]] if t in producers else []) if upstream else consumers.get(t, [])
        if not nodes:
            open_end = True
            if past_open_ends:
                continue
            break
        for node in nodes:
            if node.tunable:
                found[node.name] = node
            else:
                frontier += [x for x in (node.inputs if upstream else node.outputs) if x]
    return list(found.values()), open_end


class GraphIndex:
    """A graph's producers and consumers by tensor, and ``reach`` answers memoised (safe to share across threads:
    two threads asking the same new question both walk, and store the same answer)."""

    def __init__(self, graph: Any) -> None:
        self.size = len(graph.nodes)
        self.producers: dict[str, Any] = {o: n for n in graph.nodes for o in n.outputs}
        self.consumers: dict[str, list[Any]] = {}
        for n in graph.nodes:
            for t in dict.fromkeys(n.inputs):  # a node reading a tensor twice is one consumer
                self.consumers.setdefault(t, []).append(n)
        self._reach: dict[tuple[str, bool, bool], tuple[tuple[Any, ...], bool]] = {}

    def reach(self, tensor: str, upstream: bool, past_open_ends: bool = False) -> tuple[tuple[Any, ...], bool]:
        """``reached_layers`` of ``tensor`` in this graph, walked once."""
        key = (tensor, upstream, past_open_ends)
        answer = self._reach.get(key)
        if answer is None:
            found, open_end = reached_layers(tensor, self.producers, self.consumers, upstream, past_open_ends)
            answer = self._reach[key] = (tuple(found), open_end)
        return answer


_indexes: dict[int, tuple[weakref.ref, GraphIndex]] = {}
_lock = threading.Lock()


def _forget(key: int, ref: weakref.ref) -> None:
    with _lock:
        if key in _indexes and _indexes[key][0] is ref:
            del _indexes[key]


def graph_index(graph: Any) -> GraphIndex:
    """The index of ``graph`` (built on first use, dropped with the graph)."""
    key = id(graph)
    with _lock:
        entry = _indexes.get(key)
    if entry is not None and entry[0]() is graph and entry[1].size == len(graph.nodes):
        return entry[1]
    index = GraphIndex(graph)
    ref = weakref.ref(graph, lambda r, k=key: _forget(k, r))
    with _lock:
        _indexes[key] = (ref, index)
    return index

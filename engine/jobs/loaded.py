"""What a worker process keeps loaded between jobs: the model graphs and evaluators it loaded last.

The worker process persists (``engine.jobs.worker``), so the next job on the same model finds the
graph (and the evaluator) already loaded. A file is known by its resolved path, mtime and size, so
a rewritten file is loaded again. No Qt here.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from pathlib import Path
from typing import Any, Mapping

__all__ = ["load_graph", "load_job_evaluator", "forget"]

logger = logging.getLogger(__name__)

_KEEP = 2  # models (and their evaluators) a worker keeps loaded: the open one and the one before
_graphs: "OrderedDict[tuple, Any]" = OrderedDict()
_evaluators: "OrderedDict[tuple, Any]" = OrderedDict()


def _file_key(path: str | Path) -> tuple:
    """A file as of now: a rewritten file is a different key."""
    resolved = Path(path).resolve()
    try:
        stat = resolved.stat()
    except OSError:
        return (str(resolved),)  # missing: the loader says so
    return (str(resolved), stat.st_mtime_ns, stat.st_size)


def _remember(cache: "OrderedDict[tuple, Any]", key: tuple, value: Any) -> Any:
    cache[key] = value
    while len(cache) > _KEEP:
        cache.popitem(last=False)
    return value


def _graph_key(path: str | Path, input_shapes: Mapping[str, tuple[int, ...]] | None) -> tuple:
    return (_file_key(path), tuple(sorted((k, tuple(v)) for k, v in dict(input_shapes or {}).items())))


def load_graph(path: str | Path, input_shapes: Mapping[str, tuple[int, ...]] | None = None) -> Any:
    """``engine.ir.graph.load_model`` with the window's arguments, kept for the next job on the same file and shapes.

    Jobs read the graph and never change it (passes build new models), so one loaded graph serves them all.
    """
    from engine.ir.graph import load_model

    key = _graph_key(path, input_shapes)
    if key in _graphs:
        _graphs.move_to_end(key)
        return _graphs[key]
    return _remember(_graphs, key, load_model(Path(path), dict(input_shapes or {})))


def load_job_evaluator(evaluator: str | Path, path: str | Path,
                       input_shapes: Mapping[str, tuple[int, ...]] | None = None) -> Any:
    """``load_evaluator(evaluator)``, kept for the next job on the same evaluator file *and* model.

    Per model, because a fidelity evaluator takes its labels from the first model it is run against
    (``ensure_reference``).
    """
    from engine.evaluate.evaluator import load_evaluator

    key = (_file_key(evaluator), _graph_key(path, input_shapes))
    if key in _evaluators:
        _evaluators.move_to_end(key)
        return _evaluators[key]
    return _remember(_evaluators, key, load_evaluator(evaluator))


def forget() -> None:
    """Drop everything kept (tests, and a worker told the files changed)."""
    _graphs.clear()
    _evaluators.clear()

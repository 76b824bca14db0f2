"""The one place that decides what inputs a latency is measured on.

With an evaluator, latencies are timed on one of its own samples: real data at the shapes it is
scored at. Data-dependent kernels (NonZero, TopK, Loop, early-exit decoders) and int8_dynamic
(its activation range is computed per run) take different time on real inputs than on generated
ones. The sample taken is the first scored sample whose inputs have the graph's input shapes (the
graph was resolved at the evaluator's most frequent shapes unless ``--input``/``--dim`` said
otherwise). Without an evaluator, or when none of its samples fits the shapes, the inputs are
generated (``engine.ir.feeds.random_feeds``) and the source says why.

``bench``, ``tune`` (its profile, baseline and every round), the window's Profile and Measure, and
``profile --eval`` all take their feeds from :func:`timing_feeds`, and state its ``source``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from engine.evaluate.contract import Evaluator
from engine.ir.graph import ModelGraph
from engine.measure.feeds import feeds_digest
from engine.ir.feeds import random_feeds

__all__ = ["GENERATED", "TimingFeeds", "timing_feeds"]

logger = logging.getLogger(__name__)

#: The source of generated inputs (no evaluator).
GENERATED = "generated inputs (no evaluator)"


@dataclass(frozen=True)
class TimingFeeds:
    """Inputs to time on, where they come from (said in every output), and a digest that names them."""

    feeds: dict[str, np.ndarray] = field(repr=False)
    source: str
    from_evaluator: bool = False

    @property
    def digest(self) -> str:
        return feeds_digest(self.feeds)


def timing_feeds(graph: ModelGraph, evaluator: Evaluator | None = None, seed: int = 0) -> TimingFeeds:
    """The evaluator's first scored sample at ``graph``'s input shapes; else generated inputs (see the module)."""
    if evaluator is None:
        return TimingFeeds(random_feeds(graph, seed), GENERATED)
    names = [t.name for t in graph.inputs]
    wanted = {t.name: tuple(t.shape) for t in graph.inputs if t.shape is not None}
    samples = evaluator.samples()
    for k, (inputs, _) in enumerate(samples):
        if all(n in inputs and _fits(inputs[n].shape, wanted.get(n)) for n in names):
            shapes = ", ".join(f"{n}={'x'.join(map(str, inputs[n].shape)) or 'scalar'}" for n in names)
            fits = sum(1 for s, _ in samples if all(n in s and s[n].shape == inputs[n].shape for n in names))
            source = f"evaluator sample {k} ({fits} of {len(samples)} scored samples at {shapes})"
            logger.info("%s: timing on %s", graph.label, source)
            return TimingFeeds({n: np.asarray(inputs[n]) for n in names}, source, True)
    shown = ", ".join(f"{n}={'x'.join(map(str, s))}" for n, s in wanted.items())
    source = f"generated inputs (none of the evaluator's {len(samples)} samples is at {shown})"
    logger.warning("%s: timing on %s", graph.label, source)
    return TimingFeeds(random_feeds(graph, seed), source)


def _fits(shape: tuple[int, ...], wanted: tuple | None) -> bool:
    """Whether a sample's shape is the graph's (a dim the graph leaves open fits any size)."""
    if wanted is None:
        return True
    return len(shape) == len(wanted) and all(not isinstance(w, int) or w < 0 or w == s for s, w in zip(shape, wanted))

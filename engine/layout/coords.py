"""X coordinates for ``engine.layout.layered``: Brandes-Köpf placement of ordered rank layers, without overlaps.

Input is the expanded graph (real nodes ``0..n-1``, then dummy points of long edges) as rank
layers in their final left-to-right order with up/down neighbour lists; output is one box-centre x
per item. Four vertical alignments (up/down x left/right) are each compacted, shifted to the
narrowest and averaged; shared preferred partners (``_preferences``) keep main chains straight.
"""

from __future__ import annotations

import itertools
import logging

__all__: list[str] = []  # internal to engine.layout.layered, which calls _place_x

logger = logging.getLogger(__name__)


def _place_x(layers: list[list[int]], up: list[list[int]], down: list[list[int]],
             width: list[float], n: int, gap: float) -> list[float]:
    conflicts = _type1_conflicts(layers, up, n)
    pref_up, pref_down = _preferences(layers, up, down, n)
    results = []
    for vertical in ("up", "down"):
        seq = layers if vertical == "up" else layers[::-1]
        nbrs, mine, theirs = (up, pref_up, pref_down) if vertical == "up" else (down, pref_down, pref_up)
        for horizontal in ("left", "right"):
            ordered = seq if horizontal == "left" else [layer[::-1] for layer in seq]
            root = _align(ordered, nbrs, mine, theirs, conflicts)
            xs = _compact(ordered, root, width, gap)
            if horizontal == "right":
                xs = [-x for x in xs]
            results.append((horizontal, xs))
    # Shift the four to the narrowest one (left ones by their left edge, right ones by their
    # right edge), then average: the mean of overlap-free placements is overlap-free.
    placed = [v for layer in layers for v in layer]

    def extent(xs: list[float]) -> tuple[float, float]:
        return min(xs[v] - width[v] / 2 for v in placed), max(xs[v] + width[v] / 2 for v in placed)

    extents = [extent(xs) for _, xs in results]
    lo, hi = min(extents, key=lambda e: e[1] - e[0])
    out = [0.0] * len(width)
    for (horizontal, xs), (a, b) in zip(results, extents):
        shift = lo - a if horizontal == "left" else hi - b
        for v in placed:
            out[v] += (xs[v] + shift) / 4
    return out


def _preferences(layers: list[list[int]], up: list[list[int]], down: list[list[int]],
                 n: int) -> tuple[list[int | None], list[int | None]]:
    """The neighbour above and below each item would like to be aligned with, or None.

    Textbook Brandes-Köpf lets the left and right alignments pick different medians and averages
    them; on model graphs that bends the main chain at every fork and the bends add up to a drift
    across the page. A preference that all four alignments share keeps the main chain straight:
    a real node before a dummy, then the longer way down (forks) or the neighbour already on the
    straight line (joins). A true tie (a diamond) stays None, so it is balanced as usual.
    """
    pos: dict[int, int] = {}
    for layer in layers:
        for i, v in enumerate(layer):
            pos[v] = i
    tall = [0] * len(up)  # most real nodes on a path down to a sink (dummies count 0)
    for layer in reversed(layers):
        for v in layer:
            tall[v] = (v < n) + max((tall[w] for w in down[v]), default=0)

    def pick(v: int, nbrs: list[list[int]], score) -> int | None:
        ws = sorted(nbrs[v], key=pos.__getitem__)
        if not ws:
            return None
        a, b = ws[(len(ws) - 1) // 2], ws[len(ws) // 2]
        if a == b:
            return a
        sa, sb = score(a), score(b)
        return None if sa == sb else (a if sa > sb else b)

    pref_down = [pick(v, down, lambda w: (w < n, tall[w])) for v in range(len(up))]
    on_line = [any(pref_down[u] == v for u in up[v]) for v in range(len(up))]
    pref_up = [pick(v, up, lambda w: (w < n, on_line[w])) for v in range(len(up))]
    return pref_up, pref_down


def _type1_conflicts(layers: list[list[int]], up: list[list[int]], n: int) -> set[tuple[int, int]]:
    # Brandes-Köpf: a non-inner segment crossing an inner (dummy-dummy) segment gives way.
    pos = {v: i for layer in layers for i, v in enumerate(layer)}
    conflicts: set[tuple[int, int]] = set()
    for r in range(1, len(layers)):
        layer, k0, scan = layers[r], 0, 0
        for j, v in enumerate(layer):
            inner = up[v][0] if v >= n and up[v][0] >= n else None
            k1 = pos[inner] if inner is not None else len(layers[r - 1])
            if inner is not None or j == len(layer) - 1:
                for s in layer[scan:j + 1]:
                    for u in up[s]:
                        if (pos[u] < k0 or k1 < pos[u]) and not (u >= n and s >= n):
                            conflicts.add((u, s))
                            conflicts.add((s, u))
                scan, k0 = j + 1, k1
    return conflicts


def _align(ordered: list[list[int]], nbrs: list[list[int]], mine: list[int | None],
           theirs: list[int | None], conflicts: set[tuple[int, int]]) -> list[int]:
    root = list(range(len(nbrs)))
    pos = [0] * len(nbrs)
    for layer in ordered:
        for i, v in enumerate(layer):
            pos[v] = i
    for layer in ordered:
        prev = -1
        for v in layer:
            ws = nbrs[v]
            if not ws:
                continue
            if mine[v] is not None:
                cands = [mine[v]]
            else:
                ws = sorted(ws, key=pos.__getitem__)
                lo, hi = (len(ws) - 1) // 2, len(ws) // 2
                cands = [ws[lo]] if lo == hi else [ws[lo], ws[hi]]
            for w in cands:
                if theirs[w] is not None and theirs[w] != v:
                    continue  # w keeps itself for the neighbour it prefers
                if prev < pos[w] and (w, v) not in conflicts:
                    root[v] = root[w]
                    prev = pos[w]
                    break
    return root


def _compact(ordered: list[list[int]], root: list[int], width: list[float], gap: float) -> list[float]:
    # Block graph: an edge from the block on the left to the block on the right, weighted by
    # the separation the two boxes need. Acyclic because the alignments never cross.
    right_of: dict[int, dict[int, float]] = {}
    indeg: dict[int, int] = {}
    for layer in ordered:
        for v in layer:
            indeg.setdefault(root[v], 0)
        for a, b in itertools.pairwise(layer):
            ra, rb, sep = root[a], root[b], (width[a] + width[b]) / 2 + gap
            out = right_of.setdefault(ra, {})
            if rb not in out:
                indeg[rb] += 1
                out[rb] = sep
            elif out[rb] < sep:
                out[rb] = sep
    order = [r for r, d in indeg.items() if d == 0]
    for r in order:
        for rb in right_of.get(r, ()):
            indeg[rb] -= 1
            if indeg[rb] == 0:
                order.append(rb)
    xs = dict.fromkeys(order, 0.0)
    for r in order:  # smallest coordinates
        for rb, sep in right_of.get(r, {}).items():
            xs[rb] = max(xs[rb], xs[r] + sep)
    for r in reversed(order):  # then pull each block right, up to its right neighbours
        out = right_of.get(r)
        if out:
            xs[r] = max(xs[r], min(xs[rb] - sep for rb, sep in out.items()))
    return [xs.get(root[v], 0.0) for v in range(len(root))]

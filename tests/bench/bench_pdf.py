"""Benchmark for the PDF report (engine/report/pdf.py) of a session with many layers.

Run ``python tests/bench/bench_pdf.py [--blocks 200] [--repeats 3] [--profile]``: builds a residual net of
``2 * blocks + 2`` layers with a profile, an int8 sensitivity table and a route, writes its HTML and PDF
reports and prints the median and spread of each; ``--profile`` prints the PDF's cProfile top 25.
Target: a 400-layer PDF in a few seconds (it took 137 s before the text measure cache).
"""

from __future__ import annotations

import argparse
import cProfile
import logging
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a checkout

import onnx  # noqa: E402

from engine.evaluate.sensitivity import LayerSensitivity, Sensitivity  # noqa: E402
from engine.ir.graph import load_model  # noqa: E402
from engine.measure.tables import LayerProfile, Profile, Stats  # noqa: E402
from engine.model.plan import Plan  # noqa: E402
from engine.model.session import Session  # noqa: E402
from engine.report.write import write_report  # noqa: E402
from engine.optimize.dprs import Route  # noqa: E402
from tests.builders import residual_net  # noqa: E402

__all__ = ["big_session", "main"]

logger = logging.getLogger(__name__)


def big_session(folder: Path, blocks: int) -> Session:
    """A session of a ``2 * blocks + 2``-layer residual net with every table a report shows."""
    path = folder / "big.onnx"
    onnx.save(residual_net(blocks=blocks, channels=4, size=4, seed=3), str(path))
    graph = load_model(path, {"x": (1, 3, 4, 4)})
    layers = graph.layers
    session = Session()
    session.set_model(path, graph, {"x": (1, 3, 4, 4)})
    session.set_plan(Plan())
    session.set_profile(Profile(Stats(10.0, 9.0, 11.0), 1.0, [
        LayerProfile(n.name, n.op_type, True, 0.01 + (i % 17) / 100,
                     {"fp32": 0.01 + (i % 17) / 100, "int8": 0.008 + (i % 13) / 100}) for i, n in enumerate(layers)],
        [], 2, "bench"))
    session.set_sensitivity(Sensitivity(0.9, "accuracy", {
        n.name: LayerSensitivity(n.name, {"int8": (i % 13) / 1000}) for i, n in enumerate(layers)}, True))
    session.set_route(Route({n.name: "int8" if i % 3 else "fp32" for i, n in enumerate(layers)}, 8.0, 0.004, 0, 0.0))
    return session


def _time(fn, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        session = big_session(folder, args.blocks)
        print(f"{len(session.graph.layers)} layers, {len(session.graph.nodes)} nodes")
        for suffix in ("html", "pdf"):
            times = _time(lambda: write_report(session, folder / f"r.{suffix}"), args.repeats)
            size = (folder / f"r.{suffix}").stat().st_size
            print(f"{suffix}: median {statistics.median(times):.2f} s (min {min(times):.2f}, max {max(times):.2f}), "
                  f"{size / 1e6:.2f} MB")
        if args.profile:
            profiler = cProfile.Profile()
            profiler.runcall(write_report, session, folder / "p.pdf")
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)


if __name__ == "__main__":
    main()

"""Execution providers through the agent: segment micro-models timed there (``routines`` job), and a
mixed-provider route measured there as parts. On CPU here (CI has plain ONNX Runtime)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from engine.ir.graph import build_graph
from engine.ir.partition import Chunk
from engine.ir.feeds import random_feeds
from engine.measure.partition import build_parts
from engine.measure.provider_tables import TableOptions, segment_models, time_segments_job
from engine.measure.providers import CPU
from engine.measure.remote import RemoteTarget, Target, TargetError
from engine.progress import run
from tests import builders
from tests.engine.jobs.agent_helpers import AgentProcess, start_agent


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> RemoteTarget:
    a: AgentProcess = start_agent(tmp_path_factory.mktemp("agent"))
    yield RemoteTarget(Target.parse(a.address, a.token_file))
    a.stop()


def test_the_agent_times_every_segment_in_every_routine_as_here(remote: RemoteTarget) -> None:
    graph = build_graph(builders.residual_net(blocks=1, channels=8, size=8))
    feeds = random_feeds(graph, 0)
    entries = segment_models(graph, ("fp32", "int8"), feeds)
    assert sorted({(s.layer, s.routine) for s in entries}) == sorted((n.name, r) for n in graph.layers for r in ("fp32", "int8"))
    options = TableOptions(providers=(CPU,), threads=1, repeats=5, crossings=True)
    there = run(remote.routines_timer()(entries, graph.model, feeds, CPU, 1, options))
    here = run(time_segments_job(entries, graph.model, feeds, CPU, 1, options))
    for got in (there, here):
        assert {k: sorted(v) for k, v in got["routines"].items()} == {n.name: ["fp32", "int8"] for n in graph.layers}
        assert all(ms >= 0 for v in got["routines"].values() for ms in v.values())
        assert set(got["crossings"]) == {f"{CPU}>{CPU}"} and got["whole"]["fp32"]["median"] > 0
        assert got["unsupported"] == {}


def test_the_agent_refuses_a_malformed_segment_list(remote: RemoteTarget) -> None:
    graph = build_graph(builders.conv_stack(n=2, channels=4, size=8))
    feeds = random_feeds(graph, 0)
    blobs = {"model": graph.model.SerializeToString()}
    with pytest.raises(TargetError, match=r"segments: expected a list of at most \d+ \[layer, routine\] pairs"):
        run(remote._job("routines", {"segments": "all"}, blobs))
    with pytest.raises(TargetError, match="segments: routines per provider are fp32 or int8"):
        run(remote._job("routines", {"segments": [["conv_0", "fp16"]]}, {**blobs, "feeds": b""}))
    assert feeds  # the refusals came before any model was read


def test_a_route_split_into_parts_is_measured_on_the_agent(remote: RemoteTarget) -> None:
    graph = build_graph(builders.conv_stack(n=4, channels=8, size=8))
    feeds = random_feeds(graph, 0)
    names = [n.name for n in graph.nodes]
    route = build_parts(graph, [Chunk(CPU, tuple(names[:3])), Chunk(CPU, tuple(names[3:]))], {"conv_2": "int8"}, feeds)
    bad = replace(route, parts=[replace(p, provider="NoSuchExecutionProvider") for p in route.parts])
    with pytest.raises(TargetError, match="execution provider 'NoSuchExecutionProvider' is not available"):
        run(remote.latency_job({"bad": bad}, feeds, 1, repeats=5, sessions=1))
    stats = run(remote.latency_job({"fp32": graph.model, "split": route, "still": replace(route, spin=False)},
                                   feeds, 1, repeats=5, sessions=1))
    assert set(stats) == {"fp32", "split", "still"}
    assert all(np.isfinite(s.median) and 0 < s.p10 <= s.median <= s.p90 for s in stats.values())


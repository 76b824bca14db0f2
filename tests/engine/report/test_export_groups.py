"""The report's per-layer table names the layers a structured prune shrinks through their group."""

from __future__ import annotations

from pathlib import Path

from engine.ir.graph import load_model
from engine.model.plan import LayerSettings, Plan, PruneSettings
from engine.model.session import Session
from engine.report.export import layer_rows


def test_group_members_of_a_pruned_layer_say_so(digits_model: Path) -> None:
    graph = load_model(digits_model, {"input": (1, 1, 8, 8)})
    session = Session()
    session.set_model(digits_model, graph, {"input": (1, 1, 8, 8)})
    session.set_plan(Plan(layers={"/conv2/Conv": LayerSettings("fp32", PruneSettings(0.5, "structured")),
                                  "/fc1/Gemm": LayerSettings("fp32", PruneSettings(0.25, "unstructured")),
                                  "/res/conv_a/Conv": LayerSettings("fp32", rank=3)}))
    rows = {r.name: r for r in layer_rows(session)}
    assert rows["/conv2/Conv"].prune == "50% structured"
    assert rows["/res/conv_b/Conv"].prune == "50% structured, with /conv2/Conv"  # the residual sum's other layer
    assert rows["/res/conv_a/Conv"].prune == "" and rows["/res/conv_a/Conv"].rank == 3
    assert rows["/fc1/Gemm"].prune == "25% unstructured" and rows["/conv3/Conv"].prune == ""

"""The structural colour mode: each layer's prune/rank drop from the sweep, kept apart from the precision drop."""

from __future__ import annotations

from types import SimpleNamespace

from gui.colour_modes import MODES, node_values, sensitivity_drop, structural_drop


def _session(layers: dict[str, dict[str, float]]) -> SimpleNamespace:
    sens = SimpleNamespace(layers={n: SimpleNamespace(drops=d, sqnr_db={}) for n, d in layers.items()})
    return SimpleNamespace(graph=object(), sensitivity=sens)


def test_structural_mode_colours_by_the_half_prune_else_the_gentlest_rank() -> None:
    session = _session({
        "conv2": {"int8": 0.001, "prune:0.25": 0.01, "prune:0.5": 0.04, "rank:0.5": 0.002},
        "fc2": {"int8": 0.003, "rank:0.25": 0.2, "rank:0.5": 0.05},
        "conv_b": {"int8": 0.002},
    })
    out = node_values(session, "structural")
    assert "structural" in MODES and out.numeric
    assert out.values == {"conv2": 0.04, "fc2": 0.05}
    assert "prune:0.25: 0.0100" in out.tooltips["conv2"]
    # the precision mode ignores structural drops, even when they are the largest
    assert node_values(session, "sensitivity").values == {"conv2": 0.001, "fc2": 0.003, "conv_b": 0.002}
    assert sensitivity_drop(SimpleNamespace(drops={"fp16": 0.001, "prune:0.5": 0.3})) == ("fp16", 0.001)
    assert structural_drop(SimpleNamespace(drops={"fp16": 0.001})) is None


def test_structural_mode_says_why_it_is_empty() -> None:
    out = node_values(_session({"conv2": {"int8": 0.001}}), "structural")
    assert not out.values and "structural" in out.missing

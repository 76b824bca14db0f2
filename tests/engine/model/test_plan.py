"""Tests for engine.model.plan: JSON round trip, defaults, and problems reported against a model."""

from __future__ import annotations

import pytest

from engine.errors import SettingsError
from engine.ir.graph import build_graph
from engine.model.plan import LayerSettings, Plan, PruneSettings
from engine.passes.manager import check_plan
from tests import builders

EXAMPLE = """{"default": {"precision": "fp32"}, "layers": {
  "conv_3": {"precision": "int8", "prune": {"ratio": 0.5, "mode": "structured"}, "rank": null},
  "fc_1": {"rank": 32}}}"""


def test_from_json_reads_the_issue_example() -> None:
    plan = Plan.from_json(EXAMPLE)
    assert plan.default == LayerSettings("fp32")
    assert plan.layers["conv_3"] == LayerSettings("int8", PruneSettings(0.5, "structured"), None)
    assert plan.settings_for("fc_1") == LayerSettings("fp32", None, 32)  # precision inherited
    assert plan.settings_for("other") == LayerSettings("fp32")


def test_round_trip_and_save_load(tmp_path) -> None:
    plan = Plan(LayerSettings("fp16"), {"a": LayerSettings(None, PruneSettings(0.25, "unstructured", "l2"), None)})
    again = Plan.from_json(plan.to_json())
    assert again == plan
    assert again.settings_for("a").precision == "fp16"
    plan.save(tmp_path / "p.json")
    assert Plan.load(tmp_path / "p.json") == plan
    assert "ops" not in plan.to_dict()  # the default stays implicit: older readers keep working
    ops = Plan(ops="int8")
    assert ops.to_dict()["ops"] == "int8" and Plan.from_json(ops.to_json()) == ops


@pytest.mark.parametrize(
    "text, words",
    [
        ('{"layers": {"a": {"precision": "int4"}}}', "precision 'int4'"),
        ('{"layers": {"a": {"prune": {"ratio": 1.5}}}}', "ratio"),
        ('{"layers": {"a": {"prune": {"ratio": 0.5, "mode": "weird"}}}}', "mode"),
        ('{"layers": {"a": {"rank": 0}}}', "rank"),
        ('{"layers": {"a": {"precison": "fp16"}}}', "unknown field"),
        ('{"default": {}, "layer": {}}', "unknown field"),
        ("not json", "not valid JSON"),
        ('{"ops": "fp16"}', "p.json: ops 'fp16'"),
    ],
)
def test_malformed_plans_say_why(text: str, words: str) -> None:
    with pytest.raises(SettingsError, match=words):
        Plan.from_json(text, "p.json")


def test_load_missing_file_names_it(tmp_path) -> None:
    with pytest.raises(SettingsError, match="nope.json"):
        Plan.load(tmp_path / "nope.json")


def test_check_plan_reports_every_problem_with_a_reason() -> None:
    graph = build_graph(builders.residual_net())
    plan = Plan.from_dict(
        {
            "default": {"rank": 3},
            "layers": {
                "stemm": {"precision": "int8"},
                "block0_relu": {"precision": "fp16"},
                "block0_b": {"prune": {"ratio": 0.5, "mode": "structured"}},
                "fc": {"prune": {"ratio": 0.5, "mode": "structured"}},
                "block0_a": {"precision": "int8_dynamic", "rank": 200},
                "block1_a": {"prune": {"ratio": 0.5}, "rank": 2},
            },
        }
    )
    problems = "\n".join(check_plan(plan, graph))
    assert "default: rank" in problems
    assert "'stemm': no such node" in problems and "did you mean 'stem'" in problems
    assert "'block0_relu': is a Relu op" in problems
    assert "block0_b" not in problems  # tied by a residual Add: pruned with its group
    assert "'fc' (Gemm): structured pruning refused: tensor 'fc_out' is a graph output" in problems
    assert "'block0_a' (Conv): int8_dynamic is for MatMul/Gemm only" in problems
    assert "'block0_a' (Conv): rank 200 refused: rank must be below the break-even rank" in problems
    assert "'block1_a' (Conv): choose pruning or a rank, not both" in problems


def test_check_plan_accepts_a_good_plan() -> None:
    graph = build_graph(builders.residual_net())
    plan = Plan(layers={"block0_a": LayerSettings("int8", PruneSettings(0.5, "structured")), "fc": LayerSettings("int8_dynamic")})
    assert check_plan(plan, graph) == []


def test_calibration_field_round_trips_and_old_plans_read_as_before() -> None:
    from engine.model.plan import LayerSettings, Plan

    plan = Plan.from_json('{"layers": {"a": {"precision": "int8", "calibration": "percentile99.99"}, "b": {"precision": "int8"}}}')
    assert plan.settings_for("a").calibration == "percentile99.99"
    assert plan.settings_for("b").calibration is None
    assert "calibration" not in plan.to_dict()["layers"]["b"]  # plans without it are written as before
    assert Plan.from_json(plan.to_json()) == plan
    with pytest.raises(SettingsError, match="calibration 'kl'"):
        Plan.from_json('{"layers": {"a": {"precision": "int8", "calibration": "kl"}}}')
    assert LayerSettings("int8", calibration="entropy").to_dict()["calibration"] == "entropy"

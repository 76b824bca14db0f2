"""Export: the per-layer CSV, the plan file and the optimized ONNX of a session."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import onnx
import pytest

from engine.report.export import (
    export_model,
    layer_csv,
    layer_rows,
    write_layer_csv,
    write_plan,
)
from engine.model.plan import Plan
from tests.engine.io.test_session_file import HOSTILE, _private_cache, make_session  # noqa: F401 (autouse fixture)


def test_layer_rows_take_routine_time_and_drop_from_the_tables(tmp_path: Path) -> None:
    s = make_session(tmp_path)
    rows = {r.name: r for r in layer_rows(s)}
    assert list(rows) == [n.name for n in s.graph.layers]
    a = rows["block0_a"]  # second layer: the route chose int8
    assert (a.routine, a.op, a.ms, a.fp32_ms, a.drop) == ("int8", "Conv", pytest.approx(0.04 + 0.01 * 2), pytest.approx(0.2), 0.004)
    assert rows["stem"].routine == "fp32" and rows["stem"].drop == 0.0
    assert a.macs == s.graph.node("block0_a").macs and a.params == s.graph.node("block0_a").params


def test_csv_has_one_row_per_layer_and_a_drop_column_per_routine(tmp_path: Path) -> None:
    s = make_session(tmp_path, hostile=True)
    write_layer_csv(s, tmp_path / "layers.csv")
    rows = list(csv.DictReader(io.StringIO((tmp_path / "layers.csv").read_text())))
    assert list(rows[0]) == ["name", "op", "precision", "prune", "rank", "routine", "ms", "drop_int8", "drop_fp16",
                             "macs", "params"]
    assert [r["name"] for r in rows] == [n.name for n in s.graph.layers]
    assert rows[0]["name"] == HOSTILE[0] and rows[1]["name"] == HOSTILE[1]  # quoted by csv, read back intact
    assert rows[1]["routine"] == "int8" and float(rows[1]["drop_int8"]) == pytest.approx(0.004)
    assert layer_csv(s) == (tmp_path / "layers.csv").read_text()


def test_rows_and_report_show_precision_prune_and_rank(tmp_path: Path) -> None:
    from engine.model.plan import LayerSettings, PruneSettings
    from engine.report.document import Table, build_report

    s = make_session(tmp_path)
    first, second = (n.name for n in s.graph.layers[:2])
    s.set_plan(Plan(layers={first: LayerSettings("fp32", PruneSettings(0.3, "structured")),
                            second: LayerSettings("int8", rank=5)}))
    rows = {r.name: r for r in layer_rows(s)}
    assert (rows[first].precision, rows[first].prune, rows[first].rank) == ("fp32", "30% structured", None)
    assert (rows[second].precision, rows[second].prune, rows[second].rank) == ("int8", "", 5)
    table = next(b for b in build_report(s).blocks if isinstance(b, Table) and b.header[0] == "layer")
    assert table.header[2:5] == ("precision", "prune", "rank")
    by_name = {row[0]: row for row in table.rows}
    assert by_name[first][2:5] == ("fp32", "30% structured", "–") and by_name[second][2:5] == ("int8", "–", "5")
    csv_rows = {r["name"]: r for r in csv.DictReader(io.StringIO(layer_csv(s)))}
    assert (csv_rows[second]["precision"], csv_rows[second]["rank"]) == ("int8", "5")


def test_plan_file_reads_back(tmp_path: Path) -> None:
    s = make_session(tmp_path)
    write_plan(s, tmp_path / "plan.json")
    assert Plan.load(tmp_path / "plan.json") == s.plan


def test_optimized_model_has_the_int8_layer(tmp_path: Path) -> None:
    pytest.importorskip("engine.passes.precision")
    s = make_session(tmp_path)
    export_model(s, tmp_path / "optimized.onnx")
    model = onnx.load(tmp_path / "optimized.onnx")
    onnx.checker.check_model(model)
    ops = [n.op_type for n in model.graph.node]
    assert "DequantizeLinear" in ops and "QuantizeLinear" in ops


def test_auto_precision_takes_the_routes_choice(tmp_path: Path) -> None:
    pytest.importorskip("engine.passes.precision")
    s = make_session(tmp_path)
    s.set_plan(Plan.from_dict({"default": {"precision": "auto"}}))
    export_model(s, tmp_path / "optimized.onnx")  # would refuse "auto" if it reached apply_plan
    ops = [n.op_type for n in onnx.load(tmp_path / "optimized.onnx").graph.node]
    assert "DequantizeLinear" in ops


def test_rows_name_the_int8_methods_the_plan_chose(tmp_path: Path) -> None:
    from engine.model.plan import LayerSettings
    from engine.report.export import routine_label

    s = make_session(tmp_path)
    first, second, third, fourth = (n.name for n in s.graph.layers[:4])
    s.set_plan(Plan(layers={first: LayerSettings("int8", calibration="entropy", bias_correction=True),
                            second: LayerSettings("int8", cle=True), third: LayerSettings("int8", calibration="entropy", symmetric=True),
                            fourth: LayerSettings("int8", smoothquant=0.5, bias_correction=True)}))
    rows = {r.name: r for r in layer_rows(s)}
    assert rows[first].calibration == "entropy + bias correction"
    assert rows[second].calibration == "minmax + CLE"
    assert rows[third].calibration == "entropy + symmetric activations"
    assert rows[fourth].calibration == "minmax + SmoothQuant α=0.5 + bias correction"
    from dataclasses import replace

    assert routine_label(replace(rows[first], routine="int8")) == "int8 · entropy + bias correction"

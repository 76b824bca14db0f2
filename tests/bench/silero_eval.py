"""An evaluator for the silero-vad zoo models (not collected by pytest). Their inputs have no leading batch
dim of 1 (a rank-0 ``sr``, a ``sequence_length x 576`` chunk), which ``.npz`` evaluators need, so it is a
script: 24 generated audio chunks with zero state, labelled with the fp32 model's speech probability;
metric 1 - mean |p - p_fp32| (higher is better). The model path comes from ``SILERO_MODEL``:

    SILERO_MODEL=/work/zoo/models/silero-vad-seq.onnx layerlab tune /work/zoo/models/silero-vad-seq.onnx \
        --dim sequence_length=8 --eval tests/bench/silero_eval.py
"""

from __future__ import annotations

import os

import numpy as np
import onnxruntime as ort

MODEL = os.environ["SILERO_MODEL"]
SEQ = "seq" in os.path.basename(MODEL)
METRIC_NAME = "1-|dp|"


def _feeds(i):
    rng = np.random.default_rng(1000 + i)
    if SEQ:
        return {"input": (rng.standard_normal((8, 576)) * 0.1).astype(np.float32),
                "h": np.zeros((1, 1, 128), np.float32), "c": np.zeros((1, 1, 128), np.float32)}
    return {"input": (rng.standard_normal((1, 512)) * 0.1).astype(np.float32),
            "state": np.zeros((2, 1, 128), np.float32), "sr": np.array(16000, np.int64)}


_REF = ort.InferenceSession(MODEL, providers=["CPUExecutionProvider"])


def samples():
    for i in range(24):
        f = _feeds(i)
        yield f, _REF.run(None, f)[0]


def calibration():
    for i in range(100, 108):
        yield _feeds(i)


def metric(outputs, labels):
    return float(1.0 - np.mean([np.abs(o[0] - l).mean() for o, l in zip(outputs, labels)]))

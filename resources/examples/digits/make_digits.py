"""Train the small ``digits`` CNN that LayerLab is shown and tested on, and export it to ONNX.

Builds ``digits.onnx`` (opset 17, input ``input`` [batch,1,8,8] float32, output ``logits`` [batch,10]),
``digits_test.npz`` (``input:input`` float32 [N,1,8,8] already normalised, ``labels`` int64 [N]) and
``example.json`` next to this script, from scikit-learn's ``load_digits`` with a fixed seed and a fixed
stratified 30% held-out split. The model takes pixel/16 input. BatchNorm is folded into the preceding
Conv by the eval-mode export (``do_constant_folding=True``), so the graph has no BatchNormalization.

Needs torch, which is not a LayerLab dependency: ``pip install torch==2.13.0``, then
``python resources/examples/digits/make_digits.py``. It prints the test accuracy measured by running the
exported ONNX file with ONNX Runtime on the npz, and fails if it is below 95%.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

__all__ = ["DigitsNet", "main"]

logger = logging.getLogger(__name__)

_SEED = 0
_TEST_FRACTION = 0.3
_EPOCHS = 60
_BATCH = 64
_LR = 3e-3
_MIN_ACCURACY = 0.95
_OPSET = 17


class _Residual(nn.Module):
    """Two 3x3 convs with a skip Add, so the graph has a fork and a join for DPRS to handle."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv_a = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn_a = nn.BatchNorm2d(channels)
        self.conv_b = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn_b = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn_a(self.conv_a(x)))
        y = self.bn_b(self.conv_b(y))
        return self.relu(x + y)


class DigitsNet(nn.Module):
    """Conv-BN-ReLU x2, a residual block, MaxPool, Conv-ReLU, Flatten, Gemm-ReLU, Gemm: ~59k params."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(32)
        self.res = _Residual(32)
        self.pool = nn.MaxPool2d(2)  # 8x8 -> 4x4
        self.conv3 = nn.Conv2d(32, 64, 3)  # 4x4 -> 2x2
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(64 * 2 * 2, 64)
        self.fc2 = nn.Linear(64, 10)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        x = self.pool(self.res(x))
        x = self.relu(self.conv3(x))
        x = self.relu(self.fc1(self.flatten(x)))
        return self.fc2(x)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    # One thread: float reductions then sum in the same order every run.
    torch.set_num_threads(1)


def _load_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Normalised [N,1,8,8] float32 images and int64 labels, split 70/30 stratified with a fixed seed."""
    digits = load_digits()
    images = (digits.images.astype(np.float32) / 16.0)[:, None, :, :]
    labels = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=_TEST_FRACTION, stratify=labels, random_state=_SEED
    )
    return x_train, x_test, y_train, y_test


def _train(model: nn.Module, x_train: np.ndarray, y_train: np.ndarray) -> None:
    inputs = torch.from_numpy(x_train)
    targets = torch.from_numpy(y_train)
    generator = torch.Generator().manual_seed(_SEED)
    optimizer = torch.optim.Adam(model.parameters(), lr=_LR, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=_EPOCHS)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for epoch in range(_EPOCHS):
        order = torch.randperm(len(inputs), generator=generator)
        total = 0.0
        for start in range(0, len(order), _BATCH):
            batch = order[start : start + _BATCH]
            optimizer.zero_grad()
            loss = loss_fn(model(inputs[batch]), targets[batch])
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
        scheduler.step()
        if (epoch + 1) % 10 == 0:
            logger.info("epoch %d: train loss %.4f", epoch + 1, total / len(inputs))
    model.eval()


def _export(model: nn.Module, path: Path) -> None:
    dummy = torch.zeros(1, 1, 8, 8, dtype=torch.float32)
    # The legacy exporter: the dynamo one needs onnxscript, which LayerLab does not install.
    torch.onnx.export(
        model,
        (dummy,),
        str(path),
        dynamo=False,
        export_params=True,
        opset_version=_OPSET,
        do_constant_folding=True,
        training=torch.onnx.TrainingMode.EVAL,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
    )
    proto = onnx.load(str(path))
    _name_folded_weights(proto)
    onnx.checker.check_model(proto, full_check=True)
    # Everything must live inside the one file: the example ships as a single small model.
    for init in proto.graph.initializer:
        if init.data_location == onnx.TensorProto.EXTERNAL:
            raise RuntimeError(f"{path}: initializer {init.name} was saved as external data")
    onnx.save(proto, str(path))


def _name_folded_weights(proto: onnx.ModelProto) -> None:
    """Rename ``onnx::Conv_56``-style initializers (BN folding makes new ones) to ``conv1.weight``."""
    renames: dict[str, str] = {}
    for node in proto.graph.node:
        module = ".".join(node.name.strip("/").split("/")[:-1])  # "/res/conv_a/Conv" -> "res.conv_a"
        for slot, suffix in ((1, "weight"), (2, "bias")):
            if len(node.input) > slot and node.input[slot].startswith("onnx::") and module:
                renames[node.input[slot]] = f"{module}.{suffix}"
    for init in proto.graph.initializer:
        init.name = renames.get(init.name, init.name)
    for node in proto.graph.node:
        for i, name in enumerate(node.input):
            node.input[i] = renames.get(name, name)


def _onnx_accuracy(model_path: Path, eval_path: Path) -> float:
    data = np.load(eval_path)
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    logits = session.run(["logits"], {"input": data["input:input"]})[0]
    return float(np.mean(np.argmax(logits, axis=1) == data["labels"]))


def _write_manifest(path: Path, n_test: int) -> None:
    manifest = {
        "name": "digits",
        "description": (
            "Small CNN (conv, residual block, pool, two Gemm layers) classifying scikit-learn's 8x8 "
            f"handwritten digits; evaluated on {n_test} held-out images."
        ),
        "model": "digits.onnx",
        "eval": "digits_test.npz",
        "input_shapes": {"input": [1, 1, 8, 8]},
        "source": "trained by make_digits.py on scikit-learn's digits",
    }
    path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    """Train, export and check the digits example; returns 0 when the ONNX accuracy is high enough."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent,
                        help="folder for digits.onnx, digits_test.npz and example.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    _seed_everything(_SEED)
    x_train, x_test, y_train, y_test = _load_split()
    model = DigitsNet()
    _train(model, x_train, y_train)

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    model_path = out / "digits.onnx"
    eval_path = out / "digits_test.npz"
    _export(model, model_path)
    np.savez_compressed(eval_path, **{"input:input": x_test, "labels": y_test})
    _write_manifest(out / "example.json", len(y_test))

    with torch.no_grad():
        torch_acc = float((model(torch.from_numpy(x_test)).argmax(1).numpy() == y_test).mean())
    accuracy = _onnx_accuracy(model_path, eval_path)
    print(f"train {len(y_train)} / test {len(y_test)} images")
    print(f"torch test accuracy: {torch_acc:.4f}")
    print(f"ONNX Runtime test accuracy: {accuracy:.4f}")
    for path in (model_path, eval_path):
        print(f"{path.name}: {path.stat().st_size} bytes")
    if accuracy < _MIN_ACCURACY:
        print(f"accuracy {accuracy:.4f} is below {_MIN_ACCURACY}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

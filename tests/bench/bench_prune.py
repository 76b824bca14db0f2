"""Structured pruning on real models: share of layers prunable, MACs cut, fidelity with and without
reconstruction (not collected by pytest; run ``python tests/bench/bench_prune.py [model ...]``).

For each model the plan ``{"default": {"prune": {"ratio": r, "mode": "structured"}}}`` prunes every
layer that can be pruned at once. Fidelity is the model's own metric where it has one (digits:
accuracy on 412 held-out images; ppocr-rec: exact-word accuracy on rendered words), else the
relative L2 error of the main output (of its logits where a Softmax makes it) against the unpruned
model on held-out inputs (lower is better). Calibration inputs (for reconstruction) never overlap the held-out ones.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from engine.ir.graph import ModelGraph, build_graph  # noqa: E402
from engine.model.plan import Plan  # noqa: E402
from engine.passes.manager import apply_plan  # noqa: E402
from engine.passes.base import clone, refresh_shapes  # noqa: E402
from engine.passes.prune import prune_group  # noqa: E402
from engine.passes.prune_dims import SliceParam  # noqa: E402

ZOO = Path("/work/zoo/models")
Feeds = list[dict[str, np.ndarray]]


def _load(path: Path, shapes: dict[str, tuple[int, ...]]) -> ModelGraph:
    model = onnx.load(str(path))
    for inp in model.graph.input:  # Paddle exports mark dynamic dims with -1: make them named
        for i, d in enumerate(inp.type.tensor_type.shape.dim):
            if d.HasField("dim_value") and d.dim_value <= 0:
                d.dim_param = f"{inp.name}_{i}"
    return build_graph(model, shapes, path=path)


def _images(shape: tuple[int, ...], count: int, seed: int, name: str) -> Feeds:
    rng = np.random.default_rng(seed)
    return [{name: rng.uniform(-1, 1, shape).astype(np.float32)} for _ in range(count)]


def _tokens(count: int, seed: int) -> Feeds:
    rng = np.random.default_rng(seed)
    feeds = []
    for _ in range(count):
        ids = rng.integers(1000, 30000, (1, 128))
        ids[0, 0], ids[0, -1] = 101, 102
        feeds.append({"input_ids": ids.astype(np.int64), "attention_mask": np.ones((1, 128), np.int64)})
    return feeds


def _outputs(model: onnx.ModelProto, feeds: Feeds, index: int, logits: bool = False) -> list[np.ndarray]:
    """Output ``index``; with ``logits``, the input of the Softmax that makes it (saturated
    probabilities hide most differences)."""
    name = model.graph.output[index].name
    if logits:
        makers = {o: n for n in model.graph.node for o in n.output}
        while name in makers and makers[name].op_type == "Identity":
            name = makers[name].input[0]
        maker = makers.get(name)
        if maker is not None and maker.op_type == "Softmax":
            model = onnx.ModelProto.FromString(model.SerializeToString())
            model.graph.output.append(onnx.helper.make_tensor_value_info(maker.input[0], onnx.TensorProto.FLOAT, None))
            name = maker.input[0]
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return [session.run([name], f)[0] for f in feeds]


def _rel_error(index: int) -> Callable[[onnx.ModelProto, onnx.ModelProto, Feeds], float]:
    def score(base: onnx.ModelProto, model: onnx.ModelProto, feeds: Feeds) -> float:
        a, b = _outputs(base, feeds, index, True), _outputs(model, feeds, index, True)
        return float(np.sqrt(sum(np.sum((x - y) ** 2) for x, y in zip(a, b)) / sum(np.sum(x**2) for x in a)))
    return score


def _digits() -> tuple:
    from engine.io.examples import get_example

    ex = get_example("digits")
    data = np.load(ex.eval)
    x, labels = data["input:input"], data["labels"]
    calib = [{"input": x[i : i + 16]} for i in range(0, 128, 16)]
    held = [{"input": x[i : i + 1]} for i in range(128, len(x))]

    def accuracy(base: onnx.ModelProto, model: onnx.ModelProto, feeds: Feeds) -> float:
        out = np.concatenate(_outputs(model, feeds, 0))
        return float(np.mean(out.argmax(1) == labels[128:]))

    return ex.model, {"input": (1, 1, 8, 8)}, calib, held, accuracy, "accuracy"


def _ppocr_rec() -> tuple:
    from engine.io.examples import fetch_example

    ex = fetch_example("ppocr-rec")
    os.environ.setdefault("LAYERLAB_MODEL", str(ex.model))
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "resources" / "examples" / "ppocr_rec"))
    import evaluator  # type: ignore[import-not-found]

    samples = list(evaluator.samples(60))
    held, words = [s[0] for s in samples], [s[1] for s in samples]
    calib = list(evaluator.calibration(16))

    def accuracy(base: onnx.ModelProto, model: onnx.ModelProto, feeds: Feeds) -> float:
        return float(evaluator.metric([[o] for o in _outputs(model, feeds, 0)], words))

    return ex.model, {"x": (1, 3, 48, 320)}, calib, held, accuracy, "word accuracy"


def _example(name: str) -> Path:
    """A fetched example's model (``layerlab examples --fetch NAME`` puts it in the user cache)."""
    from engine.io.examples import fetch_example

    return fetch_example(name).model


MODELS: dict[str, Callable[[], tuple]] = {
    "digits": _digits,
    "ppocr-rec": _ppocr_rec,
    "ppocr-cls-mbv3": lambda: (ZOO / "ppocr-cls-mbv3.onnx", {"x": (1, 3, 48, 192)}, _images((1, 3, 48, 192), 16, 0, "x"),
                               _images((1, 3, 48, 192), 16, 1, "x"), _rel_error(0), "rel. error"),
    "minilm-l3": lambda: (ZOO / "minilm-l3.onnx", {"input_ids": (1, 128), "attention_mask": (1, 128)}, _tokens(8, 0),
                          _tokens(8, 1), _rel_error(-1), "rel. error"),
    "nudenet-320n": lambda: (ZOO / "nudenet-320n.onnx", {"images": (1, 3, 320, 320)}, _images((1, 3, 320, 320), 8, 0, "images"),
                             _images((1, 3, 320, 320), 8, 1, "images"), _rel_error(0), "rel. error"),
    "picodet-layout": lambda: (_example("picodet-layout"), {"image": (1, 3, 800, 608)},
                               _images((1, 3, 800, 608), 4, 0, "image"), _images((1, 3, 800, 608), 4, 1, "image"),
                               _rel_error(0), "rel. error"),
    "ddddocr-rec": lambda: (ZOO / "ddddocr-rec.onnx", {"input1": (1, 1, 64, 256)}, _images((1, 1, 64, 256), 8, 0, "input1"),
                            _images((1, 1, 64, 256), 8, 1, "input1"), _rel_error(0), "rel. error"),
}


def _layer_macs(graph: ModelGraph) -> int:
    """MACs of the layers (Conv, Gemm, MatMul ...): the part pruning cuts; ops of unknown cost count 0."""
    return sum(n.macs or 0 for n in graph.layers)


def exactness(graph: ModelGraph, feeds: Feeds) -> float:
    """Largest relative difference, over every prunable group with half its channels removed, between
    the pruned model and the unpruned one with those channels zeroed in the consumers' weights."""
    worst, seen = 0.0, set()
    for node in graph.layers:
        group = prune_group(graph, node.name)
        if not group.prunable or group.names("contraction") or tuple(group.layers) in seen:
            continue  # (a Q.K contraction is exact only for whole heads, which the heads group covers)
        seen.add(tuple(group.layers))
        drop = list(range(0, group.channels, 2))
        pruned = clone(graph.model)
        group.prune(pruned, drop)
        ref = clone(graph.model)
        inits = {t.name: t for t in ref.graph.initializer}
        for e in group.edits:
            reader = ref.graph.node[e.node]
            if isinstance(e, SliceParam) and e.slot == 1 and reader.name in group.consumers:
                a = onnx.numpy_helper.to_array(inits[reader.input[1]]).copy()
                np.moveaxis(a, e.axis, 0)[group.dims[e.space].removed(drop)] = 0
                inits[reader.input[1]].CopyFrom(onnx.numpy_helper.from_array(a, reader.input[1]))
        for index in range(len(graph.model.graph.output)):
            for x, y in zip(_outputs(refresh_shapes(pruned), feeds, index), _outputs(ref, feeds, index)):
                if x.dtype.kind == "f":
                    worst = max(worst, float(np.max(np.abs(x - y)) / (np.max(np.abs(y)) + 1e-12)))
    return worst


def run(name: str, ratios: tuple[float, ...]) -> str:
    path, shapes, calib, held, score, metric = MODELS[name]()
    graph = _load(Path(path), shapes)
    layers = graph.layers
    prunable = sum(prune_group(graph, n.name).prunable for n in layers)
    base = score(graph.model, graph.model, held)
    exact = exactness(graph, held[:1])
    print(f"  {name}: {prunable}/{len(layers)} prunable; pruned vs zeroed, worst relative difference {exact:.1e}", flush=True)
    cells = []
    macs_cut = None
    for ratio in ratios:
        for reconstruct in (False, True):
            plan = Plan.from_dict({"default": {"prune": {"ratio": ratio, "mode": "structured", "reconstruct": reconstruct}}})
            t = time.perf_counter()
            model = apply_plan(graph, plan, calib).model
            took = time.perf_counter() - t
            value = score(graph.model, model, held)
            cells.append(f"{value:.3f}")
            if ratio == 0.5 and not reconstruct:
                macs_cut = 1 - _layer_macs(build_graph(model, shapes)) / _layer_macs(graph)
            print(f"  {name} ratio {ratio} reconstruct {reconstruct}: {metric} {value:.4f} ({took:.1f}s)", flush=True)
    cut = f"{macs_cut:.0%}" if macs_cut is not None else "-"
    return f"| {name} | {prunable}/{len(layers)} | {exact:.0e} | {cut} | {metric} | {base:.3f} | " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=list(MODELS))
    parser.add_argument("--ratios", default="0.25,0.5")
    args = parser.parse_args()
    ratios = tuple(float(r) for r in args.ratios.split(","))
    head = " | ".join(f"r={r} {kind}" for r in ratios for kind in ("plain", "refit"))
    rows = [run(name, ratios) for name in args.models]
    print(f"| model | layers prunable | pruned vs zeroed | layer MACs cut at r=0.5 | metric | unpruned | {head} |")
    print("|---" * (6 + 2 * len(ratios)) + "|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()

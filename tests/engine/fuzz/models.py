"""Hostile and malformed ONNX models, built deterministically from one small valid model.

Each case is a ``(name, build)`` pair; ``build(folder)`` writes the case's files into ``folder`` and
returns the path a user would open. Every case is something ONNX Runtime cannot run (or that is not
an ONNX model at all), so LayerLab must refuse it at load with one line naming the file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = ["MODEL_CASES", "base_model", "write_model_case", "HOSTILE_NAMES"]

Build = Callable[[Path], Path]

# Names a user's file may carry: markup, control characters, other scripts, very long.
HOSTILE_NAMES = [
    "<script>alert('x')</script>",
    "a\nb\r\nc\x1b[31mred",
    "畳み込み層/卷积层/Свёртка/طبقة/שכבה",
    "x" * 5000,
    "\u202eevil\u202c & \"quotes\" 'single' \\back",
]


def base_model(conv_attrs: dict | None = None, *, weight: np.ndarray | None = None, opset: int = 17,
               node_name: str = "conv", out_name: str = "y") -> onnx.ModelProto:
    """x[1,3,8,8] -> Conv(4, 3x3) -> Relu -> y[1,4,8,8]; the valid model every case breaks."""
    rng = np.random.default_rng(0)
    w = weight if weight is not None else (rng.standard_normal((4, 3, 3, 3)) * 0.2).astype(np.float32)
    attrs = {"pads": [1, 1, 1, 1], "kernel_shape": [3, 3]} if conv_attrs is None else conv_attrs
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name=node_name, **attrs),
        helper.make_node("Relu", ["c"], [out_name], name="relu"),
    ]
    graph = helper.make_graph(
        nodes, "fuzz",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, ["n", "c", "h", "w"])],
        initializer=[numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.zeros(4, np.float32), "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def _save(model: onnx.ModelProto, folder: Path, name: str = "model.onnx") -> Path:
    path = folder / name
    path.write_bytes(model.SerializeToString())
    return path


def _bytes_case(make: Callable[[bytes], bytes]) -> Build:
    def build(folder: Path) -> Path:
        path = folder / "model.onnx"
        path.write_bytes(make(base_model().SerializeToString()))
        return path
    return build


def _model_case(edit: Callable[[onnx.ModelProto], None], name: str = "model.onnx") -> Build:
    def build(folder: Path) -> Path:
        model = base_model()
        edit(model)
        return _save(model, folder, name)
    return build


def _conv(**attrs: object) -> Build:
    def build(folder: Path) -> Path:
        return _save(base_model({"pads": [1, 1, 1, 1], "kernel_shape": [3, 3], **attrs}), folder)
    return build


def _weight(array: np.ndarray) -> Build:
    return lambda folder: _save(base_model(weight=array), folder)


def _flip(seed: int) -> Callable[[bytes], bytes]:
    """Flip bits in the protobuf's structure (field tags and lengths), never only inside weight bytes."""
    def make(data: bytes) -> bytes:
        rng = np.random.default_rng(seed)
        out = bytearray(data)
        positions = rng.choice(min(len(out), 48), size=3, replace=False)
        for p in positions:
            out[int(p)] ^= 0x80 | (1 << int(rng.integers(0, 7)))
        return bytes(out)
    return make


def _external(location: str, offset: int | None = None, length: int | None = None, write: bool = True) -> Build:
    """The weight stored as external data at ``location`` (relative to the model)."""
    def build(folder: Path) -> Path:
        model = base_model()
        w = model.graph.initializer[0]
        raw = numpy_helper.to_array(w).tobytes()
        if write and not location.startswith(("/", "..")) and location != ".":
            (folder / location).write_bytes(raw)
        w.ClearField("raw_data")
        w.data_location = TensorProto.EXTERNAL
        entries = {"location": location}
        if offset is not None:
            entries["offset"] = str(offset)
        if length is not None:
            entries["length"] = str(length)
        for k, v in entries.items():
            w.external_data.add(key=k, value=v)
        return _save(model, folder)
    return build


def _set_input_dims(dims: list[int]) -> Callable[[onnx.ModelProto], None]:
    def edit(model: onnx.ModelProto) -> None:
        shape = model.graph.input[0].type.tensor_type.shape
        shape.Clear()
        for d in dims:
            shape.dim.add().dim_value = d
    return edit


def _replace_nodes(*nodes: onnx.NodeProto) -> Callable[[onnx.ModelProto], None]:
    def edit(model: onnx.ModelProto) -> None:
        del model.graph.node[:]
        model.graph.node.extend(nodes)
    return edit


def _named(name: str) -> Build:
    """A hostile node name on a model that is also broken (stride 0): the error must stay one line."""
    return lambda folder: _save(base_model({"strides": [0, 0], "kernel_shape": [3, 3]}, node_name=name), folder)


def _set_opset(version: int, domain: str = "") -> Callable[[onnx.ModelProto], None]:
    def edit(model: onnx.ModelProto) -> None:
        del model.opset_import[:]
        model.opset_import.append(helper.make_opsetid(domain, version))
    return edit


def _dup_output(model: onnx.ModelProto) -> None:
    model.graph.node.append(helper.make_node("Relu", ["c"], ["y"], name="relu2"))


def _no_outputs(model: onnx.ModelProto) -> None:
    del model.graph.output[:]


def _attr(op: str, inputs: list[str], rank: int = 4, **attrs: object) -> Callable[[onnx.ModelProto], None]:
    """Append ``op`` reading ``inputs`` and make its output (of ``rank`` symbolic dims) the graph output."""
    def edit(model: onnx.ModelProto) -> None:
        model.graph.node.append(helper.make_node(op, inputs, ["z"], name=f"bad_{op.lower()}", **attrs))
        del model.graph.output[:]
        dims = [f"d{i}" for i in range(rank)]
        model.graph.output.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, dims))
    return edit


def _init(name: str, array: np.ndarray) -> Callable[[onnx.ModelProto], None]:
    def edit(model: onnx.ModelProto) -> None:
        model.graph.initializer.append(numpy_helper.from_array(array, name))
    return edit


def _both(*edits: Callable[[onnx.ModelProto], None]) -> Callable[[onnx.ModelProto], None]:
    def edit(model: onnx.ModelProto) -> None:
        for e in edits:
            e(model)
    return edit


def _huge_initializer(model: onnx.ModelProto) -> None:
    t = model.graph.initializer[0]
    del t.dims[:]
    t.dims.extend([1 << 40, 3, 3, 3])  # raw_data holds 108 floats


def _text(content: bytes) -> Build:
    def build(folder: Path) -> Path:
        path = folder / "model.onnx"
        path.write_bytes(content)
        return path
    return build


def _directory(folder: Path) -> Path:
    path = folder / "model.onnx"
    path.mkdir()
    return path


def _missing(folder: Path) -> Path:
    return folder / "nothing-here.onnx"


_NAN = np.full((4, 3, 3, 3), np.nan, np.float32)
_HALF_NAN = np.where(np.arange(108).reshape(4, 3, 3, 3) % 2 == 0, np.nan, 0.1).astype(np.float32)

MODEL_CASES: list[tuple[str, Build]] = [
    # not ONNX at all
    ("empty file", _text(b"")),
    ("text file", _text(b"hello, this is not a model\n")),
    ("json file", _text(json.dumps({"graph": {"node": []}}).encode())),
    ("png header", _text(b"\x89PNG\r\n\x1a\n" + bytes(64))),
    ("zip header", _text(b"PK\x03\x04" + bytes(200))),
    ("random bytes", _text(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())),
    ("zero bytes", _text(bytes(1024))),
    ("directory", _directory),
    ("missing file", _missing),
    # truncations
    *[(f"truncated to {f:.0%}", _bytes_case(lambda d, f=f: d[: max(1, int(len(d) * f))]))
      for f in (0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99)],
    ("truncated by one byte", _bytes_case(lambda d: d[:-1])),
    # bit flips in the protobuf structure
    *[(f"bit flips seed {s}", _bytes_case(_flip(s))) for s in range(8)],
    # graph structure
    ("no graph outputs", _model_case(_no_outputs)),
    ("no nodes", _model_case(_replace_nodes())),
    ("cycle of two nodes", _model_case(_replace_nodes(
        helper.make_node("Relu", ["x", "b2"], ["a"], name="r1"),
        helper.make_node("Add", ["a", "x"], ["b2"], name="r2"),
        helper.make_node("Relu", ["a"], ["y"], name="r3")))),
    ("node reads its own output", _model_case(_replace_nodes(
        helper.make_node("Add", ["x", "y"], ["y"], name="self")))),
    ("dangling edge", _model_case(_replace_nodes(
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv"),
        helper.make_node("Add", ["c", "nowhere"], ["y"], name="add")))),
    ("two nodes write one tensor", _model_case(_dup_output)),
    ("duplicate initializer", _model_case(_init("w", np.zeros((4, 3, 3, 3), np.float32)))),
    ("duplicate graph input", _model_case(lambda m: m.graph.input.append(m.graph.input[0]))),
    ("output never produced", _model_case(lambda m: setattr(m.graph.output[0], "name", "ghost"))),
    # attributes ONNX Runtime refuses
    ("stride 0", _conv(strides=[0, 0])),
    ("negative stride", _conv(strides=[-1, -1])),
    ("group 0", _conv(group=0)),
    ("group 5 (does not divide channels)", _conv(group=5)),
    ("pads -100", _conv(pads=[-100, -100, -100, -100])),
    ("kernel 1e9", _conv(kernel_shape=[10**9, 10**9])),
    ("kernel shape does not match weight", _conv(kernel_shape=[5, 5])),
    ("dilation 0", _conv(dilations=[0, 0])),
    ("auto_pad nonsense", lambda f: _save(base_model({"auto_pad": "SIDEWAYS"}), f)),
    # weights
    ("weight float64", _weight(np.zeros((4, 3, 3, 3), np.float64))),
    ("weight int32", _weight(np.zeros((4, 3, 3, 3), np.int32))),
    ("weight channel mismatch", _weight(np.zeros((4, 5, 3, 3), np.float32))),
    ("weight rank 2", _weight(np.zeros((4, 27), np.float32))),
    ("NaN weights", _weight(_NAN)),
    ("half NaN weights", _weight(_HALF_NAN)),
    ("initializer dims beyond its data", _model_case(_huge_initializer)),
    ("bias wrong length", _model_case(lambda m: m.graph.initializer[1].CopyFrom(
        numpy_helper.from_array(np.zeros(7, np.float32), "b")))),
    # opsets and operators
    ("opset 99", _model_case(_set_opset(99))),
    ("opset 0", _model_case(_set_opset(0))),
    ("ir_version 99", _model_case(lambda m: setattr(m, "ir_version", 99))),
    ("unknown-domain op", _model_case(_both(
        _attr("Mystery", ["y"], domain="com.example.nothing"),
        lambda m: m.opset_import.append(helper.make_opsetid("com.example.nothing", 1))))),
    ("unknown op", _model_case(_attr("FooBar", ["y"]))),
    ("Conv with one input", _model_case(_replace_nodes(helper.make_node("Conv", ["x"], ["y"], name="c1")))),
    ("Softmax axis 10", _model_case(_attr("Softmax", ["y"], axis=10))),
    ("Concat axis 9", _model_case(_attr("Concat", ["y", "y"], axis=9))),
    ("Transpose bad perm", _model_case(_attr("Transpose", ["y"], perm=[0, 0, 1, 2]))),
    ("Reshape to wrong size", _model_case(_both(_init("shape", np.array([7, 7], np.int64)),
                                                _attr("Reshape", ["y", "shape"], rank=2)))),
    ("MatMul inner dims differ", _model_case(_both(_init("m", np.zeros((5, 2), np.float32)),
                                                   _attr("MatMul", ["y", "m"])))),
    ("Add cannot broadcast", _model_case(_both(_init("a", np.zeros((3,), np.float32)), _attr("Add", ["y", "a"])))),
    ("Gemm on a 4-D input", _model_case(_both(_init("g", np.zeros((4, 4), np.float32)), _attr("Gemm", ["y", "g"], rank=2)))),
    # input shapes
    ("input dim 2^62", _model_case(_set_input_dims([1 << 62, 3, 8, 8]))),
    ("input dim -5", _model_case(_set_input_dims([-5, 3, 8, 8]))),
    ("input rank 2", _model_case(_set_input_dims([3, 8]))),
    ("input channels 5", _model_case(_set_input_dims([1, 5, 8, 8]))),
    ("input string dtype", _model_case(
        lambda m: setattr(m.graph.input[0].type.tensor_type, "elem_type", TensorProto.STRING))),
    # external data
    ("external data missing", _external("weights.bin", write=False)),
    ("external data offset past end", _external("weights.bin", offset=10_000)),
    ("external data length past end", _external("weights.bin", length=10_000)),
    ("external data negative offset", _external("weights.bin", offset=-8)),
    ("external data path traversal", _external("../outside.bin")),
    ("external data absolute path", _external("/etc/passwd")),
    ("external data is a folder", _external(".")),
    # hostile names on a broken model: the message that names them must stay one line
    *[(f"hostile node name {i}", _named(n)) for i, n in enumerate(HOSTILE_NAMES)],
]


def write_model_case(index: int, root: Path) -> Path:
    """Write case ``index`` into its own folder under ``root``; returns the path to open."""
    folder = root / f"m{index:03d}"
    folder.mkdir(parents=True, exist_ok=True)
    return MODEL_CASES[index][1](folder)

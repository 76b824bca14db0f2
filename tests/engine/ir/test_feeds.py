"""Feeds without an evaluator: ids within their embedding tables, masks of ones, token types 0, bools, scalars."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from engine.errors import LayerLabError
from engine.ir.graph import build_graph
from engine.measure.feeds import feed_failure
from engine.ir.feeds import integer_plan, random_feeds
from tests import builders


def test_bert_feeds_are_valid() -> None:
    model = builders.bert_encoder(vocab=50)
    assert integer_plan(model) == {"input_ids": ("random", 50), "attention_mask": ("ones", 1),
                                   "token_type_ids": ("zeros", 0)}
    graph = build_graph(model, {"input_ids": (2, 64), "attention_mask": (2, 64), "token_type_ids": (2, 64)})
    feeds = random_feeds(graph)
    ids = feeds["input_ids"]
    assert ids.dtype == np.int64 and ids.min() >= 0 and ids.max() < 50 and ids.max() >= 40  # the whole table, not 0..7
    assert (feeds["attention_mask"] == 1).all() and (feeds["token_type_ids"] == 0).all()
    ort.InferenceSession(model.SerializeToString()).run(None, feeds)  # ORT accepts them


def test_bert_profiles_with_only_the_seq_dim(tmp_path: Path, capsys, monkeypatch) -> None:
    from engine.cli.main import main

    monkeypatch.setenv("LAYERLAB_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "bert.onnx"
    onnx.save(builders.bert_encoder(), path)
    assert main(["profile", str(path), "--dim", "seq=12", "--json", "--repeats", "5", "--threads", "1"]) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert out["inputs"] == {"input_ids": [1, 12], "attention_mask": [1, 12], "token_type_ids": [1, 12]}
    assert "batch dim of input_ids (batch), attention_mask (batch), token_type_ids (batch) set to 1" in captured.err
    assert {layer["name"] for layer in out["layers"] if layer["tunable"]} == {"q_proj", "k_proj", "v_proj", "out_proj"}


def test_boolean_mask_and_scalar_branch_input() -> None:
    model = builders.bert_encoder(mask_dtype=TensorProto.BOOL)
    graph = build_graph(model, {"input_ids": (1, 5), "attention_mask": (1, 5), "token_type_ids": (1, 5)})
    feeds = random_feeds(graph)
    assert feeds["attention_mask"].dtype == bool and feeds["attention_mask"].all()
    ort.InferenceSession(model.SerializeToString()).run(None, feeds)
    # a rank-0 int input compared with a constant (silero-vad's sr == 16000) gets that constant
    consts = [numpy_helper.from_array(np.array(16000, np.int64), "rate")]
    nodes = [helper.make_node("Equal", ["sr", "rate"], ["is16k"], name="eq"),
             helper.make_node("Cast", ["is16k"], ["y"], to=TensorProto.FLOAT, name="cast")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("sr", TensorProto.INT64, []),
                                       helper.make_tensor_value_info("n", TensorProto.INT32, [3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])], initializer=consts)
    scalar = build_graph(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))
    feeds = random_feeds(scalar)
    assert feeds["sr"].shape == () and int(feeds["sr"]) == 16000
    assert feeds["n"].dtype == np.int32 and feeds["n"].shape == (3,) and 0 <= feeds["n"].min() <= feeds["n"].max() < 8


def test_refused_feeds_name_the_input_and_suggest_an_evaluator() -> None:
    graph = build_graph(builders.bert_encoder(), {"input_ids": (1, 4), "attention_mask": (1, 4), "token_type_ids": (1, 4)})
    error = "m.onnx: ONNX Runtime failed to run the model (Non-zero status code returned while running Gather node. Name:'type_gather' ...)"
    err = feed_failure(graph, error)
    assert isinstance(err, LayerLabError)
    assert "'token_type_ids'" in str(err) and "'input_ids'" not in str(err) and "--eval" in str(err) and ".npz" in str(err)
    with pytest.raises(LayerLabError, match="unknown dims"):
        random_feeds(build_graph(builders.bert_encoder()))

"""Fold the constant subgraphs that compute weights, so the layers they feed are recognised as layers.

Older exports compute weights instead of storing them: ``ConstantOfShape`` biases, ``Identity`` /
``Cast`` chains and ``Transpose``/``Reshape`` of stored tensors in front of Conv/Gemm/MatMul, and
initializers also listed as graph inputs (IR < 4 style, which makes ONNX Runtime treat them as
overridable inputs, not constants). LayerLab calls a node a layer when its weight is a constant,
so on such a model it sees 0 layers, no routines and no sensitivity.

The folding is ONNX Runtime's own constant folding (the maintained folder the model will run
under anyway), saved with ``SessionOptions.optimized_model_filepath`` at ``ORT_ENABLE_BASIC`` with
every other basic optimizer disabled: fusions such as Conv+BatchNormalization would change the graph
the user sees and tunes, and node names must stay as the file has them (plans are keyed by name).
Initializers listed as inputs are dropped from the inputs first, as ORT's own
``remove_initializer_from_input.py`` does. The fold runs only when something is foldable, so a
model that needs nothing is left byte for byte as it was.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import onnx

__all__ = ["fold_constants", "foldable_nodes"]

logger = logging.getLogger(__name__)

# ORT's basic-level graph transformers other than ConstantFolding (unknown names are ignored by ORT,
# so names from other versions do no harm).
_KEEP_STRUCTURE = [
    "ConvBNFusion", "ConvAddFusion", "ConvMulFusion", "ReluClipFusion", "FuseReluClip", "EliminateIdentity",
    "EliminateSlice", "UnsqueezeElimination", "EliminateDropout", "CommonSubexpressionElimination",
    "CommonSubexpressionEliminationApplyOnce", "ConstantSharing", "GemmActivationFusion", "MatMulAddFusion",
    "NoopElimination", "DivMulFusion", "ShapeToInitializer", "ConcatSliceElimination", "GemmSumFusion",
    "GemmTransposeFusion", "CastElimination", "ExpandElimination", "NotWhereFusion", "DoubleQDQPairsRemover",
    "QDQPropagationTransformer", "WeightBiasQuantization", "QDQS8ToU8Transformer", "QDQSelectorActionTransformer",
    "QDQFinalCleanupTransformer", "TransposeOptimizer", "LabelEncoderFusion", "PadFusion", "ConvActivationFusion",
]
_NEVER_FOLD = {"Constant", "RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial"}


def foldable_nodes(model: onnx.ModelProto) -> list[str]:
    """Names (or op types) of nodes whose every input is a constant: what folding would replace."""
    inputs = {i.name for i in model.graph.input}
    consts = {t.name for t in model.graph.initializer if t.name not in inputs}
    consts |= {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    out = []
    for n in model.graph.node:
        if n.op_type in _NEVER_FOLD or any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
                                           for a in n.attribute):
            continue
        if all(not t or t in consts for t in n.input):
            out.append(n.name or n.op_type)
            consts |= {o for o in n.output if o}  # chains fold as a whole
    return out


def _feeds_a_weight(model: onnx.ModelProto, foldable: list[str]) -> bool:
    """True when a folded node's output would be the weight (or bias) of a Conv/ConvTranspose/Gemm/MatMul."""
    from engine.ir.ops import op_facts

    names = set(foldable)
    made = {o for n in model.graph.node if (n.name or n.op_type) in names for o in n.output}
    for n in model.graph.node:
        if op_facts(n.op_type).tunable and any(t in made for t in n.input[1:]):
            return True
        if n.op_type == "MatMul" and n.input and n.input[0] in made:
            return True
    return False


def fold_constants(model: onnx.ModelProto, label: str = "<model>") -> tuple[onnx.ModelProto, list[str]]:
    """The model with initializers-as-inputs made constants and constant subgraphs folded; and notes."""
    notes: list[str] = []
    inits = {t.name for t in model.graph.initializer}
    listed = [i for i in model.graph.input if i.name in inits]
    if listed:
        keep = [i for i in model.graph.input if i.name not in inits]
        del model.graph.input[:]
        model.graph.input.extend(keep)
        notes.append(f"{len(listed)} initializer(s) listed as graph inputs treated as constants")
    foldable = foldable_nodes(model)
    if not _feeds_a_weight(model, foldable):
        return model, notes  # nothing a layer needs: leave the file's graph as it is
    folded = _ort_fold(model, label)
    if folded is None:
        return model, notes
    gone = len(model.graph.node) - len(folded.graph.node)
    notes.append(f"{gone} node(s) computing constants folded ({', '.join(foldable[:3])}{', ...' if len(foldable) > 3 else ''})")
    logger.info("%s: %s", label, "; ".join(notes))
    return folded, notes


def _ort_fold(model: onnx.ModelProto, label: str) -> onnx.ModelProto | None:
    """ORT's constant folding alone; None (and the model stays as it was) when ORT cannot load it."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.log_severity_level = 3
    with tempfile.TemporaryDirectory(prefix="layerlab-fold-") as tmp:
        out = Path(tmp) / "folded.onnx"
        options.optimized_model_filepath = str(out)
        try:
            ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"],
                                 disabled_optimizers=_KEEP_STRUCTURE)
            folded = onnx.load(str(out))
        except Exception as exc:  # noqa: BLE001 - ORT's load errors are untyped; the checker reports real problems later
            logger.info("%s: constant folding skipped (%s)", label, str(exc).splitlines()[0][:200] if str(exc) else exc)
            return None
    # ORT writes its own opset list and value_info; keep the file's metadata and let LayerLab infer shapes again.
    del folded.graph.value_info[:]
    folded.ir_version = model.ir_version
    folded.producer_name, folded.producer_version = model.producer_name, model.producer_version
    return folded

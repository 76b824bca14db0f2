"""A mixed-provider plan as ONNX Runtime can deploy it: every node annotated with ``layer_ann``, and the
``session.layer_assignment_settings`` string that maps the annotations to devices.

ONNX Runtime (1.2x and later, e.g. 1.32; not the ``onnxruntime-openvino`` 1.24.1 build) reads a
``layer_ann`` entry in each node's ``metadata_props`` and, with the session config entry
``session.layer_assignment_settings`` (``"gpu(=ep_CUDA); cpu(=ep_CPU)"``), pre-assigns the annotated
nodes to the execution providers on those devices before its own capability-based partitioning.
Its designators are devices (cpu, gpu, npu), not providers: two providers on one device (the CPU
provider and OpenVINO on the CPU) cannot be told apart that way, and ``assignment_settings`` says so.
Such routes run as LayerLab measured them: parts in turn (``engine.measure.partition``).

Each node gets ``ep_<provider>`` of its segment's layer (``engine.ir.partition.owners``); nodes a
converter added (Quantize/Dequantize, Casts) take the annotation of the node they feed, else of the
node that feeds them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import onnx

from engine.ir.graph import ModelGraph
from engine.measure.provider_costs import placement
from engine.measure.providers import CPU, routine_on, short_name

__all__ = ["DEVICES", "LAYER_ANN", "annotate", "annotated", "assignment_settings", "deploy_lines", "plan_providers"]

logger = logging.getLogger(__name__)

LAYER_ANN = "layer_ann"
#: The device designator ORT's layer assignment matches each provider by (OpenVINO: its default CPU device).
DEVICES = {
    "CPUExecutionProvider": "cpu", "OpenVINOExecutionProvider": "cpu", "CUDAExecutionProvider": "gpu",
    "TensorrtExecutionProvider": "gpu", "DmlExecutionProvider": "gpu", "ROCMExecutionProvider": "gpu",
    "MIGraphXExecutionProvider": "gpu", "CoreMLExecutionProvider": "npu", "QNNExecutionProvider": "npu",
    "VitisAIExecutionProvider": "npu",
}


def plan_providers(graph: ModelGraph, plan: object) -> dict[str, str]:
    """layer -> the provider its plan entry names (only layers that name one other than CPU)."""
    out = {}
    for node in graph.layers:
        provider = plan.settings_for(node.name).provider  # type: ignore[attr-defined]
        if provider and provider != CPU:
            out[node.name] = provider
    return out


def annotate(model: onnx.ModelProto, graph: ModelGraph, providers: Mapping[str, str]) -> onnx.ModelProto:
    """A copy of ``model`` (the plan's variant of ``graph``) with ``layer_ann = ep_<provider>`` on every node."""
    where = placement(graph, {layer: routine_on("fp32", p) for layer, p in providers.items()})
    out = onnx.ModelProto()
    out.CopyFrom(model)
    nodes = list(out.graph.node)
    tag = {n.name: where[n.name] for n in nodes if n.name in where}
    readers: dict[str, list[onnx.NodeProto]] = {}
    producer: dict[str, onnx.NodeProto] = {}
    for n in nodes:
        for t in n.input:
            readers.setdefault(t, []).append(n)
        for t in n.output:
            producer[t] = n
    # Converter-added chains (Q -> DQ) go with the node they feed, then (a graph output's) with their source.
    downstream = lambda n: [r for t in n.output for r in readers.get(t, [])]
    upstream = lambda n: [producer[t] for t in n.input if t in producer]
    for near in (downstream, upstream):
        changed = True
        while changed:
            changed = False
            for n in nodes:
                known = [m for m in near(n) if m.name in tag] if n.name not in tag else []
                if known:
                    tag[n.name] = tag[known[0].name]
                    changed = True
    for n in nodes:
        entry = next((p for p in n.metadata_props if p.key == LAYER_ANN), None) or n.metadata_props.add()
        entry.key = LAYER_ANN
        entry.value = f"ep_{short_name(tag.get(n.name, CPU))}"
    return out


def assignment_settings(providers: Mapping[str, str] | set[str]) -> tuple[str, list[str]]:
    """``session.layer_assignment_settings`` for the providers a plan uses (CPU always), and notes on what
    it cannot express: providers sharing a device, providers whose device is unknown."""
    used = sorted(set(providers.values() if isinstance(providers, Mapping) else providers) | {CPU})
    by_device: dict[str, list[str]] = {}
    notes = []
    for p in used:
        device = DEVICES.get(p)
        if device is None:
            notes.append(f"{p}: no known device designator; its nodes fall back to ORT's own partitioning")
            continue
        by_device.setdefault(device, []).append(p)
    for device, ps in by_device.items():
        if len(ps) > 1:
            notes.append(f"{' and '.join(ps)} are both on device '{device}': the setting names devices, not providers, "
                         "so ORT cannot keep them apart (run such a route as parts, as LayerLab measures it)")
    text = "; ".join(f"{d}({', '.join('=ep_' + short_name(p) for p in ps)})" for d, ps in by_device.items())
    return text, notes


def annotated(model: onnx.ModelProto, graph: ModelGraph, plan: object) -> tuple[onnx.ModelProto, dict[str, str]]:
    """``model`` (``plan``'s variant of ``graph``) annotated when the plan places layers on other providers
    (else ``model`` itself), and the layer -> provider map it used."""
    providers = plan_providers(graph, plan)
    return (annotate(model, graph, providers) if providers else model), providers


def deploy_lines(providers: Mapping[str, str]) -> list[str]:
    """What a user deploying the annotated model needs to know: where the layers go, the session config
    entry, and what it cannot express ([] for a CPU-only plan)."""
    if not providers:
        return []
    text, notes = assignment_settings(providers)
    return [f"{len(providers)} layer(s) on {', '.join(sorted(set(providers.values())))}; nodes carry layer_ann. "
            f"For ONNX Runtime builds with layer assignment (1.2x+), set the session config entry\n"
            f"    session.layer_assignment_settings = \"{text}\"", *(f"note: {n}" for n in notes)]

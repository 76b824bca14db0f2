"""Attribute ONNX Runtime profiler kernels back to the nodes of the model that was profiled.

With ORT_ENABLE_ALL the kernels ORT runs are not the model's nodes: Conv+Relu becomes one NCHWc
``Conv`` named after the Relu's output (``<tensor>_nchwc``), MatMul+Add becomes ``X/MatMulAddFusion``
(a Gemm between two ORT Reshapes), QDQ groups become ``X_token_N`` QLinear kernels, and ORT adds
kernels of its own (ReorderInput/ReorderOutput, Transposes for NHWC, Casts, Memcpy).

Rules, applied to each node of ORT's *optimized* graph (saved with ``optimized_model_filepath``):

1. **Name**: strip ORT's decorations (``fused `` and ``InsertedPrecisionFreeCast_`` prefixes,
   ``_token_N`` and ``_kernel_time`` suffixes); an exact node name wins, then ``<tensor>_nchwc``
   (the node producing that tensor), then the longest node name followed by ``/`` (fusion suffixes).
2. **Tensor**: otherwise, the producer of an output tensor the model also has.
3. **Helpers** ORT inserted with no match: Reshape/Squeeze/Unsqueeze/Identity/Flatten serve the
   neighbouring kernel's node (they are part of how ORT runs it, e.g. MatMul as Gemm); layout,
   precision and device conversions (Reorder*, Transpose, Cast, Memcpy*, Q/DQ) are *adapts*, keyed by
   the model tensor they convert.
4. A match whose op differs from the kernel's (an NCHWc Conv named after its Relu) moves upstream
   through single-consumer nodes to a node of the kernel's op, so the time lands on the layer.

5. Kernels of a subgraph (``<If>_then_branch__...``) are already inside their If/Loop/Scan kernel's
   time: they are not counted again.

Nodes ORT fused away get 0 ms; every kernel's time lands somewhere, so the sums add up.
"""

from __future__ import annotations

import bisect
import json
import logging
import re
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

__all__ = ["Attribution", "KernelTimes", "attribute", "read_trace"]

logger = logging.getLogger(__name__)

_PREFIXES = ("fused ", "InsertedPrecisionFreeCast_")
_TOKEN = re.compile(r"(_token_\d+)+$")
# ORT names a subgraph's kernels <If/Loop/Scan node>_then_branch__..., _else_branch__..., _body__...
_NESTED = re.compile(r"_(?:then_branch|else_branch|body)__")
_SERVING_OPS = {"Reshape", "Squeeze", "Unsqueeze", "Identity", "Flatten"}
_ADAPT_KINDS = {
    "ReorderInput": "reorder",
    "ReorderOutput": "reorder",
    "Transpose": "transpose",
    "Cast": "cast",
    "MemcpyToHost": "memcpy",
    "MemcpyFromHost": "memcpy",
    "QuantizeLinear": "quantize",
    "DynamicQuantizeLinear": "quantize",
    "DequantizeLinear": "dequantize",
}
_TYPICAL = 0.25  # a run within this share of the median run's duration is a typical one

# Kernel op -> the model op it implements, for rule 4.
_KERNEL_OPS = {
    "FusedConv": "Conv", "QLinearConv": "Conv", "ConvInteger": "Conv", "NhwcFusedConv": "Conv",
    "FusedGemm": "Gemm", "QGemm": "Gemm", "FusedMatMul": "MatMul", "MatMulInteger": "MatMul",
    "DynamicQuantizeMatMul": "MatMul", "MatMulIntegerToFloat": "MatMul", "QLinearMatMul": "MatMul",
}


@dataclass
class KernelTimes:
    """Per-kernel durations from an ORT trace: name -> list of (ms, ran on the thread pool), the run each
    sample belongs to (``sample_runs``, index into ``run_ms``) and each run's duration."""

    samples: dict[str, list[tuple[float, bool]]] = field(default_factory=dict)
    ops: dict[str, str] = field(default_factory=dict)
    runs: int = 0
    sample_runs: dict[str, list[int]] = field(default_factory=dict)
    run_ms: list[float] = field(default_factory=list)

    def typical_runs(self) -> set[int]:
        """The runs that took about as long as the median run (within ``_TYPICAL``), at least that one.

        On a shared machine another process takes the core for milliseconds now and then: the stall
        lands inside one kernel of one run, and a mean over runs carries it into that kernel (a 1 ms
        model's kernels added up to 1.7x its end-to-end median that way). That run's total is long
        too: leaving out the runs far from the median keeps the kernel sums those of a typical run, as
        robust as the end-to-end median they are compared with (both hold while most runs are clean)."""
        if not self.run_ms:
            return set()
        median = sorted(self.run_ms)[(len(self.run_ms) - 1) // 2]  # a run's own duration: it is always kept
        return {i for i, ms in enumerate(self.run_ms) if abs(ms - median) <= _TYPICAL * median}

    def time(self, name: str, overhead_serial: float = 0.0, overhead_parallel: float = 0.0) -> float:
        """Mean (ms) of one kernel per typical run (``typical_runs``), with the profiler's own overhead
        taken off; a kernel that runs several times in a run (subgraphs) counts each time.

        ORT stamps whole microseconds: a mean over runs resolves sub-microsecond kernels where a
        median cannot. Without run boundaries (a hand-made trace) the top and bottom tenth of the
        samples are trimmed instead.
        """
        values = [ms - (overhead_parallel if par else overhead_serial) for ms, par in self.samples.get(name, [])]
        if not values:
            return 0.0
        runs = self.sample_runs.get(name)
        if runs is not None and len(runs) == len(values) and self.run_ms:
            typical = self.typical_runs()
            return max(sum(v for v, r in zip(values, runs) if r in typical) / len(typical), 0.0)
        values.sort()
        cut = len(values) // 10
        kept = values[cut : len(values) - cut] or values
        per_event = float(np.mean(kept))
        # A kernel may run more than once per run (subgraphs): scale to per-run time.
        return max(per_event, 0.0) * len(values) / max(self.runs, 1)


@dataclass
class Attribution:
    """Where each kernel's time went: model nodes, adapts (tensor, kind), and the kernel->target map."""

    node_ms: dict[str, float]
    adapts: dict[tuple[str, str], float]
    targets: dict[str, str]  # kernel name -> "node:<name>" or "adapt:<kind>:<tensor>"


def read_trace(path: str | Path, skip_runs: int = 0) -> KernelTimes:
    """Kernel durations from ORT's JSON trace, ignoring the first ``skip_runs`` runs (warm-up)."""
    events = json.loads(Path(path).read_text())
    runs = sorted((e["ts"], e.get("dur", 0)) for e in events if e.get("cat") == "Session" and e.get("name") == "model_run")
    kept = runs[skip_runs:]
    start = kept[0][0] if kept else 0
    starts = [ts for ts, _ in kept]
    out = KernelTimes(runs=len(kept), run_ms=[dur / 1000.0 for _, dur in kept])
    for e in events:
        name = e.get("name", "")
        if e.get("cat") != "Node" or not name.endswith("_kernel_time") or e.get("ts", 0) < start:
            continue
        kernel = name[: -len("_kernel_time")]
        if starts:  # the run this kernel ran in: the last one that started before it
            out.sample_runs.setdefault(kernel, []).append(bisect.bisect_right(starts, e["ts"]) - 1)
        args = e.get("args", {})
        stats = args.get("thread_scheduling_stats", {})
        subs = stats.get("sub_threads", {}) if isinstance(stats, dict) else {}
        parallel = isinstance(subs, dict) and any(
            isinstance(v, dict) and int(v.get("num_run", 0)) > 0 for v in subs.values()
        )
        out.samples.setdefault(kernel, []).append((e.get("dur", 0) / 1000.0, parallel))
        out.ops[kernel] = args.get("op_name", "")
    return out


def attribute(
    model: onnx.ModelProto,
    optimized: onnx.ModelProto | None,
    kernel_ms: Mapping[str, float],
    kernel_ops: Mapping[str, str] | None = None,
) -> Attribution:
    """Give every kernel's time (``kernel_ms``: kernel name -> ms) to a node of ``model`` or an adapt."""
    ctx = _Context(model, optimized, kernel_ops or {})
    node_ms = {n.name: 0.0 for n in model.graph.node}
    adapts: dict[tuple[str, str], float] = defaultdict(float)
    targets: dict[str, str] = {}
    inside: dict[str, float] = defaultdict(float)
    for kernel, ms in kernel_ms.items():
        container = _container(kernel, kernel_ms)
        if container is not None:  # runs inside an If/Loop/Scan kernel whose time already holds it
            targets[kernel] = f"inside:{container}"
            inside[container] += ms
    for kernel, ms in kernel_ms.items():
        if kernel in targets:
            continue
        if inside.get(kernel):
            # The container's own time carries the profiler's cost of every kernel inside it; the
            # inside kernels' times have it taken off, so their sum is the better figure.
            ms = min(ms, inside[kernel])
        target = ctx.target(kernel)
        targets[kernel] = target
        if target.startswith("node:"):
            node_ms[target[5:]] += ms
        else:
            _, kind, tensor = target.split(":", 2)
            adapts[(tensor, kind)] += ms
    return Attribution(node_ms, dict(adapts), targets)


def _container(kernel: str, kernels: Mapping[str, float]) -> str | None:
    """The control-flow kernel (If/Loop/Scan) a subgraph kernel runs inside, when the trace has it."""
    match = _NESTED.search(kernel)
    while match is not None:
        outer = kernel[: match.start()]
        if outer in kernels:
            return outer
        match = _NESTED.search(kernel, match.end())
    return None


class _Context:
    """Lookup tables over the model and ORT's optimized graph."""

    def __init__(self, model: onnx.ModelProto, optimized: onnx.ModelProto | None, kernel_ops: Mapping[str, str]):
        self.nodes = {n.name: n for n in model.graph.node}
        self.producer = {o: n.name for n in model.graph.node for o in n.output if o}
        self.consumers: dict[str, list[str]] = defaultdict(list)
        for n in model.graph.node:
            for t in n.input:
                self.consumers[t].append(n.name)
        self.tensors = set(self.producer) | {i.name for i in model.graph.input}
        self.by_length = sorted(self.nodes, key=len, reverse=True)
        self.opt = {n.name: n for n in optimized.graph.node} if optimized is not None else {}
        self.opt_producer = {o: n.name for n in self.opt.values() for o in n.output if o}
        self.opt_consumers: dict[str, list[str]] = defaultdict(list)
        for n in self.opt.values():
            for t in n.input:
                self.opt_consumers[t].append(n.name)
        self.kernel_ops = kernel_ops
        self.memo: dict[str, str] = {}

    def _op_of(self, kernel: str) -> str:
        node = self.opt.get(kernel)
        return node.op_type if node is not None else self.kernel_ops.get(kernel, "")

    def target(self, kernel: str, depth: int = 0) -> str:
        if kernel not in self.memo:
            self.memo[kernel] = self._target(kernel, depth)
        return self.memo[kernel]

    def _target(self, kernel: str, depth: int) -> str:
        op = self._op_of(kernel)
        direct = self._by_name(kernel, direct_only=True)
        if direct is not None:
            return "node:" + direct
        match = self._by_name(kernel) or (None if op in _ADAPT_KINDS or op in _SERVING_OPS else self._by_tensor(kernel))
        if match is not None:  # found through a tensor name: may be the fused Relu, not the layer
            return "node:" + self._move_to_op(match, op)
        if op in _SERVING_OPS and depth < 4:
            served = self._neighbour(kernel, depth)
            if served is not None:
                return served
        return f"adapt:{_ADAPT_KINDS.get(op, 'other')}:{self._tensor_of(kernel)}"

    def _by_name(self, kernel: str, direct_only: bool = False) -> str | None:
        """Rule 1; ``direct_only``: only the node's own name (exact, or with a fusion suffix)."""
        name = kernel
        for prefix in _PREFIXES:
            name = name.removeprefix(prefix)
        name = _TOKEN.sub("", name)
        if name in self.nodes:
            return name
        for candidate in self.by_length:
            if name.startswith(candidate + "/"):
                return candidate
        if not direct_only and name.endswith("_nchwc") and name[:-6] in self.producer:
            return self.producer[name[:-6]]
        return None

    def _by_tensor(self, kernel: str) -> str | None:
        node = self.opt.get(kernel)
        for t in node.output if node is not None else ():
            if t in self.producer:
                return self.producer[t]
        return None

    def _move_to_op(self, name: str, kernel_op: str) -> str:
        want = _KERNEL_OPS.get(kernel_op, kernel_op)
        current = name
        for _ in range(4):
            if not want or self.nodes[current].op_type == want:
                return current
            inputs = [t for t in self.nodes[current].input if t in self.producer]
            if len(inputs) != 1 or len(self.consumers[inputs[0]]) != 1:
                break
            current = self.producer[inputs[0]]
        return current if self.nodes[current].op_type == want else name

    def _neighbour(self, kernel: str, depth: int) -> str | None:
        """The node a serving helper works for: its consumer kernel, else its producer kernel."""
        node = self.opt.get(kernel)
        if node is None:
            return None
        after = [c for t in node.output for c in self.opt_consumers.get(t, [])]
        before = [self.opt_producer[t] for t in node.input if t in self.opt_producer]
        # ORT's gemm_output_reshape works for the kernel before it; other helpers for the one after.
        around = before + after if "output" in kernel else after + before
        for other in around:
            if self._op_of(other) in _SERVING_OPS | set(_ADAPT_KINDS):
                continue
            target = self.target(other, depth + 1)
            if target.startswith("node:"):
                return target
        return None

    def _tensor_of(self, kernel: str) -> str:
        """The model tensor an adapt converts: its input when the model has it, else its output."""
        node = self.opt.get(kernel)
        if node is None:
            return kernel
        for t in list(node.input) + list(node.output):
            if t in self.tensors:
                return t
        # Walk back through ORT-made tensors (reorder_token_N) to one the model has.
        seen = 0
        current = node
        while current is not None and seen < 8:
            seen += 1
            src = next((t for t in current.input if t in self.opt_producer), None)
            if src is None:
                break
            current = self.opt[self.opt_producer[src]]
            for t in current.output:
                if t in self.tensors:
                    return t
            matched = self._by_name(current.name)
            if matched is not None and self.nodes[matched].output:
                return self.nodes[matched].output[0]
        return node.input[0] if node.input else kernel

"""Where a sensitivity sweep runs: in this process, in local worker processes, or on Ray actors.

A sweep's layers are independent: each worker loads the model and the evaluator once, runs the
ordinary ``sensitivity_job`` on its share of the layers (its own fp32 baseline and activation cache),
and the shares are merged back in the model's layer order. Every worker computes each layer exactly
as the single-process sweep does, so the drops are identical. Progress from every worker is summed
into one stream; cancelling sets a stop flag each worker checks at its next progress step, and the
layers finished so far come back (``complete`` False), as with the local sweep.

``--executor local[:N]``: N worker processes (spawned; default 1, which runs in this process).
``--executor ray[=ADDRESS]``: one Ray actor per share, as many as the cluster's CPUs; without an address
a local Ray instance, with one an existing cluster (``ray://head:10001`` or ``auto``); ``ray:N``: a
local instance with N actors. Ray is the optional extra ``distributed``.
The evaluator runs in the workers: on a cluster, its file and the model must be readable at the same
paths on every node (or the model is sent as bytes when it has no path).
"""

from __future__ import annotations

import json
import logging
import math
import os
import queue
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from engine.errors import LayerLabError, SettingsError
from engine.evaluate.evaluator import Evaluator
from engine.evaluate.sensitivity import Sensitivity, SweepSettings, sensitivity_job, sweep_layers
from engine.ir.graph import ModelGraph
from engine.progress import Cancelled, Job, Progress, run

__all__ = ["Executor", "SweepSpec", "parse_executor", "run_share"]

logger = logging.getLogger(__name__)

_POLL = 0.25  # seconds between looks at the workers' progress (the sweep yields at least this often)


@dataclass(frozen=True)
class SweepSpec:
    """What a worker needs to rebuild the sweep's inputs: the model (path or bytes), its shapes, the evaluator file."""

    model_path: str | None
    model_bytes: bytes | None
    input_shapes: dict[str, tuple[int, ...]]
    evaluator_path: str

    @staticmethod
    def of(graph: ModelGraph, evaluator: Evaluator) -> SweepSpec:
        if not Path(evaluator.label).is_file():
            raise SettingsError(f"{evaluator.label}: a distributed sweep needs the evaluator as a file")
        path = str(graph.path) if graph.path is not None and Path(graph.path).is_file() else None
        return SweepSpec(path, None if path else graph.model.SerializeToString(), dict(graph.input_shapes),
                         evaluator.label)

    def load(self) -> tuple[ModelGraph, Evaluator]:
        import onnx

        from engine.evaluate.evaluator import load_evaluator
        from engine.ir.graph import build_graph, load_model

        if self.model_path is not None:
            graph = load_model(self.model_path, self.input_shapes)
        else:
            assert self.model_bytes is not None
            graph = build_graph(onnx.load_model_from_string(self.model_bytes), self.input_shapes)
        return graph, load_evaluator(self.evaluator_path)


def run_share(spec: SweepSpec, settings: SweepSettings, report: Callable[[Progress], None],
              should_stop: Callable[[], bool]) -> dict[str, Any]:
    """One worker's share: the sweep on ``settings.layers``; its Sensitivity as a dict (partial when stopped)."""
    graph, evaluator = spec.load()
    try:
        result = run(sensitivity_job(graph, evaluator, settings), report, should_stop)
    except Cancelled as exc:
        result = exc.partial if isinstance(exc.partial, Sensitivity) else Sensitivity(math.nan, evaluator.metric_name)
    return result.to_dict()


class Executor:
    """Runs a sweep's layers in ``workers`` shares. ``kind`` "local" or "ray"; ``address`` for Ray."""

    def __init__(self, kind: str = "local", workers: int = 1, address: str | None = None) -> None:
        self.kind, self.workers, self.address = kind, max(1, workers), address

    def __repr__(self) -> str:
        return f"{self.kind}:{self.workers}" if self.kind == "local" else f"ray={self.address or 'local'}"

    def sweep_job(self, graph: ModelGraph, evaluator: Evaluator, settings: SweepSettings | None = None) -> Job[Sensitivity]:
        """The sweep of ``graph`` as one job, whichever the executor."""
        settings = settings or SweepSettings()
        if self.kind == "local" and self.workers == 1:
            return (yield from sensitivity_job(graph, evaluator, settings))
        layers = sweep_layers(graph, settings)
        shares = [layers[i::self.workers] for i in range(self.workers)] if self.kind == "local" else None
        if self.kind == "ray":
            from engine.evaluate.ray_executor import ray_workers

            count = ray_workers(self.address, self.workers, len(layers))
            shares = [layers[i::count] for i in range(count)]
        assert shares is not None
        shares = [s for s in shares if s]
        spec = SweepSpec.of(graph, evaluator)
        if self.kind == "local" and settings.threads == 0:  # share the cores: N workers at full width would fight
            settings = replace(settings, threads=max(1, (os.cpu_count() or 1) // len(shares)))
        jobs = [replace(settings, share=tuple(s)) for s in shares]
        if self.kind == "ray":
            from engine.evaluate.ray_executor import start_ray

            pool = start_ray(self.address, spec, jobs)
        else:
            pool = _ProcessPool(spec, jobs)
        return (yield from _gather(pool, layers, evaluator))


def parse_executor(text: str | None) -> Executor:
    """``local``, ``local:N``, ``ray`` or ``ray=ADDRESS``; SettingsError otherwise."""
    text = (text or "local").strip()
    if text == "local" or text.startswith("local:"):
        n = text.partition(":")[2] or "1"
        if not n.isdigit() or int(n) < 1:
            raise SettingsError(f"--executor {text!r}: local:N needs N >= 1")
        return Executor("local", int(n))
    if text == "ray" or text.startswith("ray="):
        address = text.partition("=")[2] or None
        return Executor("ray", 0, address)
    if text.startswith("ray:") and text[4:].isdigit() and int(text[4:]) >= 1:
        return Executor("ray", int(text[4:]), None)
    raise SettingsError(f"--executor {text!r}: expected local, local:N, ray, ray:N or ray=ADDRESS")


def _gather(pool: Any, layers: Sequence[str], evaluator: Evaluator) -> Job[Sensitivity]:
    """Sum the workers' progress into one stream, then merge their results in layer order."""
    progress: dict[int, Progress] = {}
    results: dict[int, dict[str, Any]] = {}
    try:
        while len(results) < pool.count:
            for kind, index, payload in pool.poll(_POLL):
                if kind == "progress":
                    progress[index] = payload
                elif kind == "result":
                    results[index] = payload
                else:
                    raise LayerLabError(f"sweep worker {index + 1} of {pool.count}: {payload}")
            done = sum(p.done for p in progress.values())
            total = sum(p.total for p in progress.values())
            last = max(progress.items(), default=(0, Progress(0, 0)))[1]
            yield Progress(done, total, f"{len(results)}/{pool.count} workers done; {last.message}")
    except Cancelled:
        pool.stop()
        results.update(pool.drain())
        merged = _merge(results.values(), layers, evaluator)
        merged.complete = False
        return merged
    finally:
        pool.close()
    return _merge(results.values(), layers, evaluator)


def _merge(parts: Any, layers: Sequence[str], evaluator: Evaluator) -> Sensitivity:
    loaded = [Sensitivity.from_json(json.dumps(p)) for p in parts]
    baseline = next((s.baseline for s in loaded if not math.isnan(s.baseline)), math.nan)
    found = {name: ls for s in loaded for name, ls in s.layers.items()}
    out = Sensitivity(baseline, evaluator.metric_name, {n: found[n] for n in layers if n in found},
                      all(s.complete for s in loaded) and len(found) == len(layers))
    for s in loaded:
        out.whole_model.update(s.whole_model)
    return out


class _ProcessPool:
    """Spawned worker processes, one per share, reporting through a queue; a shared event stops them."""

    def __init__(self, spec: SweepSpec, jobs: Sequence[SweepSettings]) -> None:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")  # not fork: ORT's thread pools do not survive a fork
        self.queue = ctx.Queue()
        self.stop_event = ctx.Event()
        self.procs = [ctx.Process(target=_process_main, args=(spec, s, i, self.queue, self.stop_event), daemon=True)
                      for i, s in enumerate(jobs)]
        self.count = len(self.procs)
        for p in self.procs:
            p.start()

    def poll(self, timeout: float) -> list[tuple[str, int, Any]]:
        out = []
        try:
            out.append(self.queue.get(timeout=timeout))
            while True:
                out.append(self.queue.get_nowait())
        except queue.Empty:
            pass
        dead = [i for i, p in enumerate(self.procs) if p.exitcode not in (None, 0)]
        if dead and not out:
            out.append(("error", dead[0], f"died (exit code {self.procs[dead[0]].exitcode})"))
        return out

    def stop(self) -> None:
        self.stop_event.set()

    def drain(self) -> dict[int, dict[str, Any]]:
        got: dict[int, dict[str, Any]] = {}
        for _ in range(40 * self.count):  # at most ~10 s a worker: each stops at its next progress step
            for kind, index, payload in self.poll(_POLL):
                if kind == "result":
                    got[index] = payload
            if len(got) == self.count or all(p.exitcode is not None for p in self.procs):
                break
        return got

    def close(self) -> None:
        for p in self.procs:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()


def _process_main(spec: SweepSpec, settings: SweepSettings, index: int, out: Any, stop: Any) -> None:
    try:
        result = run_share(spec, settings, lambda p: out.put(("progress", index, p)), stop.is_set)
        out.put(("result", index, result))
    except LayerLabError as exc:
        out.put(("error", index, str(exc)))
    except Exception as exc:  # reported in one line by the parent; the traceback goes to this worker's log
        logger.exception("sweep worker %d failed", index)
        out.put(("error", index, f"{exc.__class__.__name__}: {exc}"))

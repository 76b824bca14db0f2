"""Sweep shares on Ray actors (the optional extra ``distributed``): each actor loads the model and
evaluator once and runs its share of the layers; progress comes back through a Ray queue, and a stop
call (actors take two calls at once) asks a running share to stop at its next progress step.

Without an address Ray starts a local instance bound to 127.0.0.1; with one (``auto``,
``ray://head:10001``, ``head:6379``) it joins that cluster.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from engine.errors import SettingsError
from engine.evaluate.sensitivity import SweepSettings
from engine.progress import Progress

__all__ = ["ray_workers", "start_ray"]

logger = logging.getLogger(__name__)

_PROGRESS_EVERY = 0.5  # seconds between progress records an actor sends
_started_here = False


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise SettingsError("--executor ray needs Ray: pip install 'layerlab[distributed]'") from None
    return ray


def _init(address: str | None) -> Any:
    global _started_here
    ray = _ray()
    if not ray.is_initialized():
        if address:
            ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
        else:  # a local instance, no dashboard (Ray 2.60 starts it with token authentication on)
            ray.init(_node_ip_address="127.0.0.1", include_dashboard=False, logging_level=logging.WARNING,
                     log_to_driver=False)
            _started_here = True
    return ray


def ray_workers(address: str | None, workers: int, layers: int) -> int:
    """How many actors: ``workers`` when given, else the cluster's CPUs; never more than the layers."""
    ray = _init(address)
    for _ in range(20):  # a fresh instance registers its CPUs a moment after init
        if workers >= 1 or ray.cluster_resources().get("CPU"):
            break
        time.sleep(0.1)
    if workers < 1:
        workers = int(ray.cluster_resources().get("CPU", 1))
    return max(1, min(workers, layers))


def shutdown() -> None:
    """Stop the local Ray instance this process started (a joined cluster is left alone)."""
    global _started_here
    ray = _ray()
    if _started_here and ray.is_initialized():
        ray.shutdown()
    _started_here = False


def start_ray(address: str | None, spec: Any, jobs: Sequence[SweepSettings]) -> "_RayPool":
    return _RayPool(_init(address), spec, jobs)


def _actor_class(ray: Any) -> Any:
    @ray.remote(num_cpus=1, max_concurrency=2)
    class SweepActor:
        def __init__(self, spec: Any) -> None:
            self.graph, self.evaluator = spec.load()  # once per actor
            self.stopped = threading.Event()

        def stop(self) -> None:
            self.stopped.set()

        def run(self, settings: SweepSettings, index: int, out: Any) -> dict[str, Any]:
            import math

            from engine.evaluate.sensitivity import Sensitivity, sensitivity_job
            from engine.progress import Cancelled, run

            last = [0.0]

            def report(p: Progress) -> None:
                if time.monotonic() - last[0] >= _PROGRESS_EVERY or p.done == p.total:
                    last[0] = time.monotonic()
                    out.put(("progress", index, p))

            try:
                result = run(sensitivity_job(self.graph, self.evaluator, settings), report, self.stopped.is_set)
            except Cancelled as exc:
                result = exc.partial if isinstance(exc.partial, Sensitivity) else Sensitivity(math.nan)
            return result.to_dict()

    return SweepActor


class _RayPool:
    def __init__(self, ray: Any, spec: Any, jobs: Sequence[SweepSettings]) -> None:
        from ray.util.queue import Queue

        self.ray = ray
        self.queue = Queue()
        actor = _actor_class(ray)
        self.actors = [actor.remote(spec) for _ in jobs]
        self.refs = {a.run.remote(s, i, self.queue): i for i, (a, s) in enumerate(zip(self.actors, jobs))}
        self.count = len(self.actors)

    def poll(self, timeout: float) -> list[tuple[str, int, Any]]:
        from ray.util.queue import Empty

        out: list[tuple[str, int, Any]] = []
        try:
            out.append(self.queue.get(timeout=timeout))
            while True:
                out.append(self.queue.get_nowait())
        except Empty:
            pass
        ready, _ = self.ray.wait(list(self.refs), num_returns=len(self.refs), timeout=0)
        for ref in ready:
            index = self.refs.pop(ref)
            try:
                out.append(("result", index, self.ray.get(ref)))
            except Exception as exc:  # the actor's error, raised here by Ray
                out.append(("error", index, str(exc).splitlines()[-1][:300]))
        return out

    def stop(self) -> None:
        for a in self.actors:
            a.stop.remote()

    def drain(self) -> dict[int, dict[str, Any]]:
        got = {}
        for ref, index in list(self.refs.items()):
            try:
                got[index] = self.ray.get(ref, timeout=30)
            except Exception as exc:
                logger.warning("ray sweep share %d lost on cancel: %s", index, exc)
        self.refs.clear()
        return got

    def close(self) -> None:
        for a in self.actors:
            self.ray.kill(a)
        self.queue.shutdown()

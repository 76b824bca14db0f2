"""The agent's share of execution providers as routine sources: the ``routines`` job (segment
micro-models timed on one provider, plus the crossings between it and CPU) and mixed-provider routes
sent to ``measure`` as parts.

Both take only data, like every agent job: ONNX models the client built (segments, in fp32 or int8;
a route's parts, already in their precisions) and arrays. The agent builds nothing it would need
its own quantizer for, so an agent whose ONNX Runtime build lacks the quantizer's newer API (the
``onnxruntime-openvino`` 1.24.1 wheel) still times every routine.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from engine.jobs.agent_checks import blob, int_setting, model, provider, provider_name
from engine.measure.partition import Part, PartitionedModel
from engine.measure.provider_tables import Segment, TableOptions, time_segments_job
from engine.measure.timing import physical_cores
from engine.measure.wire import WireError, read_npz
from engine.progress import Job

__all__ = ["partitioned", "run_routines"]

logger = logging.getLogger(__name__)

_MAX_SEGMENTS = 20000
_MAX_PARTS = 1000


def run_routines(settings: Mapping[str, Any], blobs: Mapping[str, bytes]) -> Job[dict[str, Any]]:
    """Time the ``seg:<i>`` models (on ``segfeeds:<i>``) and the whole ``model`` (on ``feeds``) on the
    ``provider``; ``settings["segments"]``: [layer, routine] per i. Returns ``ProviderTables`` JSON."""
    where = provider(settings)
    listed = settings.get("segments")
    if (not isinstance(listed, list) or len(listed) > _MAX_SEGMENTS
            or not all(isinstance(e, list) and len(e) == 2 and all(isinstance(x, str) for x in e) for e in listed)):
        raise WireError(f"segments: expected a list of at most {_MAX_SEGMENTS} [layer, routine] pairs")
    if any(r not in ("fp32", "int8") for _, r in listed):
        raise WireError("segments: routines per provider are fp32 or int8")
    entries = [Segment(layer, routine, model(blob(blobs, f"seg:{i}"), f"segment {layer}"),
                       read_npz(blob(blobs, f"segfeeds:{i}"), f"segfeeds:{i}"))
               for i, (layer, routine) in enumerate(listed)]
    threads = int_setting(settings, "threads", None, 1, 512) or physical_cores()
    options = TableOptions(providers=(where,), threads=threads, warmup=int_setting(settings, "warmup", 3, 1, 100) or 3,
                           repeats=int_setting(settings, "repeats", 15, 3, 1000) or 15,
                           crossings=bool(settings.get("crossings", True)))
    whole = model(blob(blobs, "model"), "model")
    feeds = read_npz(blob(blobs, "feeds"), "feeds")
    return time_segments_job(entries, whole, feeds, where, threads, options)


def partitioned(routes: Any, blobs: Mapping[str, bytes], outputs: Any, spin: Any = None) -> dict[str, PartitionedModel]:
    """Mixed-provider routes of a ``measure`` job: ``routes`` maps a name to its parts in run order
    ({"provider", "inputs", "outputs"}, model in blob ``part:<name>:<i>``); ``outputs[name]``: the
    graph outputs the route returns; ``spin[name]``: ``PartitionedModel.spin`` (true, false or null)."""
    spin = {} if spin is None else spin
    if not isinstance(routes, dict) or not isinstance(outputs, dict) or not isinstance(spin, dict):
        raise WireError("parts/outputs/spin: expected objects keyed by route name")
    if not all(v is None or isinstance(v, bool) for v in spin.values()):
        raise WireError("spin: expected true, false or null per route")
    out = {}
    for name, parts in routes.items():
        if not isinstance(parts, list) or not 0 < len(parts) <= _MAX_PARTS:
            raise WireError(f"route {name!r}: expected a list of 1 to {_MAX_PARTS} parts")
        built = []
        for i, p in enumerate(parts):
            if not isinstance(p, dict) or not all(isinstance(p.get(k), list) for k in ("inputs", "outputs")):
                raise WireError(f"route {name!r} part {i}: expected provider, inputs and outputs")
            built.append(Part(provider_name(p.get("provider")), model(blob(blobs, f"part:{name}:{i}"), f"{name} part {i}"),
                              [str(t) for t in p["inputs"]], [str(t) for t in p["outputs"]]))
        names = outputs.get(name)
        if not isinstance(names, list) or not names:
            raise WireError(f"route {name!r}: outputs must name the graph outputs it returns")
        out[str(name)] = PartitionedModel(built, [str(t) for t in names], spin.get(name))
    return out

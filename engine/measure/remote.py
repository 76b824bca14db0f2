"""The client of a profiling agent (``layerlab agent``): profile and time models on a remote target device.

``RemoteTarget`` speaks the protocol of ``engine.measure.wire`` over http.client (HTTPS when the
target is ``https://...``). Its jobs are generators like the local ones (``profile_job``,
``latency_job``), so the CLI, tune and bench drive them the same way; closing one (cancel) closes
the connection, and the agent stops the job. Profiles are cached locally per target: the key holds
the target's identity (address, CPU, ORT version, providers) besides what a local key holds, so a
profile from one target never answers for another or for this machine.

Errors are one line: ``TargetAuthError`` (the agent refused the token) and ``TargetError`` (cannot
connect, a refusal, the agent gone mid-job). Nothing local is touched when a remote job fails.
"""

from __future__ import annotations

import http.client
import json
import logging
import socket
import ssl
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnx

from engine.errors import LayerLabError
from engine.ir.graph import ModelGraph
from engine.measure.cache import ProfileCache, cache_key
from engine.measure.partition import PartitionedModel
from engine.measure.profiler import ProfileOptions, feeds_record
from engine.measure.provider_tables import Segment, TableOptions, Timer
from engine.measure.tables import Profile, Stats
from engine.measure.targets import Target
from engine.measure.feeds import feeds_digest
from engine.ir.feeds import random_feeds
from engine.measure.wire import npz_bytes, pack, read_token
from engine.progress import Job, Progress

__all__ = ["RemoteTarget", "Target", "TargetAuthError", "TargetError"]

logger = logging.getLogger(__name__)

_READ_TIMEOUT = 120.0  # seconds without a line from the agent (it sends progress at least every second)


class TargetError(LayerLabError):
    """A remote target cannot be reached, refused a job, or went away mid-job."""


class TargetAuthError(TargetError):
    """The agent refused the token."""


class RemoteTarget:
    """A connection to one agent; ``info()`` is asked once and kept."""

    def __init__(self, target: Target, timeout: float = _READ_TIMEOUT) -> None:
        self.target = target
        self.timeout = timeout
        self._token = read_token(target.token_file)
        self._info: dict[str, Any] | None = None

    # --- what the target is -------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        """CPU, cores, ORT version, providers, routines per provider and limits of the target."""
        if self._info is None:
            conn = self._connect()
            try:
                conn.request("GET", "/v1/info", headers=self._headers())
                resp = conn.getresponse()
                data = self._json(resp)
            except (OSError, http.client.HTTPException) as exc:
                raise self._unreachable(exc) from None
            finally:
                conn.close()
            self._info = data
        return self._info

    def identity(self) -> dict[str, Any]:
        """What a profile measured there depends on: address, CPU, ORT version, providers."""
        info = self.info()
        return {"address": f"{self.target.host}:{self.target.port}", "cpu": info.get("cpu", ""),
                "ort": info.get("ort", ""), "providers": info.get("providers", []), "host": info.get("host", "")}

    def describe(self) -> dict[str, Any]:
        """The record kept with profiles, sessions and reports: name, address and the target's facts."""
        return {"name": self.target.name, **self.identity(), "cores": self.info().get("cores")}

    # --- jobs ---------------------------------------------------------------------------

    def profile_job(self, graph: ModelGraph, options: ProfileOptions = ProfileOptions()) -> Job[Profile]:
        """Profile ``graph`` on the target (its routine tables, its ORT); cached locally per target."""
        feeds = dict(options.feeds) if options.feeds is not None else random_feeds(graph, options.seed)
        settings = {"threads": options.threads, "repeats": options.repeats, "routines": list(options.routines),
                    "ops_int8": options.ops_int8, "adapts": options.adapts, "provider": options.provider}
        yield Progress(0, 0, f"asking {self.target.label}")
        key = cache_key("remote-profile", target=self.identity(), model=graph.sha256, settings=settings,
                        shapes={k: list(v.shape) for k, v in feeds.items()},
                        feeds=feeds_digest(feeds) if options.feeds is not None else options.seed)
        cache = ProfileCache(options.cache_dir, options.use_cache)
        try:
            cached = cache.get(key)
            if cached is not None:
                return Profile.from_json(cached)
            data = yield from self._job("profile", settings, {"model": graph.model.SerializeToString(),
                                                               "feeds": npz_bytes(feeds)})
            data["target"] = self.describe()
            data["model_sha256"] = graph.sha256  # the agent hashed the bytes sent (the graph as built here)
            data["feeds"], data["feeds_digest"] = feeds_record(feeds, options)
            profile = Profile.from_json(data)
            if profile.complete:
                cache.put(key, profile.to_json())
            return profile
        finally:
            cache.close()

    def latency_job(self, models: Mapping[str, onnx.ModelProto | PartitionedModel], feeds: Mapping[str, np.ndarray], threads: int | None,
                    repeats: int, sessions: int = 3, provider: str | None = None) -> Job[dict[str, Stats]]:
        """Latency of each model on the target, timed in turns there (like ``interleaved_latency`` here),
        on ``provider`` (None: the CPU provider); a ``PartitionedModel`` runs each part on its own provider."""
        blobs = {f"model:{n}": m.SerializeToString() for n, m in models.items() if not isinstance(m, PartitionedModel)}
        blobs["feeds"] = npz_bytes(feeds)
        settings: dict[str, Any] = {"threads": threads, "repeats": repeats, "sessions": sessions, "provider": provider}
        routes = {n: m for n, m in models.items() if isinstance(m, PartitionedModel)}
        if routes:  # mixed-provider routes go as their parts, each run on its provider there
            settings["parts"] = {n: [{"provider": p.provider, "inputs": p.inputs, "outputs": p.outputs} for p in m.parts]
                                 for n, m in routes.items()}
            settings["outputs"] = {n: m.outputs for n, m in routes.items()}
            settings["spin"] = {n: m.spin for n, m in routes.items()}
            blobs.update({f"part:{n}:{i}": p.model.SerializeToString() for n, m in routes.items() for i, p in enumerate(m.parts)})
        data = yield from self._job("measure", settings, blobs)
        return {n: Stats(**s) for n, s in data["latency"].items()}

    def routines_timer(self) -> Timer:
        """A ``provider_tables_job`` timer that times the segment micro-models on the target (its
        ``routines`` job); pass ``identity()`` with it so the tables are cached per target."""
        def timer(entries: Sequence[Segment], whole: onnx.ModelProto, feeds: Mapping[str, np.ndarray], provider: str,
                  threads: int, options: TableOptions) -> Job[dict[str, Any]]:
            blobs = {"model": whole.SerializeToString(), "feeds": npz_bytes(feeds)}
            for i, seg in enumerate(entries):
                blobs[f"seg:{i}"] = seg.model.SerializeToString()
                blobs[f"segfeeds:{i}"] = npz_bytes(seg.feeds)
            settings = {"provider": provider, "threads": threads, "repeats": options.repeats, "warmup": options.warmup,
                        "crossings": options.crossings, "segments": [[s.layer, s.routine] for s in entries]}
            return (yield from self._job("routines", settings, blobs))
        return timer

    def fidelity_job(self, models: Mapping[str, onnx.ModelProto], feeds: Mapping[str, np.ndarray],
                     samples: Mapping[str, np.ndarray], reference: str, threads: int | None = None,
                     repeats: int = 30) -> Job[dict[str, Any]]:
        """Latency plus fidelity (top-1 agreement, cosine, SQNR) of each model against ``reference``'s
        outputs on ``samples`` (``input:<name>`` arrays), all computed on the target."""
        blobs = {f"model:{n}": m.SerializeToString() for n, m in models.items()}
        blobs.update(feeds=npz_bytes(feeds), samples=npz_bytes(samples))
        settings = {"threads": threads, "repeats": repeats, "reference": reference}
        return (yield from self._job("measure", settings, blobs))

    # --- the wire -----------------------------------------------------------------------

    def _job(self, kind: str, settings: dict[str, Any], blobs: dict[str, bytes]) -> Job[dict[str, Any]]:
        body = pack(kind, settings, blobs)
        limit = self.info().get("limits", {}).get("max_upload")
        if isinstance(limit, int) and len(body) > limit:
            raise TargetError(f"target {self.target.label}: the {kind} upload is {len(body)} bytes, "
                              f"over the agent's limit of {limit} bytes")
        conn = self._connect()
        try:
            try:
                conn.request("POST", "/v1/jobs", body=body,
                             headers={**self._headers(), "Content-Type": "application/octet-stream"})
                resp = conn.getresponse()
            except (OSError, http.client.HTTPException) as exc:
                raise self._unreachable(exc) from None
            if resp.status != 200:
                self._json(resp)  # raises with the agent's reason
            while True:
                try:
                    line = resp.readline()
                except (OSError, http.client.HTTPException) as exc:
                    raise TargetError(f"target {self.target.label}: lost the agent mid-{kind} "
                                      f"({exc.__class__.__name__}); nothing local was changed") from None
                if not line:
                    raise TargetError(f"target {self.target.label}: the agent closed the connection mid-{kind} "
                                      "(stopped or crashed); nothing local was changed")
                try:
                    msg = json.loads(line)
                except ValueError:
                    raise TargetError(f"target {self.target.label}: not an agent's answer ({line[:60]!r})") from None
                if "progress" in msg:
                    p = msg["progress"]
                    yield Progress(int(p.get("done", 0)), int(p.get("total", 0)), f"[{self.target.label}] {p.get('message', '')}")
                elif "result" in msg:
                    return msg["result"]
                else:
                    raise TargetError(f"target {self.target.label}: {msg.get('error', 'unexpected answer')}")
        finally:
            conn.close()  # on cancel too: the agent stops the job when the connection goes

    def _connect(self) -> http.client.HTTPConnection:
        t = self.target
        if t.tls:
            context = ssl.create_default_context(cafile=str(t.cafile) if t.cafile else None)
            return http.client.HTTPSConnection(t.host, t.port, timeout=self.timeout, context=context)
        return http.client.HTTPConnection(t.host, t.port, timeout=self.timeout)

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"}

    def _json(self, resp: http.client.HTTPResponse) -> dict[str, Any]:
        try:
            data = json.loads(resp.read() or b"{}")
        except ValueError:
            data = {}
        if resp.status == 401:
            raise TargetAuthError(f"target {self.target.label} refused the token in {self.target.token_file} (wrong token)")
        if resp.status != 200:
            raise TargetError(f"target {self.target.label} refused: {data.get('error') or f'HTTP {resp.status}'}")
        return data

    def _unreachable(self, exc: BaseException) -> TargetError:
        if isinstance(exc, ssl.SSLError):
            why = f"TLS failed: {exc.reason or exc}"
        elif isinstance(exc, socket.timeout):
            why = f"no answer in {self.timeout:g} s"
        else:
            why = getattr(exc, "strerror", None) or exc.__class__.__name__
        return TargetError(f"target {self.target.label}: cannot reach the agent ({why})")


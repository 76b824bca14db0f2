"""The profiling agent's HTTP server: stdlib only, a bearer token, limits, and a clear refusal of anything else.

Routes: ``GET /v1/info`` (the target: CPU, ORT, providers, routines, limits) and ``POST /v1/jobs``
(an envelope from ``engine.measure.wire``; the answer streams JSON lines until the connection
closes). Every request must carry ``Authorization: Bearer <token>``; the token is compared with
``hmac.compare_digest`` and a wrong one is logged with the caller's address. Limits: the body's
size (refused from Content-Length before anything is read), seconds per job (checked at every
progress step, at least once a second), jobs at once (a busy agent answers 503 at once rather than
queue). A client that goes away stops its job at the next progress step. TLS wraps the listening
socket when a certificate and key are given.
"""

from __future__ import annotations

import hmac
import json
import logging
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from engine.errors import LayerLabError
from engine.jobs.agent_jobs import AgentLimits, agent_info, start_job
from engine.measure.wire import unpack
from engine.progress import Progress

__all__ = ["Agent", "AgentLimits", "make_agent"]

logger = logging.getLogger(__name__)

_PROGRESS_EVERY = 0.5  # seconds between progress lines sent to the client


class Agent(ThreadingHTTPServer):
    """The server: holds the token, the limits and the count of running jobs."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], token: str, limits: AgentLimits) -> None:
        super().__init__(address, _Handler)
        self.token = token.encode()
        self.limits = limits
        self.slots = threading.BoundedSemaphore(limits.max_jobs)
        self.info = agent_info(limits)
        self.tls = False

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"{'https' if self.tls else 'http'}://{host}:{port}"


def make_agent(host: str, port: int, token: str, limits: AgentLimits | None = None,
               cert: Path | None = None, key: Path | None = None) -> Agent:
    """An agent bound to ``host:port`` (0: any free port), TLS-wrapped when ``cert`` and ``key`` are given."""
    try:
        agent = Agent((host, port), token, limits or AgentLimits())
    except OSError as exc:
        raise LayerLabError(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from None
    if cert is not None or key is not None:
        if cert is None or key is None:
            raise LayerLabError("TLS needs both --cert and --key")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(str(cert), str(key))
        except (OSError, ssl.SSLError) as exc:
            agent.server_close()
            raise LayerLabError(f"{cert}: cannot load the TLS certificate and key ({exc})") from None
        agent.socket = context.wrap_socket(agent.socket, server_side=True)
        agent.tls = True
    return agent


class _Handler(BaseHTTPRequestHandler):
    server: Agent
    protocol_version = "HTTP/1.0"  # one request per connection; a streamed answer ends when it closes
    server_version = "layerlab-agent"

    def log_message(self, format: str, *args: Any) -> None:
        logger.info("%s %s", self.client_address[0], format % args)

    # --- routes -------------------------------------------------------------------------

    def do_GET(self) -> None:
        if not self._authorized():
            return
        if self.path != "/v1/info":
            return self._refuse(404, f"no such resource {self.path[:80]!r} (the agent serves GET /v1/info, POST /v1/jobs)")
        self._reply(200, self.server.info)

    def do_POST(self) -> None:
        if not self._authorized():
            return
        if self.path != "/v1/jobs":
            return self._refuse(404, f"no such resource {self.path[:80]!r} (the agent serves GET /v1/info, POST /v1/jobs)")
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            return self._refuse(411, "a job request needs a Content-Length")
        limit = self.server.limits.max_upload
        if length > limit or length < 0:
            return self._refuse(413, f"upload of {length} bytes is over the agent's limit of {limit} bytes")
        body = self.rfile.read(length)
        if not self.server.slots.acquire(blocking=False):  # before any work: reading the models costs too
            return self._refuse(503, f"busy: {self.server.limits.max_jobs} job(s) running, the agent's limit; try again later")
        final: dict[str, Any] | None = None
        try:
            try:
                kind, settings, blobs = unpack(body)
                job = start_job(kind, settings, blobs)
            except LayerLabError as exc:
                return self._refuse(400, str(exc))
            final = self._stream(kind, job)
        finally:
            self.server.slots.release()
        if final is not None:  # after the release: a client that sends its next job on reading this finds a free slot
            try:
                self._line(final)
            except OSError:
                pass
            except (TypeError, ValueError) as exc:  # a result JSON cannot carry: still one line to the client
                self._try_line({"error": f"the agent could not send the job's result: {str(exc)[:200]}"})

    def do_PUT(self) -> None:
        self._refuse(405, f"method {self.command} refused (the agent serves GET /v1/info, POST /v1/jobs)")

    do_DELETE = do_PATCH = do_PUT

    # --- pieces -------------------------------------------------------------------------

    def _authorized(self) -> bool:
        given = self.headers.get("Authorization", "")
        scheme, _, token = given.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), self.server.token):
            return True
        logger.warning("refused %s %s from %s: %s", self.command, self.path[:80], self.client_address[0],
                       "wrong token" if given else "no token")
        self._refuse(401, "wrong or missing token")
        return False

    def _stream(self, kind: str, job: Any) -> dict[str, Any] | None:
        """Run ``job``, sending progress lines; return the last line (its result or error) for the caller to send
        once the job's slot is free, or None when the client left. Stops at the time limit or when the client leaves."""
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.end_headers()
        deadline = time.monotonic() + self.server.limits.job_seconds
        last = 0.0
        logger.info("%s: %s job started", self.client_address[0], kind)
        try:
            while True:
                try:
                    p: Progress = next(job)
                except StopIteration as stop:
                    logger.info("%s: %s job done", self.client_address[0], kind)
                    return {"result": stop.value}
                if time.monotonic() > deadline:
                    job.close()
                    return {"error": f"{kind} job stopped at the agent's limit of {self.server.limits.job_seconds:g} s"}
                if time.monotonic() - last >= _PROGRESS_EVERY:
                    last = time.monotonic()
                    self._line({"progress": {"done": p.done, "total": p.total, "message": p.message}})
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            logger.warning("%s: client went away; %s job stopped", self.client_address[0], kind)
            job.close()
            return None
        except LayerLabError as exc:
            return {"error": str(exc)}
        except Exception as exc:  # a bug or an ORT failure: tell the client in one line, keep serving
            logger.exception("%s job failed", kind)
            return {"error": f"{kind} job failed on the agent: {exc.__class__.__name__}: {str(exc)[:200]}"}

    def _line(self, data: dict[str, Any]) -> None:
        self.wfile.write(json.dumps(data).encode() + b"\n")
        self.wfile.flush()

    def _try_line(self, data: dict[str, Any]) -> None:
        try:
            self._line(data)
        except OSError:
            pass

    def _reply(self, status: int, data: dict[str, Any]) -> None:
        body = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except OSError:
            pass

    def _refuse(self, status: int, message: str) -> None:
        if status != 401:
            logger.warning("refused %s %s from %s: %s", self.command, self.path[:80], self.client_address[0], message)
        self.close_connection = True
        self._reply(status, {"error": message})

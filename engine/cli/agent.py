"""``layerlab agent``: serve profile and measure jobs on this machine (a target device) to LayerLab clients.

Prints one line ``layerlab agent listening on URL`` once the socket is bound (port 0 picks a free
one), then serves until interrupted. It never runs client code: jobs carry ONNX models and arrays.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

__all__ = ["add_parser", "run"]

logger = logging.getLogger(__name__)

_LOOPBACK = ("127.0.0.1", "::1", "localhost")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("agent", help="serve profile/measure jobs of remote LayerLab clients on this machine")
    p.add_argument("--listen", default="127.0.0.1:8765", metavar="HOST:PORT",
                   help="address to bind (default 127.0.0.1:8765; port 0 picks a free one)")
    p.add_argument("--token-file", required=True, type=Path, metavar="FILE",
                   help="file holding the bearer token clients must send (mode 600)")
    p.add_argument("--cert", type=Path, metavar="PEM", help="TLS certificate (with --key: serve https)")
    p.add_argument("--key", type=Path, metavar="PEM", help="TLS private key")
    p.add_argument("--max-upload", default="256MB", metavar="BYTES", help="largest job upload (default 256MB)")
    p.add_argument("--job-timeout", type=float, default=1800.0, metavar="S", help="seconds a job may run (default 1800)")
    p.add_argument("--max-jobs", type=int, default=1, metavar="N",
                   help="jobs at once (default 1: timings of concurrent jobs disturb each other)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from engine.cli.tune import parse_bytes
    from engine.errors import SettingsError
    from engine.jobs.agent_server import AgentLimits, make_agent
    from engine.measure.wire import read_token

    host, sep, port = args.listen.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise SettingsError(f"--listen {args.listen!r}: expected HOST:PORT")
    if args.job_timeout <= 0 or args.max_jobs < 1:
        raise SettingsError("--job-timeout must be positive and --max-jobs at least 1")
    token = read_token(args.token_file)
    limits = AgentLimits(parse_bytes(args.max_upload), args.job_timeout, args.max_jobs)
    agent = make_agent(host.strip("[]"), int(port), token, limits, args.cert, args.key)
    if host not in _LOOPBACK and not agent.tls:
        print(f"layerlab agent: warning: listening on {host} without TLS: the token and models cross the network "
              "in clear; give --cert/--key", file=sys.stderr)
    logging.getLogger("engine.jobs.agent_server").setLevel(logging.INFO)
    print(f"layerlab agent listening on {agent.url}", flush=True)
    try:
        agent.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        agent.server_close()
    return 0

"""Start and stop a `layerlab agent` on 127.0.0.1 (an ephemeral port) for the agent tests."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest


def write_token(path: Path, mode: int = 0o600) -> Path:
    path.write_text(secrets.token_urlsafe(32) + "\n")
    path.chmod(mode)
    return path


@dataclass
class AgentProcess:
    proc: subprocess.Popen
    url: str
    token_file: Path
    log: Path

    @property
    def address(self) -> str:
        return self.url.removeprefix("http://")

    def log_text(self) -> str:
        return self.log.read_text()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def start_agent(tmp: Path, *extra: str, token_file: Path | None = None) -> AgentProcess:
    """An agent subprocess with its own cache folder; waits for its 'listening on' line."""
    tmp.mkdir(parents=True, exist_ok=True)
    token_file = token_file or write_token(tmp / "agent.token")
    log = tmp / "agent.log"
    env = {**os.environ, "LAYERLAB_CACHE": str(tmp / "agent-cache")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "agent", "--listen", "127.0.0.1:0", "--token-file", str(token_file), *extra],
        stdout=subprocess.PIPE, stderr=log.open("w"), text=True, env=env,
    )
    deadline = time.monotonic() + 60
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "listening on" not in line or time.monotonic() > deadline:
        proc.kill()
        pytest.fail(f"agent did not start: {line!r} {log.read_text()}")
    return AgentProcess(proc, line.strip().rsplit(" ", 1)[1], token_file, log)

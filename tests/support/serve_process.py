"""`school-gateway` commands as real processes: a clean environment, a free port, a
`serve` process waited for until it answers and stopped (SIGINT) afterwards."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from tests.support.cli_process import COMMAND
from tests.support.environment import JWT_SECRET

START_TIMEOUT_S = 30


def command_env(database_url: str, data_dir: Path, **overrides: str) -> dict[str, str]:
    """A clean environment: only what the command needs, never the developer's own."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("SCHOOL_GATEWAY_", "OTEL_")) and key != "DATABASE_URL"
    }
    env.update(
        {
            "DATABASE_URL": database_url,
            "SCHOOL_GATEWAY_DATA_DIR": str(data_dir),
            "SCHOOL_GATEWAY_JWT_SECRET": JWT_SECRET,
            "SCHOOL_GATEWAY_POOL_MIN": "1",
        }
    )
    env.update(overrides)
    return env


def free_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_healthy(
    process: subprocess.Popen[Any],
    port: int,
    *,
    ended: Callable[[], str],
    timeout: float = START_TIMEOUT_S,
) -> None:
    """Until `GET /healthz` on `port` answers 200; fails with `ended()` (what the process
    printed) if it exits first, or when `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        assert process.poll() is None, ended()
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"server did not start on port {port}"
        time.sleep(0.2)


def stop(process: subprocess.Popen[Any], timeout: float = 15) -> None:
    """SIGINT (a graceful stop), then SIGKILL if it has not ended within `timeout` seconds."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def serving(
    env: dict[str, str], port: int, command: str = "serve", *options: str
) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        [COMMAND, command, "--port", str(port), *options],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until_healthy(process, port, ended=lambda: process.communicate()[1])
        yield process
    finally:
        stop(process)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()

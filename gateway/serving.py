"""Running uvicorn with one or several workers, with TCP_NODELAY on every connection.

The event loop is uvloop and the HTTP parser httptools (both pinned in requirements.lock)
unless SCHOOL_GATEWAY_SERVER=asyncio asks for uvicorn's pure-Python pair (asyncio + h11),
kept for measuring what they bring (docs/performance.md) and as a fallback.
"""

from __future__ import annotations

import os
import socket
from typing import Final, Literal

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

SERVER_ENV: Final = "SCHOOL_GATEWAY_SERVER"

LoopName = Literal["uvloop", "asyncio"]
HttpName = Literal["httptools", "h11"]


def server_stack(value: str | None = None) -> tuple[LoopName, HttpName]:
    """uvicorn's (loop, http) implementations: `fast` (default) or `asyncio` (pure Python)."""
    choice = (os.environ.get(SERVER_ENV, "") if value is None else value).strip().lower()
    if choice in ("", "fast", "uvloop"):
        return "uvloop", "httptools"
    if choice in ("asyncio", "h11"):
        return "asyncio", "h11"
    raise ValueError(f"{SERVER_ENV} must be 'fast' or 'asyncio', not {choice!r}")


class _NoDelayConfig(uvicorn.Config):
    """uvicorn's config, with Nagle's algorithm off on the shared listening socket.

    With several workers uvicorn binds `socket.socket(AF_INET)` (protocol 0), and
    asyncio only sets TCP_NODELAY on sockets whose protocol is IPPROTO_TCP, so every
    keep-alive response waited ~40 ms for the client's delayed ACK (measured by
    bench/run). Linux copies TCP_NODELAY from the listening socket to accepted ones.
    """

    def bind_socket(self) -> socket.socket:
        sock = super().bind_socket()
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock


def run_factory(app_factory: str, *, host: str, port: int, workers: int) -> None:
    """Serve `module:factory` on host:port with `workers` processes (uvicorn.run's paths)."""
    loop, http = server_stack()
    config = _NoDelayConfig(
        app_factory,
        loop=loop,
        http=http,
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=None,
        access_log=False,
    )
    server = uvicorn.Server(config)
    try:
        if config.workers > 1:
            Multiprocess(config, sockets=[config.bind_socket()]).run()
        else:
            server.run()
    except KeyboardInterrupt:  # Ctrl+C is the normal way to stop; uvicorn.run does the same
        pass
    if config.workers == 1 and not server.started:
        raise SystemExit(STARTUP_FAILURE)

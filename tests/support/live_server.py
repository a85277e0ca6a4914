"""The real application under uvicorn on a free 127.0.0.1 port, inside the test process.

Flows that leave the gateway and come back (ESIA sign-in through the development
identity provider) need a real HTTP server: the gateway's callback calls the provider's
token and person endpoints over HTTP, and the provider is mounted in the same app. The
server runs as a task of the tests' event loop and shares their database pool; its
settings have SCHOOL_GATEWAY_PUBLIC_URL set to its own address. It is configured as
`serve` configures uvicorn (`gateway.http.serving.gateway_config`: the header timeout, proxy
headers only from SCHOOL_GATEWAY_TRUSTED_PROXIES).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass

import asyncpg
import uvicorn
from starlette.applications import Starlette

from gateway.app import create_app
from gateway.core.settings import Settings
from gateway.http.serving import gateway_config

_START_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class LiveServer:
    url: str  # 'http://127.0.0.1:PORT'
    settings: Settings
    app: Starlette


class _Server(uvicorn.Server):
    """uvicorn without signal handlers: the test runner owns the process's signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def live_server(env: Mapping[str, str], pool: asyncpg.Pool) -> AsyncIterator[LiveServer]:
    """Serve `create_app(Settings.from_env(env + PUBLIC_URL), pool)` until the block ends."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    settings = Settings.from_env({**env, "SCHOOL_GATEWAY_PUBLIC_URL": url})
    app = create_app(settings, pool=pool)
    config = gateway_config(app, settings, lifespan="on", log_level="warning")
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(_START_TIMEOUT_S):
            while not server.started:
                if task.done():
                    task.result()  # raises what stopped the server
                await asyncio.sleep(0.01)
        yield LiveServer(url=url, settings=settings, app=app)
    finally:
        server.should_exit = True
        await task
        sock.close()

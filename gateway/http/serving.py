"""Running uvicorn with one or several workers, with TCP_NODELAY on every connection.

The event loop is uvloop and the HTTP parser httptools (both pinned in requirements.lock)
unless `settings.server` (SCHOOL_GATEWAY_SERVER=asyncio) asks for uvicorn's pure-Python
pair (asyncio + h11), kept for measuring what they bring (docs/performance.md) and as a
fallback.

Every server the gateway runs is configured by `gateway_config`: uvicorn's protocols
with a header timeout (gateway.http.uvicorn_protocols, SCHOOL_GATEWAY_HEADER_TIMEOUT), and proxy
headers (`X-Forwarded-For`, `X-Forwarded-Proto`) believed only from
SCHOOL_GATEWAY_TRUSTED_PROXIES — by default from nobody. uvicorn's own default trusts
127.0.0.1 (or FORWARDED_ALLOW_IPS from the environment), which let any local client
choose the address that throttling and the sign-in records see.
"""

from __future__ import annotations

import socket
from typing import Any, Literal

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

from gateway.core.settings import ServerName, Settings
from gateway.http.protocol import MAX_BODY_BYTES
from gateway.http.uvicorn_protocols import PROTOCOLS, GatewayConfig, HttpName

LoopName = Literal["uvloop", "asyncio"]
_STACKS: dict[ServerName, tuple[LoopName, HttpName]] = {
    "fast": ("uvloop", "httptools"),
    "asyncio": ("asyncio", "h11"),
}


def server_stack(server: ServerName) -> tuple[LoopName, HttpName]:
    """uvicorn's (loop, http) implementations: `fast` (default) or `asyncio` (pure Python)."""
    return _STACKS[server]


def proxy_options(trusted_proxies: tuple[str, ...]) -> dict[str, Any]:
    """uvicorn's proxy settings: off unless addresses are configured, then only those.

    `forwarded_allow_ips` is always given, so FORWARDED_ALLOW_IPS in the environment
    (which uvicorn reads when it is not) cannot widen it.
    """
    if not trusted_proxies:
        return {"proxy_headers": False, "forwarded_allow_ips": []}
    return {"proxy_headers": True, "forwarded_allow_ips": list(trusted_proxies)}


def gateway_options(settings: Settings, http: HttpName) -> dict[str, Any]:
    """The uvicorn settings every gateway server uses (see the module's doc)."""
    return {
        "http": PROTOCOLS[http],
        "header_timeout_s": settings.header_timeout_s,
        "log_config": None,
        "access_log": False,
        # WebSocket messages (graphql-transport-ws) are held to the HTTP body's limit.
        "ws": "websockets-sansio",
        "ws_max_size": MAX_BODY_BYTES,
        **proxy_options(settings.trusted_proxies),
    }


def gateway_config(app: Any, settings: Settings, **kwargs: Any) -> GatewayConfig:
    """A uvicorn config for `app` with the gateway's options (`kwargs` add to them)."""
    _, http = server_stack(settings.server)
    return GatewayConfig(app, **{**gateway_options(settings, http), **kwargs})


class _NoDelayConfig(GatewayConfig):
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


def run_factory(
    app_factory: str, settings: Settings, *, host: str, port: int, workers: int
) -> None:
    """Serve `module:factory` on host:port with `workers` processes (uvicorn.run's paths)."""
    loop, http = server_stack(settings.server)
    config = _NoDelayConfig(
        app_factory,
        loop=loop,
        factory=True,
        host=host,
        port=port,
        workers=workers,
        **gateway_options(settings, http),
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

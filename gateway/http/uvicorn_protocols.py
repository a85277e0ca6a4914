"""uvicorn's HTTP protocols with a header timeout, and the config that carries it.

uvicorn closes a keep-alive connection that stays idle after a response
(`timeout_keep_alive`), but nothing limits a connection that never finishes its request
headers: a fresh connection that sends nothing, or one that sends a byte a second, stays
open for good (slowloris). The protocols here close a connection whose request headers
are not complete within `header_timeout_s`, counted from the connection's opening for its
first request and from a request's first byte for the next ones. The body has its own
deadline in the application (gateway.app `body_deadline`: 408 REQUEST_TIMEOUT).

Both of uvicorn's parsers are covered: httptools (the default, `fast`) and h11
(`SCHOOL_GATEWAY_SERVER=asyncio`). `GatewayConfig` is uvicorn's config with
`header_timeout_s`; it stays picklable (module-level classes only), as uvicorn's
multi-process supervisor requires.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Final, Literal

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway.http.sse import wants_event_stream

log = logging.getLogger(__name__)

DEFAULT_HEADER_TIMEOUT_S: Final = 10.0

HttpName = Literal["httptools", "h11"]


class GatewayConfig(uvicorn.Config):
    """uvicorn's config plus the header timeout read by the protocols below."""

    def __init__(
        self, app: Any, *, header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S, **kwargs: Any
    ) -> None:
        super().__init__(app, **kwargs)
        self.header_timeout_s = header_timeout_s


def _header_timeout(config: uvicorn.Config) -> float:
    return float(getattr(config, "header_timeout_s", DEFAULT_HEADER_TIMEOUT_S))


class HeaderDeadline:
    """A timer, armed while a connection waits for request headers, that closes it."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, timeout_s: float, expire: Callable[[], None]
    ) -> None:
        self._loop = loop
        self._timeout_s = timeout_s
        self._expire = expire
        self._timer: asyncio.TimerHandle | None = None

    def arm(self) -> None:
        """Start counting, unless already counting (the total time is what is limited)."""
        if self._timer is None:
            self._timer = self._loop.call_later(self._timeout_s, self._expired)

    def disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self) -> None:
        self._timer = None
        self._expire()


def _close_slow(transport: asyncio.Transport | None, timeout_s: float) -> None:
    if transport is not None and not transport.is_closing():
        log.info("closed a connection: request headers not complete within %.0f s", timeout_s)
        transport.close()


def _headers_deadline(protocol: HttpToolsProtocol | H11Protocol) -> HeaderDeadline:
    """The header deadline of a connection just made: it closes the transport."""
    timeout_s = _header_timeout(protocol.config)
    return HeaderDeadline(
        protocol.loop, timeout_s, lambda: _close_slow(protocol.transport, timeout_s)
    )


def _end_event_stream(protocol: HttpToolsProtocol | H11Protocol) -> None:
    """At server shutdown, an event stream in flight (gateway.http.sse) would keep the
    server waiting for it for ever: its connection is closed, so the stream ends as when
    its client leaves, and the client reconnects (to another process) with its last
    cursor. Other requests in flight finish as uvicorn lets them."""
    cycle = protocol.cycle
    if cycle is None or cycle.response_complete or protocol.transport is None:
        return
    accept = next((value for name, value in cycle.scope["headers"] if name == b"accept"), b"")
    if wants_event_stream(accept.decode("latin-1")):
        protocol.transport.close()


class GatewayHttpToolsProtocol(HttpToolsProtocol):
    """httptools protocol: headers must be complete within the header timeout; event
    streams end at shutdown."""

    def shutdown(self) -> None:
        _end_event_stream(self)
        super().shutdown()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._headers_due = _headers_deadline(self)
        self._headers_due.arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._headers_due.disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._headers_due.arm()

    def on_headers_complete(self) -> None:
        self._headers_due.disarm()
        super().on_headers_complete()


class GatewayH11Protocol(H11Protocol):
    """h11 protocol: headers must be complete within the header timeout; event streams
    end at shutdown."""

    def shutdown(self) -> None:
        _end_event_stream(self)
        super().shutdown()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._headers_due = _headers_deadline(self)
        self._headers_due.arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._headers_due.disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.conn.their_state is h11.IDLE:  # bytes of a request whose headers are due
            self._headers_due.arm()
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._headers_due.disarm()


PROTOCOLS: Final[dict[HttpName, type[asyncio.Protocol]]] = {
    "httptools": GatewayHttpToolsProtocol,
    "h11": GatewayH11Protocol,
}

"""A small graphql-transport-ws client for the tests (over the `websockets` package).

`ws_connect(live_url)` opens `ws://<live>/graphql` offering the subprotocol
`graphql-transport-ws` (or none, or extra upgrade headers: a cookie, an Origin); the
`WsClient` it yields sends the protocol's messages and reads the server's, each read
bounded by a timeout, and reports how the server closed the socket. The server's `ping`
messages are skipped by default (the heartbeat test asks for them).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Final

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

PROTOCOL: Final = Subprotocol("graphql-transport-ws")
READ_TIMEOUT_S: Final = 5.0

Message = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Closed:
    """How the server closed the socket (None: no close frame, the connection dropped)."""

    code: int | None
    reason: str


class SocketClosedError(AssertionError):
    """The socket closed while a message was expected."""

    def __init__(self, closed: Closed) -> None:
        super().__init__(f"the socket closed: {closed.code} {closed.reason!r}")
        self.closed = closed


class WsClient:
    """One socket; messages are JSON objects (`send_raw` sends anything)."""

    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection

    @property
    def subprotocol(self) -> str | None:
        return self.connection.subprotocol

    async def send(self, message: Message) -> None:
        await self.connection.send(json.dumps(message))

    async def send_raw(self, text: str) -> None:
        await self.connection.send(text)

    async def init(self, payload: Message | None = None) -> Message:
        """`connection_init` (with `payload` when given); the server's answer, which must
        be `connection_ack`."""
        message: Message = {"type": "connection_init"}
        if payload is not None:
            message["payload"] = payload
        await self.send(message)
        answer = await self.receive()
        assert answer["type"] == "connection_ack", answer
        return answer

    async def subscribe(
        self, operation_id: str, query: str, variables: Mapping[str, Any] | None = None
    ) -> None:
        payload: Message = {"query": query}
        if variables is not None:
            payload["variables"] = dict(variables)
        await self.send({"id": operation_id, "type": "subscribe", "payload": payload})

    async def complete(self, operation_id: str) -> None:
        await self.send({"id": operation_id, "type": "complete"})

    async def sync(self, timeout_s: float = READ_TIMEOUT_S) -> None:
        """Send `ping` and wait for its `pong`: the server handles one socket's messages in
        order, so everything sent before (a subscription registered) has been handled.
        Other messages arriving meanwhile are an error."""
        await self.send({"type": "ping"})
        answer = await self.receive(timeout_s)
        assert answer == {"type": "pong"}, answer

    async def receive(self, timeout_s: float = READ_TIMEOUT_S, *, pings: bool = False) -> Message:
        """The server's next message (its `ping`s skipped unless `pings`); AssertionError
        when none comes within `timeout_s`, SocketClosedError when the socket closes."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    raw = await self.connection.recv()
            except TimeoutError:
                raise AssertionError(f"no message within {timeout_s} s") from None
            except ConnectionClosed:
                raise SocketClosedError(self.closed()) from None
            message = json.loads(raw)
            assert isinstance(message, dict), message
            if message.get("type") == "ping" and not pings:
                continue
            return message

    async def receive_nothing(self, within_s: float) -> None:
        """Assert that no message (but the server's pings) comes within `within_s`."""
        try:
            message = await self.receive(within_s)
        except SocketClosedError:
            raise
        except AssertionError:
            return
        raise AssertionError(f"unexpected message: {message}")

    async def next_of(self, operation_id: str, timeout_s: float = READ_TIMEOUT_S) -> Message:
        """The payload of the next message, which must be `next` for `operation_id`."""
        message = await self.receive(timeout_s)
        assert message.get("type") == "next" and message.get("id") == operation_id, message
        payload: Message = message["payload"]
        return payload

    async def wait_closed(self, timeout_s: float = READ_TIMEOUT_S) -> Closed:
        """Read until the server closes the socket (any message before is an error)."""
        try:
            message = await self.receive(timeout_s, pings=True)
        except SocketClosedError as error:
            return error.closed
        raise AssertionError(f"a message instead of the close: {message}")

    def closed(self) -> Closed:
        return Closed(self.connection.close_code, self.connection.close_reason or "")


def ws_url(live_url: str, path: str = "/graphql") -> str:
    """`http://host:port` → `ws://host:port/graphql`."""
    assert live_url.startswith("http://"), live_url
    return "ws://" + live_url.removeprefix("http://") + path


@asynccontextmanager
async def ws_connect(
    live_url: str,
    *,
    subprotocol: bool = True,
    headers: Mapping[str, str] | None = None,
) -> AsyncIterator[WsClient]:
    """A socket to the live server's `/graphql` (offering graphql-transport-ws unless
    `subprotocol` is False, with extra upgrade `headers`); closed on exit."""
    connection = await connect(
        ws_url(live_url),
        subprotocols=[PROTOCOL] if subprotocol else None,
        additional_headers=dict(headers or {}),
        proxy=None,
        open_timeout=READ_TIMEOUT_S,
        close_timeout=2,
        ping_interval=None,
    )
    try:
        yield WsClient(connection)
    finally:
        await connection.close()

"""GraphQL over WebSocket: the graphql-transport-ws protocol
(https://github.com/enisdenjo/graphql-ws/blob/master/PROTOCOL.md) at `/graphql`.

- The socket must offer the subprotocol `graphql-transport-ws` (else closed 4406).
- `connection_init` within INIT_TIMEOUT_S (else 4408). Credentials:
  `payload.Authorization` ("Bearer <token>"), else the session cookie of the upgrade
  request — accepted only when its `Origin` is one of the allowed origins (a page of
  another site could otherwise open a socket with the family's cookie); bad credentials
  or a foreign origin: 4403. No credentials: anonymous (every subscription is then
  refused UNAUTHENTICATED).
- `subscribe` runs a subscription as over SSE (gateway.http.streams): `next` per result,
  `complete` at its end, `error` when refused before it starts (validation, cost,
  permission). A second `subscribe` with a live id: 4409. `complete` from the client
  ends that subscription. At most MAX_OPERATIONS at once per socket, and at most
  `SCHOOL_GATEWAY_SUBSCRIPTIONS_MAX` sockets per process (1013 beyond).
- `ping` → `pong`; the server sends `ping` every heartbeat interval.
- A stream ended because the credentials are gone (SESSION_REVOKED, TOKEN_EXPIRED) closes
  the socket with 4401 after its last `next`/`complete`; a consumer too slow to take its
  events (SLOW_CONSUMER, or a send that does not finish in SEND_TIMEOUT_S) is closed with
  1013 (try again later): it reconnects with its last cursor and loses nothing.
- A stream whose token's signing key is retired (a forced rotation) ends UNAUTHENTICATED
  at the change feed's next recheck (4401 then).
- The database away while the credentials are checked: at `connection_init` the socket is
  closed 1013 (try again later, as SSE's 503 + Retry-After); at `subscribe` that
  operation gets `error` SERVICE_UNAVAILABLE and the socket stays.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, Final

import asyncpg
import orjson
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from auth.requests import authenticate, authenticate_cookie
from auth.tokens import BEARER, SESSION
from auth.viewer import Viewer
from gateway.core.errors import MESSAGES, ErrorCode, HttpError
from gateway.core.outage import DatabaseUnavailable, is_database_unavailable
from gateway.http.protocol import Formatted, parameters_of
from gateway.http.streams import OpenStream, Refused, Streams

log = logging.getLogger(__name__)

PROTOCOL: Final = "graphql-transport-ws"
INIT_TIMEOUT_S: Final = 10.0
SEND_TIMEOUT_S: Final = 30.0
MAX_OPERATIONS: Final = 16
MAX_ID_CHARS: Final = 128
_CREDENTIALS_GONE: Final = {
    ErrorCode.SESSION_REVOKED.value,
    ErrorCode.TOKEN_EXPIRED.value,
    ErrorCode.UNAUTHENTICATED.value,  # the token's signing key retired
}


class _Close(Exception):
    """Close the socket with this code and reason."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class _Connection:
    """One socket: its viewer and its running operations."""

    def __init__(self, streams: Streams, websocket: WebSocket, pool: asyncpg.Pool) -> None:
        self.streams = streams
        self.websocket = websocket
        self.pool = pool
        self.viewer: Viewer | None = None
        self.authorization: str | None = None
        self.cookie: str | None = None
        self.by_cookie = False
        self.expires_at: float | None = None
        self.key_id: str | None = None
        self.operations: dict[str, asyncio.Task[None]] = {}
        self.closing: _Close | None = None
        self.send_lock = asyncio.Lock()

    async def send(self, message: dict[str, Any]) -> None:
        try:
            async with self.send_lock, asyncio.timeout(SEND_TIMEOUT_S):
                await self.websocket.send_text(orjson.dumps(message).decode())
        except TimeoutError:
            raise _Close(1013, "Try again later: slow consumer") from None

    async def receive(self, timeout_s: float) -> dict[str, Any] | None:
        """The next message (None when `timeout_s` passed without one)."""
        try:
            async with asyncio.timeout(timeout_s):
                message = await self.websocket.receive()
        except TimeoutError:
            return None
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000))
        raw = message.get("text") if message.get("text") is not None else message.get("bytes")
        try:
            parsed = orjson.loads(raw or b"")
        except orjson.JSONDecodeError:
            raise _Close(4400, "Invalid message: not JSON") from None
        if not isinstance(parsed, dict) or not isinstance(parsed.get("type"), str):
            raise _Close(4400, "Invalid message: no type")
        return parsed

    async def initialise(self) -> None:
        deadline = asyncio.get_running_loop().time() + INIT_TIMEOUT_S
        while True:  # a ping may come at any time, even before the initialisation
            left = deadline - asyncio.get_running_loop().time()
            message = await self.receive(left) if left > 0 else None
            if message is None:
                raise _Close(4408, "Connection initialisation timeout")
            if message["type"] == "ping":
                await self.send({"type": "pong"})
            elif message["type"] != "pong":
                break
        if message["type"] != "connection_init":
            raise _Close(4401, "Unauthorized")
        payload = message.get("payload")
        if payload is not None and not isinstance(payload, dict):
            raise _Close(4400, "Invalid message: payload")
        await self._authenticate(payload or {})
        await self.send({"type": "connection_ack"})

    async def _authenticate(self, payload: dict[str, Any]) -> None:
        endpoint = self.streams.endpoint
        settings = endpoint.settings
        authorization = payload.get("Authorization", payload.get("authorization"))
        try:
            if authorization is not None:
                if not isinstance(authorization, str):
                    raise _Close(4400, "Invalid message: Authorization")
                self.authorization = authorization
                await self._load_viewer()
                return
            cookie = self.websocket.cookies.get(settings.auth.session_cookie)
            if not cookie:
                return
            origin = (self.websocket.headers.get("origin") or "").strip().lower()
            allowed = {o.lower() for o in settings.auth.allowed_origins}
            if origin not in allowed:
                raise _Close(4403, "Forbidden: origin")
            self.cookie = cookie
            self.by_cookie = True
            await self._load_viewer()
        except HttpError as error:
            raise _Close(4403, f"Forbidden: {error.code.value}") from None
        except _DATABASE_ERRORS as error:
            if not is_database_unavailable(error):
                raise
            # The database away (e.g. the key set's reload for an unknown kid failed):
            # not the client's fault — try again later, as SSE's 503 with Retry-After.
            raise _Close(1013, f"Try again later: {ErrorCode.SERVICE_UNAVAILABLE.value}") from None

    async def _load_viewer(self) -> None:
        """The viewer of the socket's credentials, read again (the session checked, the
        scope from the registries): at `connection_init` and at every `subscribe`, so a
        socket open for long never starts a stream with what it was allowed before.
        HttpError (401) when the credentials are no longer good."""
        endpoint = self.streams.endpoint
        settings, tokens = endpoint.settings, endpoint.tokens
        if self.authorization is not None:
            self.viewer = await authenticate(self.authorization, settings, self.pool, tokens)
            token = self.authorization.strip().partition(" ")[2].strip()
            claims = tokens.verify(token, BEARER)
        elif self.cookie is not None:
            self.viewer = await authenticate_cookie(self.cookie, settings, self.pool, tokens)
            claims = tokens.verify(self.cookie, SESSION)
        else:
            return
        self.expires_at, self.key_id = float(claims.expires_at), claims.key_id

    async def serve(self) -> None:
        heartbeat = self.streams.endpoint.settings.changes.heartbeat_s
        while self.closing is None:
            message = await self.receive(heartbeat)
            if message is None:
                await self.send({"type": "ping"})
                continue
            await self.handle(message)
        raise self.closing

    async def handle(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "ping":
            await self.send({"type": "pong"})
        elif kind == "pong":
            return
        elif kind == "connection_init":
            raise _Close(4429, "Too many initialisation requests")
        elif kind == "subscribe":
            await self.subscribe(_operation_id(message), message.get("payload"))
        elif kind == "complete":
            task = self.operations.pop(_operation_id(message), None)
            if task is not None:
                task.cancel()
        else:
            raise _Close(4400, f"Invalid message type {kind[:40]!r}")

    async def subscribe(self, operation_id: str, payload: object) -> None:
        if operation_id in self.operations:
            raise _Close(4409, f"Subscriber for {operation_id} already exists")
        if not isinstance(payload, dict):
            raise _Close(4400, "Invalid message: payload")
        if len(self.operations) >= MAX_OPERATIONS:
            error = _coded(ErrorCode.TOO_MANY_SUBSCRIPTIONS)
            await self.send({"type": "error", "id": operation_id, "payload": [error]})
            return
        endpoint = self.streams.endpoint
        try:
            await self._load_viewer()
        except HttpError as error:
            await self.send({"type": "error", "id": operation_id, "payload": [_coded(error.code)]})
            raise _Close(4401, f"Unauthorized: {error.code.value}") from None
        except _DATABASE_ERRORS as error:
            if not is_database_unavailable(error):
                raise
            unavailable = _coded(ErrorCode.SERVICE_UNAVAILABLE)  # this one refused, as over SSE
            await self.send({"type": "error", "id": operation_id, "payload": [unavailable]})
            return
        try:
            resolved = endpoint.persisted.resolve(parameters_of(payload))
            opened = await self.streams.open(
                resolved,
                self.viewer,
                self.pool,
                by_cookie=self.by_cookie,
                expires_at=self.expires_at,
                key_id=self.key_id,
            )
        except HttpError as error:
            opened = Refused([_coded(error.code, error.message)])
        if isinstance(opened, Refused):
            await self.send({"type": "error", "id": operation_id, "payload": opened.errors})
            return
        task = asyncio.create_task(self._run(operation_id, opened))
        self.operations[operation_id] = task

    async def _run(self, operation_id: str, results: OpenStream) -> None:
        try:
            while True:
                try:
                    result = await results.next()
                except StopAsyncIteration:
                    break
                if result is None:
                    continue
                await self.send({"type": "next", "id": operation_id, "payload": result})
                results.sent()
                code = _ending_code(result)
                if code in _CREDENTIALS_GONE:
                    self.closing = _Close(4401, f"Unauthorized: {code}")
                elif code == ErrorCode.SLOW_CONSUMER.value:
                    self.closing = _Close(1013, "Try again later: slow consumer")
            if self.operations.pop(operation_id, None) is not None:
                await self.send({"type": "complete", "id": operation_id})
        except _Close as close:
            self.closing = close
        finally:
            await results.aclose()
            if self.closing is not None:
                await _close(self.websocket, self.closing)

    async def stop(self) -> None:
        tasks = list(self.operations.values())
        self.operations.clear()
        for task in tasks:
            task.cancel()
        for outcome in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(outcome, Exception):
                log.error("subscription task failed", exc_info=outcome)


# Errors of reaching the database; only those `is_database_unavailable` recognises are
# answered as the database away, the others propagate.
_DATABASE_ERRORS: Final = (
    DatabaseUnavailable,
    OSError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
)


def _operation_id(message: dict[str, Any]) -> str:
    value = message.get("id")
    if not isinstance(value, str) or not value or len(value) > MAX_ID_CHARS:
        raise _Close(4400, "Invalid message: id")
    return value


def _coded(code: ErrorCode, message: str | None = None) -> Formatted:
    return {"message": message or MESSAGES[code], "extensions": {"code": code.value}}


def _ending_code(result: Formatted) -> str | None:
    """The code of an error that ended the stream (a result without data)."""
    if "data" in result:
        return None
    errors = result.get("errors") or [{}]
    code = (errors[0].get("extensions") or {}).get("code")
    return code if isinstance(code, str) else None


async def _close(websocket: WebSocket, close: _Close) -> None:
    if websocket.application_state is WebSocketState.CONNECTED:
        with contextlib.suppress(RuntimeError, OSError):
            await websocket.close(close.code, close.reason)


def websocket_handler(
    streams: Streams, pool: Callable[[], asyncpg.Pool]
) -> Callable[[WebSocket], Any]:
    """The `/graphql` WebSocket endpoint."""

    open_sockets = 0
    limit = streams.endpoint.settings.changes.max_subscriptions

    async def graphql_ws(websocket: WebSocket) -> None:
        nonlocal open_sockets
        if PROTOCOL not in websocket.scope.get("subprotocols", []):
            await websocket.accept()
            await websocket.close(4406, "Subprotocol not acceptable")
            return
        if open_sockets >= limit:  # sockets, even idle or anonymous ones, are bounded too
            await websocket.accept(subprotocol=PROTOCOL)
            await websocket.close(1013, "Try again later: too many connections")
            return
        await websocket.accept(subprotocol=PROTOCOL)
        open_sockets += 1
        connection = _Connection(streams, websocket, pool())
        try:
            await connection.initialise()
            await connection.serve()
        except _Close as close:
            await _close(websocket, close)
        except WebSocketDisconnect:
            pass
        finally:
            open_sockets -= 1
            await connection.stop()

    return graphql_ws

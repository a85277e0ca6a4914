"""GraphQL over Server-Sent Events: the graphql-sse protocol's "distinct connections" mode
(https://github.com/enisdenjo/graphql-sse/blob/master/PROTOCOL.md).

`POST /graphql` (or `GET` with query parameters) with `Accept: text/event-stream`: the
request is authenticated as on POST /graphql (a bearer token; or the session cookie with
the CSRF rules: POST, `Content-Type: application/json`, an allowed `Origin`), then

- refused before any stream: JSON `{"errors": [...]}` with 400 (validation, cost,
  permission), 503 with `Retry-After` when only SERVICE_UNAVAILABLE (subscriptions off,
  the database away, the feed not reaching the cursor in time), or the status of the
  HTTP error (401, 403, 406...);
- otherwise 200 `text/event-stream`: each result is `event: next` with the result as
  `data`, and when the stream ends `event: complete`. An idle stream gets a comment line
  (`:`) every `SCHOOL_GATEWAY_SUBSCRIPTION_HEARTBEAT_S` seconds so that proxies keep it.
  `Cache-Control: no-store, no-transform` keeps it out of caches and of compression.

The client going away ends the subscription at once (its ASGI `http.disconnect`).

Thousands of streams sit idle in one process, so the path is lean: gateway.app hands
these requests to `EventStreamEndpoint` through the request log, CORS and outage
handling only (no Starlette routing, error or compression layers), and an open stream
holds its coroutine, one task watching for the disconnect, and the subscription's own
state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Final

import asyncpg
import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from auth.requests import authenticate_request, credential_claims
from gateway.core.errors import ErrorCode, HttpError
from gateway.core.outage import RETRY_AFTER_S
from gateway.http.protocol import (
    JSON,
    Formatted,
    error_response,
    json_response,
    read_graphql_request,
)
from gateway.http.streams import OpenStream, Refused, Streams

log = logging.getLogger(__name__)

EVENT_STREAM: Final = "text/event-stream"
HEARTBEAT: Final = b":\n\n"
COMPLETE: Final = b"event: complete\ndata:\n\n"
SEND_TIMEOUT_S: Final = 30.0
_HEADERS: Final = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-store, no-transform"),
    (b"x-accel-buffering", b"no"),  # nginx: pass each event on at once
]


def wants_event_stream(accept: str | None) -> bool:
    """Whether an `Accept` header asks for an event stream (graphql-sse)."""
    return any(
        part.partition(";")[0].strip().lower() == EVENT_STREAM for part in (accept or "").split(",")
    )


def is_event_stream_request(scope: Scope, path: str) -> bool:
    """A `GET`/`POST` of `path` that accepts `text/event-stream`."""
    if scope["type"] != "http" or scope["path"] != path or scope["method"] not in ("GET", "POST"):
        return False
    accept = next((value for name, value in scope["headers"] if name == b"accept"), None)
    return accept is not None and wants_event_stream(accept.decode("latin-1"))


class EventStreamEndpoint:
    """The ASGI app of graphql-sse requests (see the module's doc; gateway.app routes
    them here, `is_event_stream_request`)."""

    def __init__(self, streams: Streams, pool: Callable[[], asyncpg.Pool]) -> None:
        self.streams = streams
        self.pool = pool

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        opened = await self._open(scope, receive)
        if isinstance(opened, Response):
            await opened(scope, receive, send)
            return
        heartbeat_s = self.streams.endpoint.settings.changes.heartbeat_s
        await stream_events(opened, receive, send, heartbeat_s=heartbeat_s)

    async def _open(self, scope: Scope, receive: Receive) -> OpenStream | Response:
        """The stream, or the response refusing it (the request is not kept)."""
        opened = await sse_response(self.streams, Request(scope, receive), self.pool())
        if isinstance(opened, Response):
            opened.headers["Cache-Control"] = "no-store"
        return opened


async def sse_response(
    streams: Streams, request: Request, pool: asyncpg.Pool
) -> OpenStream | Response:
    """The open stream of a graphql-sse request, or the response refusing it."""
    endpoint = streams.endpoint
    settings = endpoint.settings
    try:
        resolved = endpoint.persisted.resolve(await read_graphql_request(request))
        viewer = await authenticate_request(request, settings, pool, endpoint.tokens)
        claims = None if viewer is None else credential_claims(request, settings, endpoint.tokens)
        by_cookie = viewer is not None and request.headers.get("authorization") is None
        opened = await streams.open(
            resolved,
            viewer,
            pool,
            by_cookie=by_cookie,
            expires_at=None if claims is None else float(claims.expires_at),
            key_id=None if claims is None else claims.key_id,
        )
    except HttpError as error:
        return error_response(error, JSON)
    if isinstance(opened, Refused):
        if _codes(opened.errors) == {ErrorCode.SERVICE_UNAVAILABLE.value}:  # try again later
            headers = {"Retry-After": str(RETRY_AFTER_S)}
            return json_response({"errors": opened.errors}, 503, JSON, headers=headers)
        return json_response({"errors": opened.errors}, 400, JSON)
    return opened


def _codes(errors: list[Formatted]) -> set[object]:
    return {(error.get("extensions") or {}).get("code") for error in errors}


def next_event(result: Formatted) -> bytes:
    return b"event: next\ndata: " + orjson.dumps(result) + b"\n\n"


async def stream_events(
    stream: OpenStream, receive: Receive, send: Send, *, heartbeat_s: float
) -> None:
    """Send the stream's results as server-sent events until it ends or the client goes
    away (then the stream is closed and the pending read ends at once)."""
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    watcher = asyncio.ensure_future(_disconnected(receive))
    watcher.add_done_callback(lambda _watcher: stream.abort())
    try:
        while True:
            try:
                result = await stream.next(heartbeat_s)
            except StopAsyncIteration:
                break
            if result is None:
                await _body(send, HEARTBEAT)
            else:
                await _body(send, next_event(result))
                stream.sent()
        if not watcher.done():
            await _body(send, COMPLETE)
            await send({"type": "http.response.body", "body": b"", "more_body": False})
    except StalledClient:
        log.info("event stream ended: the client took nothing for %.0f s", SEND_TIMEOUT_S)
    finally:
        if not watcher.done():
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        await stream.aclose()


async def _body(send: Send, chunk: bytes) -> None:
    """Send a chunk; a client that takes none for SEND_TIMEOUT_S ends its stream (it holds
    a subscription and a connection: a sleeping phone, or a peer that stopped reading)."""
    try:
        async with asyncio.timeout(SEND_TIMEOUT_S):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    except TimeoutError:
        raise StalledClient from None


class StalledClient(Exception):
    """The client took nothing for SEND_TIMEOUT_S."""


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass

"""GraphQL over Server-Sent Events: the graphql-sse protocol's "distinct connections" mode
(https://github.com/enisdenjo/graphql-sse/blob/master/PROTOCOL.md).

`POST /graphql` (or `GET` with query parameters) with `Accept: text/event-stream`: the
request is authenticated as on POST /graphql (a bearer token; or the session cookie with
the CSRF rules: POST, `Content-Type: application/json`, an allowed `Origin`), then

- refused before any stream: JSON `{"errors": [...]}` with 400 (validation, cost,
  permission), or the status of the HTTP error (401, 403, 406...);
- otherwise 200 `text/event-stream`: each result is `event: next` with the result as
  `data`, and when the stream ends `event: complete`. An idle stream gets a comment line
  (`:`) every `SCHOOL_GATEWAY_SUBSCRIPTION_HEARTBEAT_S` seconds so that proxies keep it.
  `Cache-Control: no-store, no-transform` keeps it out of caches and of compression.

The client going away ends the subscription at once (its ASGI `http.disconnect`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from typing import Final

import asyncpg
import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from auth.requests import authenticate_request, credentials_expire_at
from gateway.core.errors import HttpError
from gateway.http.protocol import (
    JSON,
    Formatted,
    error_response,
    json_response,
    read_graphql_request,
)
from gateway.http.streams import Refused, Streams

EVENT_STREAM: Final = "text/event-stream"
HEARTBEAT: Final = b":\n\n"
COMPLETE: Final = b"event: complete\ndata:\n\n"
_HEADERS: Final = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-store, no-transform"),
    (b"x-accel-buffering", b"no"),  # nginx: pass each event on at once
]


def wants_event_stream(request: Request) -> bool:
    """Whether the client asks for an event stream (graphql-sse)."""
    accept = request.headers.get("accept", "")
    return any(part.partition(";")[0].strip().lower() == EVENT_STREAM for part in accept.split(","))


async def sse_response(streams: Streams, request: Request, pool: asyncpg.Pool) -> Response:
    """The answer to a graphql-sse request (see the module's doc)."""
    endpoint = streams.endpoint
    settings = endpoint.settings
    try:
        resolved = endpoint.persisted.resolve(await read_graphql_request(request))
        viewer = await authenticate_request(request, settings, pool, endpoint.tokens)
        expires_at = credentials_expire_at(request, settings, endpoint.tokens)
        by_cookie = viewer is not None and request.headers.get("authorization") is None
        opened = await streams.open(
            resolved, viewer, pool, by_cookie=by_cookie, expires_at=expires_at
        )
    except HttpError as error:
        return error_response(error, JSON)
    if isinstance(opened, Refused):
        return refusal_response(opened.errors)
    return EventStreamResponse(opened, heartbeat_s=settings.changes.heartbeat_s)


def refusal_response(errors: list[Formatted], status: int = 400) -> Response:
    return json_response({"errors": errors}, status, JSON)


def next_event(result: Formatted) -> bytes:
    return b"event: next\ndata: " + orjson.dumps(result) + b"\n\n"


class EventStreamResponse(Response):
    """Sends a subscription's results as server-sent events until it ends or the client
    goes away."""

    def __init__(self, results: AsyncGenerator[Formatted, None], *, heartbeat_s: float) -> None:
        super().__init__(status_code=200)
        self.results = results
        self.heartbeat_s = heartbeat_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        results = self.results
        headers = [*_HEADERS, *((k, v) for k, v in self.raw_headers if k == b"set-cookie")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        gone = asyncio.ensure_future(_disconnected(receive))
        following: asyncio.Future[Formatted] | None = None
        try:
            while True:
                following = following or asyncio.ensure_future(anext(results))
                done, _ = await asyncio.wait(
                    (following, gone), timeout=self.heartbeat_s, return_when=asyncio.FIRST_COMPLETED
                )
                if gone in done:
                    return
                if following not in done:
                    await _body(send, HEARTBEAT)
                    continue
                try:
                    result = following.result()
                except StopAsyncIteration:
                    break
                following = None
                await _body(send, next_event(result))
            await _body(send, COMPLETE)
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            for task in (following, gone):
                if task is not None and not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                        await task
            await results.aclose()


async def _body(send: Send, chunk: bytes) -> None:
    await send({"type": "http.response.body", "body": chunk, "more_body": True})


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass

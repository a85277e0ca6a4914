"""The Starlette application: /graphql, /healthz, the sign-in routes, the web pages and
/static (gateway.http.pages), the request middleware and the lifespan.

`create_app(settings)` owns its database pool through the lifespan (DATABASE_URL or the
embedded server); tests pass a pool of their own. The outermost middleware of ours logs
one line per request and answers whatever escaped the routes:

- the database unreachable (`gateway.core.outage`): 503 SERVICE_UNAVAILABLE with
  `Retry-After`, one warning per outage (`OutageMonitor`), no traceback;
- the client gone while its body was read (`ClientDisconnect`): one INFO line, nothing
  sent, status 499 in the request line (as nginx logs it);
- the body not received within `SCHOOL_GATEWAY_BODY_TIMEOUT` seconds of the request's
  start (`BodyTimeout`, from the deadline put on the ASGI receive): 408 REQUEST_TIMEOUT
  and the connection closed;
- anything else: logged with its traceback, masked as a JSON 500.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from auth.signin.deps import AuthServices
from auth.signin.routes import auth_routes
from auth.signing_keys import KeyReloader
from auth.store.audit import Recorder
from gateway.core import tracing
from gateway.core.db import create_pool
from gateway.core.errors import ErrorCode, HttpError
from gateway.core.logging import (
    REQUEST_ID,
    configure_logging,
    log_request,
    request_id_from,
    safe_path,
)
from gateway.core.metrics import RequestMetrics, note_error_code
from gateway.core.outage import (
    RETRY_AFTER_S,
    OutageMonitor,
    describe,
    is_database_unavailable,
    quiet_driver_reconnects,
    unavailable_error,
)
from gateway.core.read_replica import ReadReplica
from gateway.core.settings import Settings
from gateway.execution.schema import build_schema
from gateway.http.compression import CompressionMiddleware
from gateway.http.cors import CorsMiddleware
from gateway.http.endpoint import GraphQLEndpoint, operation_name_of
from gateway.http.health import LIVENESS_PATH, READINESS_PATH, livez, readiness
from gateway.http.metrics import AppMetrics
from gateway.http.pages import WebPages
from gateway.http.protocol import JSON, accepts_html, error_response, json_response, negotiate
from gateway.http.sse import EventStreamEndpoint, is_event_stream_request
from gateway.http.streams import Streams
from gateway.http.websocket import websocket_handler
from gateway.migrations.location import locate_database
from resolvers.analytics.service import AnalyticsService
from resolvers.changes.service import ChangeFeed
from resolvers.context import AppServices

log = logging.getLogger(__name__)

GRAPHQL_PATH = "/graphql"
HEALTH_PATH = "/healthz"
_HEALTH_TIMEOUT_S = 2.0
_ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
# The status a request line shows when the client went away before it was answered
# (nothing is sent; the number is nginx's "client closed request").
CLIENT_CLOSED_REQUEST = 499


@dataclass(slots=True)
class _PoolHolder:
    """The pools, given by the caller or opened by the lifespan: the primary's (`get`:
    sessions, sign-in, throttling, the audit, the change feed) and, with
    DATABASE_REPLICA_URL, a streaming replica's (`replica`: the reads of GraphQL
    queries while it is available, gateway.core.read_replica; None: they read the
    primary)."""

    pool: asyncpg.Pool | None
    replica: ReadReplica | None = None

    def get(self) -> asyncpg.Pool:
        if self.pool is None:
            raise RuntimeError("the database pool is not open (lifespan did not run)")
        return self.pool

    async def probe(self) -> None:
        """`SELECT 1` on the primary (the replica has a probe of its own)."""
        await self.get().fetchval("SELECT 1")


def _read_replica(settings: Settings, given: asyncpg.Pool | None) -> ReadReplica | None:
    """The replica of DATABASE_REPLICA_URL (opened by the lifespan), or the caller's pool."""
    url = settings.database_replica_url
    if given is not None:
        return ReadReplica(None, pool=given)
    if url is None:
        return None
    return ReadReplica(lambda: create_pool(url, settings))


def _primary_url(settings: Settings) -> Callable[[], Awaitable[str]]:
    """The analytics' way to the gateway's login DSN of the diary database (DATABASE_URL,
    or the embedded server's, already running): located once, then remembered (locating
    connects as the owner and resets the login role's password; the DSN never changes
    while the process runs)."""
    located: list[str] = []

    async def primary_url() -> str:
        if settings.database_url is not None:
            return settings.database_url
        if not located:
            located.append((await asyncio.to_thread(locate_database, settings)).url)
        return located[0]

    return primary_url


def create_app(
    settings: Settings,
    *,
    pool: asyncpg.Pool | None = None,
    replica_pool: asyncpg.Pool | None = None,
) -> Starlette:
    """The gateway application. With `pool=None` the lifespan opens (and closes) one, and
    one to DATABASE_REPLICA_URL when set; a caller's `pool` comes with its `replica_pool`
    (None: every read on `pool`)."""
    schema = build_schema(settings, extensions=())
    holder = _PoolHolder(pool, _read_replica(settings, replica_pool))
    recorder = Recorder(holder.get, linger_s=settings.audit_linger_ms / 1000)
    services = AuthServices(settings=settings, pool=holder.get, recorder=recorder)
    app_services = AppServices(analytics=AnalyticsService(settings, _primary_url(settings)))
    app_services.changes = ChangeFeed(settings, holder.get, app_services.reference, recorder)
    endpoint = GraphQLEndpoint(schema, settings, recorder, app_services)
    streams = Streams(endpoint)
    outage = OutageMonitor(holder.probe)
    quiet_driver_reconnects()
    pages = WebPages(settings, holder.get)
    signing_keys = KeyReloader(settings, holder.get)
    metrics = AppMetrics(
        settings.metrics,
        recorder=recorder,
        response_cache=endpoint.response_cache,
        pools={
            "primary": lambda: holder.pool,
            "replica": lambda: holder.replica.pool if holder.replica else None,
            "analytics": lambda: (
                app_services.analytics.opened_pool if app_services.analytics else None
            ),
        },
    )

    async def graphql(request: Request) -> Response:
        """Every answer is the viewer's (or says why not): never stored by a cache."""
        if request.method not in ("GET", "POST"):
            error = HttpError(405, ErrorCode.METHOD_NOT_ALLOWED, headers={"Allow": "GET, POST"})
            note_error_code(request.scope, error.code.value)
            response = error_response(error, JSON)
        elif (
            settings.graphiql
            and request.method == "GET"
            and accepts_html(request.headers.get("accept"))
        ):
            response = pages.graphiql_response()
        else:
            response = await endpoint.handle(request, holder.get(), holder.replica)
        response.headers["Cache-Control"] = "no-store"
        return response

    async def healthz(request: Request) -> Response:
        try:
            async with asyncio.timeout(_HEALTH_TIMEOUT_S):
                await holder.get().fetchval("SELECT 1")
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            if is_database_unavailable(error):
                outage.failed(error, HEALTH_PATH)
            else:
                log.warning("health check: database error %s", describe(error))
            retry = {"Retry-After": str(RETRY_AFTER_S)}
            return json_response({"status": "unavailable"}, 503, JSON, headers=retry)
        return json_response({"status": "ok"}, 200, JSON)

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        if holder.pool is not None:
            await signing_keys.start()
            try:
                yield
            finally:
                await signing_keys.close()
                await outage.close()
                if holder.replica is not None:
                    await holder.replica.close()  # its probe (the pool is the caller's)
                await app_services.close()  # the change feed first: it records deliveries
                await recorder.close()
            return
        location = await asyncio.to_thread(locate_database, settings)
        holder.pool = await create_pool(location.url, settings)
        try:
            await signing_keys.start()
            if holder.replica is not None:
                await holder.replica.open()  # one that cannot be reached: a warning
            yield
        finally:
            await signing_keys.close()
            await outage.close()
            await app_services.close()
            await recorder.close()
            if holder.replica is not None:
                await holder.replica.close()
            await holder.pool.close()
            holder.pool = None
            if location.server is not None and location.server.started_here:
                await asyncio.to_thread(location.server.stop)

    app = GatewayApp(
        event_streams=_event_streams(settings, EventStreamEndpoint(streams, holder.get), outage),
        routes=[
            Route(GRAPHQL_PATH, graphql, methods=_ALL_METHODS),
            WebSocketRoute(GRAPHQL_PATH, websocket_handler(streams, holder.get)),
            Route(HEALTH_PATH, healthz, methods=["GET"]),
            Route(LIVENESS_PATH, livez, methods=["GET"]),
            Route(READINESS_PATH, readiness(holder.get, outage, holder.replica), methods=["GET"]),
            *auth_routes(services),
            *_dev_idp_routes(settings),
            *pages.routes(),
            *metrics.routes(),
        ],
        middleware=[
            *_cors(settings),
            Middleware(
                RequestMiddleware,
                outage=outage,
                body_timeout_s=settings.body_timeout_s,
                metrics=metrics.requests,
            ),
            *_compression(settings),
        ],
        lifespan=metrics.around(lifespan),
    )
    app.state.graphql_endpoint = endpoint
    app.state.outage = outage
    app.state.replica = holder.replica
    app.state.auth = services
    app.state.services = app_services
    return app


class GatewayApp(Starlette):
    """The application; graphql-sse requests (`GRAPHQL_PATH` accepting
    text/event-stream) go straight to `event_streams`, past Starlette's own layers: each
    open stream keeps its coroutines for as long as it lasts (gateway.http.sse)."""

    def __init__(self, *, event_streams: ASGIApp, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.event_streams = event_streams

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if is_event_stream_request(scope, GRAPHQL_PATH):
            await self.event_streams(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def _event_streams(settings: Settings, endpoint: ASGIApp, outage: OutageMonitor) -> ASGIApp:
    """The event-stream endpoint behind the same request log, body deadline, outage
    handling and CORS as the rest of /graphql."""
    app: ASGIApp = RequestMiddleware(
        endpoint, outage=outage, body_timeout_s=settings.body_timeout_s, traced=False
    )
    if settings.cors_origins:
        app = CorsMiddleware(app, origins=settings.cors_origins, paths=[GRAPHQL_PATH])
    return app


def app_from_env() -> Starlette:
    """Factory for `uvicorn --factory` workers: settings and logging from the environment."""
    settings = Settings.from_env()
    configure_logging(settings.log_level, settings.log_format)
    tracing.install(tracing.tracing_from_env(os.environ))
    app = create_app(settings)
    tune_garbage_collection()
    return app


# Allocations of container objects between automatic collections of the youngest
# generation (CPython's default is 700).
GC_GEN0_THRESHOLD = 10_000


def _dev_idp_routes(settings: Settings) -> list[BaseRoute]:
    """The stand-in ESIA (fixtures.dev_idp) at /dev-idp, only when `settings.auth.dev_idp`
    (refused outside dev mode): the one import of fixtures on the serving path."""
    if not settings.auth.dev_idp:
        return []
    from fixtures.dev_idp import DevIdentityProvider

    return DevIdentityProvider(settings).routes()


def _cors(settings: Settings) -> list[Middleware]:
    """CORS for the allowed origins' bearer-token clients, outside the request logger so
    that its 408/500/503 answers are readable too (none without origins)."""
    if not settings.cors_origins:
        return []
    return [Middleware(CorsMiddleware, origins=settings.cors_origins, paths=[GRAPHQL_PATH])]


def _compression(settings: Settings) -> list[Middleware]:
    """gzip of the responses above the threshold (none with a threshold of 0)."""
    if settings.compression_min_bytes == 0:
        return []
    return [Middleware(CompressionMiddleware, min_bytes=settings.compression_min_bytes)]


def tune_garbage_collection() -> None:
    """Make the cyclic garbage collector cheap for a serving process.

    A request allocates thousands of short-lived containers (rows, typed objects,
    response dicts); with CPython's defaults the collector ran several times per request
    and, every few dozen requests, traversed every object of the process (schema,
    modules, caches): about a quarter of the CPU time of a diary request. Objects that
    exist once the application is built are moved out of the collector's reach
    (`gc.freeze`), and the youngest generation is collected less often, so that most
    request objects are freed by reference counting before a collection sees them.
    """
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, older, oldest)


class BodyTimeout(Exception):
    """The request body did not arrive before its deadline."""


def body_deadline(receive: Receive, timeout_s: float) -> Receive:
    """`receive`, raising BodyTimeout once `timeout_s` have passed since this call while
    the body is still incomplete (later waits, e.g. for a disconnect, are not limited)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    body_done = False

    async def receive_in_time() -> Message:
        nonlocal body_done
        if body_done:
            return await receive()
        try:
            async with asyncio.timeout_at(deadline) as limit:
                message = await receive()
        except TimeoutError:
            if limit.expired():
                raise BodyTimeout from None
            raise
        if message["type"] != "http.request" or not message.get("more_body", False):
            body_done = True
        return message

    return receive_in_time


class _Exchange:
    """One HTTP request's answer as the middleware sees it: the status sent (500 until a
    response starts), whether one started, and the request id (the client's
    `X-Request-Id` when it is a plain token, else a new one), added to the response."""

    def __init__(self, scope: Scope, send: Send) -> None:
        self.scope = scope
        self._send = send
        self.status = 500
        self.response_started = False
        sent_id = next((v for k, v in scope["headers"] if k == b"x-request-id"), None)
        self.request_id = request_id_from(sent_id.decode("latin-1") if sent_id else None)
        scope.setdefault("state", {})["request_id"] = self.request_id

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = int(message["status"])
            self.response_started = True
            id_header = (b"x-request-id", self.request_id.encode("latin-1"))
            message = {**message, "headers": [*message.get("headers", ()), id_header]}
        await self._send(message)


class RequestMiddleware:
    """Outermost of ours: one log line per request; nothing escapes unlogged or unmasked."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        outage: OutageMonitor | None = None,
        body_timeout_s: float = 30.0,
        metrics: RequestMetrics | None = None,
        traced: bool = True,
    ) -> None:
        self.app = app
        self.outage = outage
        self.body_timeout_s = body_timeout_s
        self.metrics = metrics
        # Event streams are not traced: one span would last as long as the stream.
        self.traced = traced

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        exchange = _Exchange(scope, send)
        context = REQUEST_ID.set(exchange.request_id)
        try:
            path = safe_path(scope["path"])
            headers = scope["headers"] if self.traced else None
            with tracing.request_span(scope["method"], path, headers) as span:
                try:
                    await self._answer(exchange, receive)
                finally:
                    tracing.finish_request(span, exchange.status, operation_name_of(scope))
        finally:
            REQUEST_ID.reset(context)

    async def _answer(self, exchange: _Exchange, receive: Receive) -> None:
        """Run the app; answer what escaped it (see the module); log the request line."""
        started = time.perf_counter()
        measured = self.metrics.start() if self.metrics is not None else None
        scope, send = exchange.scope, exchange.send
        method, path = scope["method"], safe_path(scope["path"])
        try:
            await self.app(scope, body_deadline(receive, self.body_timeout_s), send)
        except ClientDisconnect:
            log.info("client disconnected before %s %s was answered", method, path)
            exchange.status = CLIENT_CLOSED_REQUEST
        except BodyTimeout:
            log.info(
                "request body of %s %s not received in %.0f s", method, path, self.body_timeout_s
            )
            if not exchange.response_started:
                exchange.status = await _send_error(send, scope, _body_timeout_error())
        except Exception as error:  # the outermost boundary: logged with traceback, then masked
            if is_database_unavailable(error):
                self._database_unavailable(error, f"{method} {path}")
                if not exchange.response_started:
                    exchange.status = await _send_error(send, scope, unavailable_error())
            else:
                log.error("unhandled error in %s %s", method, path, exc_info=error)
                if not exchange.response_started:
                    internal = HttpError(500, ErrorCode.INTERNAL_SERVER_ERROR)
                    exchange.status = await _send_error(send, scope, internal)
        finally:
            log_request(
                method,
                scope["path"][:200],
                exchange.status,
                (time.perf_counter() - started) * 1000,
                operation_name_of(scope),
                exchange.request_id,
            )
            if self.metrics is not None and measured is not None:
                seconds = time.perf_counter() - started
                self.metrics.finish(
                    measured, scope, operation_name_of(scope), exchange.status, seconds
                )

    def _database_unavailable(self, error: BaseException, where: str) -> None:
        if self.outage is not None:
            self.outage.failed(error, where)
        else:
            log.warning("database unavailable (%s in %s)", describe(error), where)


def _body_timeout_error() -> HttpError:
    return HttpError(408, ErrorCode.REQUEST_TIMEOUT, headers={"Connection": "close"})


async def _send_error(send: Send, scope: Scope, error: HttpError) -> int:
    """Send `error` as a coded JSON response (the media type the client accepts)."""
    note_error_code(scope, error.code.value)
    accept = next((value for name, value in scope["headers"] if name == b"accept"), None)
    media_type = negotiate(accept.decode("latin-1") if accept is not None else None) or JSON
    response = error_response(error, media_type)
    await response(scope, _no_receive, send)
    return error.status


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}

"""The Starlette application: /graphql, /healthz, the request middleware and the lifespan.

`create_app(settings)` owns its database pool through the lifespan (DATABASE_URL or the
embedded server); tests pass a pool of their own. The outermost middleware of ours logs
one line per request and turns any exception that escaped into a masked JSON 500.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg
import orjson
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from strawberry.http.ides import get_graphql_ide_html

from auth.records import Recorder
from auth.routes import auth_routes
from auth.services import AuthServices
from gateway.analytics_service import AnalyticsService
from gateway.db import create_pool, locate_database
from gateway.errors import MESSAGES, ErrorCode, HttpError
from gateway.http import (
    JSON,
    GraphQLEndpoint,
    accepts_html,
    error_response,
    json_response,
    operation_name_of,
)
from gateway.logging import configure_logging, log_request, safe_path
from gateway.schema import build_schema
from gateway.services import AppServices
from gateway.settings import Settings

log = logging.getLogger(__name__)

GRAPHQL_PATH = "/graphql"
HEALTH_PATH = "/healthz"
_HEALTH_TIMEOUT_S = 2.0
_ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


@dataclass(slots=True)
class _PoolHolder:
    """The pool, given by the caller or opened by the lifespan."""

    pool: asyncpg.Pool | None

    def get(self) -> asyncpg.Pool:
        if self.pool is None:
            raise RuntimeError("the database pool is not open (lifespan did not run)")
        return self.pool


def create_app(settings: Settings, *, pool: asyncpg.Pool | None = None) -> Starlette:
    """The gateway application. With `pool=None` the lifespan opens (and closes) one."""
    schema = build_schema(settings, extensions=())
    holder = _PoolHolder(pool)
    recorder = Recorder(holder.get)
    services = AuthServices(settings=settings, pool=holder.get, recorder=recorder)
    app_services = AppServices(analytics=AnalyticsService(settings))
    endpoint = GraphQLEndpoint(schema, settings, recorder, app_services)
    graphiql_html = get_graphql_ide_html("graphiql") if settings.graphiql else None

    async def graphql(request: Request) -> Response:
        if request.method not in ("GET", "POST"):
            error = HttpError(405, ErrorCode.METHOD_NOT_ALLOWED, headers={"Allow": "GET, POST"})
            return error_response(error, JSON)
        if (
            graphiql_html is not None
            and request.method == "GET"
            and accepts_html(request.headers.get("accept"))
        ):
            return HTMLResponse(graphiql_html)
        return await endpoint.handle(request, holder.get())

    async def healthz(request: Request) -> Response:
        try:
            async with asyncio.timeout(_HEALTH_TIMEOUT_S):
                await holder.get().fetchval("SELECT 1")
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
            log.warning("health check: database unavailable")
            return json_response({"status": "unavailable"}, 503, JSON)
        return json_response({"status": "ok"}, 200, JSON)

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        if holder.pool is not None:
            try:
                yield
            finally:
                await recorder.close()
                await app_services.close()
            return
        location = await asyncio.to_thread(locate_database, settings)
        holder.pool = await create_pool(location.url, settings)
        try:
            yield
        finally:
            await recorder.close()
            await app_services.close()
            await holder.pool.close()
            holder.pool = None
            if location.server is not None and location.server.started_here:
                await asyncio.to_thread(location.server.stop)

    app = Starlette(
        routes=[
            Route(GRAPHQL_PATH, graphql, methods=_ALL_METHODS),
            Route(HEALTH_PATH, healthz, methods=["GET"]),
            *auth_routes(services),
        ],
        middleware=[Middleware(RequestMiddleware)],
        lifespan=lifespan,
    )
    app.state.graphql_endpoint = endpoint
    app.state.auth = services
    app.state.services = app_services
    return app


def app_from_env() -> Starlette:
    """Factory for `uvicorn --factory` workers: settings and logging from the environment."""
    settings = Settings.from_env()
    configure_logging(settings.log_level)
    app = create_app(settings)
    tune_garbage_collection()
    return app


# Allocations of container objects between automatic collections of the youngest
# generation (CPython's default is 700).
GC_GEN0_THRESHOLD = 10_000


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


class RequestMiddleware:
    """Outermost of ours: one log line per request; nothing escapes unlogged or unmasked."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_and_watch(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = int(message["status"])
                response_started = True
            await send(message)

        try:
            await self.app(scope, receive, send_and_watch)
        except Exception:  # the outermost boundary: logged with traceback, then masked
            log.exception("unhandled error in %s %s", scope["method"], safe_path(scope["path"]))
            if not response_started:
                await _send_internal_error(send)
                status = 500
        finally:
            log_request(
                scope["method"],
                scope["path"][:200],
                status,
                (time.perf_counter() - started) * 1000,
                operation_name_of(scope),
            )


async def _send_internal_error(send: Send) -> None:
    body = orjson.dumps(
        {
            "errors": [
                {
                    "message": MESSAGES[ErrorCode.INTERNAL_SERVER_ERROR],
                    "extensions": {"code": ErrorCode.INTERNAL_SERVER_ERROR.value},
                }
            ]
        }
    )
    await send(
        {
            "type": "http.response.start",
            "status": 500,
            "headers": [
                (b"content-type", b"application/json; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})

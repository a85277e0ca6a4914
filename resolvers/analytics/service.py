"""The analytics service: the only way to the analytics SQL (resolvers.analytics.sql).

Its own pool, statement timeout, rate limit, CPU share and refresh of the units.

Isolation from the families' diaries: analytics statements never use the diary pool.
They run on a pool of their own (`DATABASE_ANALYTICS_URL`, a replica, or else the diary
reads' replica `DATABASE_REPLICA_URL`, or else the diary database), opened at first use,
whose size (`SCHOOL_GATEWAY_ANALYTICS_POOL_MAX`, default 2) caps how many analytics
statements run at once, with their own statement timeout.
Assembling answers (Python work) takes turns, capped at `cpu_share_percent` of the
event loop (`turn`). Each client (viewer account or machine client) may call
`regionalAnalytics` at most `rate_limit` times per `rate_window_seconds` (RATE_LIMITED
beyond).

The units (resolvers.analytics.sql) are built at first use (or when built for another
k), refreshed in the background every `refresh_seconds` once the process has served
analytics (only when the last refresh, by any process, is older than that), and by
`school-gateway analytics-refresh` (`refresh_cells`). A refresh writes the primary
database (a replica is read-only; its DSN comes from the application's assembler) on a
connection of its own, with its own statement timeout.

Both connect as the gateway's least-privilege login role (gateway.core.db_roles): a
superuser DSN is refused, like the diary pool's; on a replica the same role exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import asyncpg

from gateway.core.db import connect_as_gateway, gateway_session_settings
from gateway.core.errors import ApiError, ErrorCode
from gateway.core.metrics import analytics_refreshed
from gateway.core.pooler import reset_options, startup_settings, statement_cache_options
from gateway.core.settings import Settings
from resolvers.analytics import sql as data
from resolvers.analytics.cells import CellFilter, Freshness, Labels

log = logging.getLogger(__name__)

APPLICATION_NAME = "school-gateway-analytics"
_MAX_CLIENTS = 10_000  # rate-limit windows kept (least recently seen dropped beyond)


class RateLimitedError(ApiError):
    code = ErrorCode.RATE_LIMITED


class AnalyticsTimeoutError(ApiError):
    code = ErrorCode.TIMEOUT


class AnalyticsUnavailableError(ApiError):
    """The stored units were built for another k (another process or `analytics-refresh`
    with a different SCHOOL_GATEWAY_MIN_GROUP_SIZE, or a replica behind): never served."""

    code = ErrorCode.SERVICE_UNAVAILABLE


class MarkRows(NamedTuple):
    """Mark figures and value counts per group (the total included), and the labels."""

    figures: list[asyncpg.Record]
    values: list[asyncpg.Record]
    labels: Labels


class AttendanceRows(NamedTuple):
    """Lessons per group without the code, records per group and code, and the labels."""

    lessons: list[asyncpg.Record]
    codes: list[asyncpg.Record]
    labels: Labels


class RateLimiter:
    """At most `limit` calls per client in any `window` seconds (sliding window)."""

    def __init__(self, limit: int, window: float, clock: Callable[[], float] = time.monotonic):
        self.limit = limit
        self.window = window
        self._clock = clock
        self._calls: dict[str, deque[float]] = {}

    def check(self, client: str) -> None:
        """Count a call of `client`, or raise RATE_LIMITED (the refused call is not counted)."""
        now = self._clock()
        calls = self._calls.pop(client, None) or deque()
        while calls and calls[0] <= now - self.window:
            calls.popleft()
        self._calls[client] = calls  # most recently seen last
        if len(calls) >= self.limit:
            retry = max(1, round(calls[0] + self.window - now))
            raise RateLimitedError(retryAfterSeconds=retry)
        calls.append(now)
        while len(self._calls) > _MAX_CLIENTS:
            del self._calls[next(iter(self._calls))]


class AnalyticsService:
    """One per application; resolvers reach it as `info.context.app.analytics` and ask it
    for figures (never for a connection)."""

    def __init__(self, settings: Settings, primary_url: Callable[[], Awaitable[str]]) -> None:
        """Analytics never use the diary pool (not even to refresh): they open their own.

        `primary_url` gives the gateway's login DSN of the diary database (the primary):
        the refreshes' connection, and the pool's when neither DATABASE_ANALYTICS_URL nor
        DATABASE_REPLICA_URL is set."""
        self.settings = settings
        self._primary_url = primary_url
        self.options = settings.analytics
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()
        self._refreshing = asyncio.Lock()
        self._turn_lock = asyncio.Lock()
        self._next_turn = 0.0
        self._background: asyncio.Task[None] | None = None
        self._labels: tuple[datetime, Labels] | None = None
        self.rate_limiter = RateLimiter(self.options.rate_limit, self.options.rate_window_seconds)

    @property
    def min_group_size(self) -> int:
        return self.options.min_group_size

    # --- connections ------------------------------------------------------------------

    async def pool(self) -> asyncpg.Pool:
        """The analytics pool, opened on first use."""
        if self._pool is not None:
            return self._pool
        async with self._opening:
            if self._pool is None:
                self._pool = await self._open_pool()
        return self._pool

    @property
    def opened_pool(self) -> asyncpg.Pool | None:
        """The analytics pool if it is open (for the metrics), else None."""
        return self._pool

    async def _open_pool(self) -> asyncpg.Pool:
        url = (
            self.options.database_url
            or self.settings.database_replica_url
            or await self._primary_url()
        )
        pool = await asyncpg.create_pool(
            url,
            min_size=1,
            max_size=self.options.pool_max_size,
            **statement_cache_options(self.settings.pooler),
            **reset_options(self.settings.pooler),
            server_settings=startup_settings(
                self.settings.pooler,
                {
                    "jit": "off",
                    **await gateway_session_settings(url, self.settings),
                    "statement_timeout": str(self.options.statement_timeout_ms),
                    "application_name": APPLICATION_NAME,
                },
            ),
        )
        assert pool is not None
        return pool

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        """An analytics connection; TIMEOUT if none frees up within the statement timeout."""
        pool = await self.pool()
        try:
            conn = await pool.acquire(timeout=self.options.statement_timeout_ms / 1000)
        except TimeoutError:
            raise AnalyticsTimeoutError() from None
        try:
            yield conn
        finally:
            await pool.release(conn)

    @asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """Run the enclosed CPU work (assembling a response) as the process's only analytics
        work, and keep the analytics' share of the event loop at `cpu_share_percent`: after
        a turn of t seconds the next one starts t * (100 - share) / share seconds later,
        so the diaries served by the same process keep most of it whatever the load.
        Waiting longer than the statement timeout for a turn is a TIMEOUT."""
        try:
            await asyncio.wait_for(
                self._turn_lock.acquire(), self.options.statement_timeout_ms / 1000
            )
        except TimeoutError:
            raise AnalyticsTimeoutError() from None
        try:
            delay = self._next_turn - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            started = time.monotonic()
            try:
                yield
            finally:
                ended = time.monotonic()
                share = self.options.cpu_share_percent
                self._next_turn = ended + (ended - started) * (100 - share) / share
        finally:
            self._turn_lock.release()

    # --- figures ----------------------------------------------------------------------

    async def marks(
        self,
        columns: list[str],
        cell_filter: CellFilter,
        refreshed_at: datetime,
        *,
        with_values: bool,
    ) -> MarkRows:
        """Mark figures of the groups of `columns` (value counts when `with_values`), on one
        connection and one snapshot whose units are this service's k: one or two
        statements, and the labels when not loaded yet."""
        async with self.connection() as conn, self._snapshot(conn):
            figures, values = await data.mark_aggregates(
                conn, columns, cell_filter, with_values=with_values
            )
            labels = await self._labels_of(conn, refreshed_at)
        return MarkRows(figures, values, labels)

    async def attendance(
        self, columns: list[str], cell_filter: CellFilter, refreshed_at: datetime
    ) -> AttendanceRows:
        """Attendance figures of the groups of `columns`, on one connection and one
        snapshot whose units are this service's k: two statements, and the labels when not
        loaded yet."""
        async with self.connection() as conn, self._snapshot(conn):
            lessons, codes = await data.attendance_aggregates(conn, columns, cell_filter)
            labels = await self._labels_of(conn, refreshed_at)
        return AttendanceRows(lessons, codes, labels)

    @asynccontextmanager
    async def _snapshot(self, conn: asyncpg.Connection) -> AsyncIterator[None]:
        """A read-only repeatable-read transaction in which the stored units are checked to
        be built for this service's k before any figure is read from them."""
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            if self.settings.pooler.pooled:  # no startup parameter: the timeout set here
                await data.limit_transaction(conn, self.options.statement_timeout_ms)
            current = await data.freshness(conn)
            if current is None or current.min_group_size != self.min_group_size:
                stored = None if current is None else current.min_group_size
                log.warning(
                    "analytics units built for k=%s, this process serves k=%d: not served",
                    stored,
                    self.min_group_size,
                )
                raise AnalyticsUnavailableError()
            yield

    async def _labels_of(self, conn: asyncpg.Connection, refreshed_at: datetime) -> Labels:
        """Dimension labels, reloaded after each refresh."""
        if self._labels is None or self._labels[0] != refreshed_at:
            self._labels = (refreshed_at, await data.labels(conn))
        return self._labels[1]

    # --- freshness and refresh --------------------------------------------------------

    async def ready(self, client: str) -> Freshness:
        """Count the client's call (rate limit), build the units if they never were (or
        were built for another k), keep the background refresh running; the current
        freshness."""
        self.rate_limiter.check(client)
        async with self.connection() as conn:
            current = await data.freshness(conn)
        if current is None or current.min_group_size != self.min_group_size:
            current = await self._build_if_missing()
        analytics_refreshed(current.refreshed_at)
        self._start_background()
        return current

    async def _build_if_missing(self) -> Freshness:
        """Build the units for this k unless another request or process built them
        meanwhile."""
        async with self._refreshing, self._refresh_connection() as conn:
            current = await data.refresh(
                conn,
                today=self.settings.today(),
                min_group_size=self.min_group_size,
                timeout_ms=self.options.refresh_timeout_ms,
                stale_before=datetime.min.replace(tzinfo=UTC),
            )
        assert current is not None
        return current

    async def refresh(self) -> Freshness:
        """Rebuild the cells now (waits for a refresh running elsewhere, then runs)."""
        async with self._refreshing, self._refresh_connection() as conn:
            result = await data.refresh(
                conn,
                today=self.settings.today(),
                min_group_size=self.min_group_size,
                timeout_ms=self.options.refresh_timeout_ms,
            )
        assert result is not None
        analytics_refreshed(result.refreshed_at, result.duration_ms)
        log.info("analytics cells refreshed in %d ms", result.duration_ms)
        return result

    @asynccontextmanager
    async def _refresh_connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A connection of its own to the primary (a replica is read-only): a refresh
        takes neither a diary connection nor one of the analytics pool's."""
        conn = await connect_as_gateway(
            await self._primary_url(),
            self.settings,
            application_name=APPLICATION_NAME + "-refresh",
        )
        try:
            yield conn
        finally:
            await conn.close()

    def _start_background(self) -> None:
        if self.options.refresh_seconds == 0:
            return
        if self._background is None or self._background.done():
            self._background = asyncio.create_task(  # not in the request's context
                self._refresh_periodically(), context=contextvars.Context()
            )

    async def _refresh_periodically(self) -> None:
        period = self.options.refresh_seconds
        while True:
            await asyncio.sleep(period)
            try:
                await self._refresh_if_stale(timedelta(seconds=period))
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, ApiError) as error:
                log.warning("background analytics refresh failed: %s", type(error).__name__)

    async def _refresh_if_stale(self, age: timedelta) -> None:
        """Refresh unless another process did within `age` or is refreshing right now."""
        async with self._refreshing, self._refresh_connection() as conn:
            stale_before = datetime.now(UTC) - age
            current = await data.freshness(conn)
            if (
                current is not None
                and current.refreshed_at >= stale_before
                and current.min_group_size == self.min_group_size
            ):
                return
            result = await data.refresh(
                conn,
                today=self.settings.today(),
                min_group_size=self.min_group_size,
                timeout_ms=self.options.refresh_timeout_ms,
                wait=False,
                stale_before=stale_before,
            )
        if result is not None:
            rebuilt = current is None or result.refreshed_at != current.refreshed_at
            analytics_refreshed(result.refreshed_at, result.duration_ms if rebuilt else None)
            log.info("analytics cells refreshed at %s (background)", result.refreshed_at)

    async def close(self) -> None:
        """Stop the background refresh and close the analytics pool."""
        if self._background is not None:
            self._background.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._background
            self._background = None
        if self._pool is not None:
            await self._pool.close()
            self._pool = None


async def refresh_cells(url: str, settings: Settings, *, restart: bool = False) -> Freshness:
    """One refresh now, on a connection of its own to `url` as the gateway's login role
    (`school-gateway analytics-refresh`: no service, no pool); `restart`: every cell placed
    afresh (the year's assignment of cells to units starts over)."""
    conn = await connect_as_gateway(url, settings)
    try:
        result = await data.refresh(
            conn,
            today=settings.today(),
            min_group_size=settings.analytics.min_group_size,
            timeout_ms=settings.analytics.refresh_timeout_ms,
            restart=restart,
        )
    finally:
        await conn.close()
    assert result is not None
    return result

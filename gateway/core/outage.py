"""Database outages: which errors mean "the database is unavailable", and one warning each.

While PostgreSQL restarts, crashes or refuses connections, every route that needs it
answers HTTP 503 with the retryable code SERVICE_UNAVAILABLE and `Retry-After`
(`unavailable_error`). Requests are never held back by the outage state: each one tries
the database as usual, so the first request after the database is back is answered
normally (recovery is as fast as asyncpg reconnecting).

`OutageMonitor` keeps the log readable: the first failure of an outage is logged as one
WARNING (the error's class, no traceback), later failures only counted; a background
probe (`SELECT 1` every `probe_interval_s`) notices when the database answers again and
logs one INFO line with how long the outage lasted and how many requests were refused.

Connection-class errors (`is_database_unavailable`):
- asyncpg's `PostgresConnectionError` family (class 08: connection refused by the server,
  connection does not exist — asyncpg's "connection was closed in the middle of
  operation" — connection failure);
- 57P01 admin shutdown, 57P02 crash shutdown, 57P03 cannot connect now (the server is
  starting or stopping), 57P05 idle session timeout; *not* 57014, a statement timeout
  (that is TIMEOUT, the query's own fault);
- 53300 too many connections;
- asyncpg's `InterfaceError` about a closed connection (not a closed pool: that is ours),
  and its `InternalClientError` "cannot switch to state …": a pooled connection still
  consuming the error the server sent as it shut down, before the close arrived;
- `OSError` from the network (connection refused or reset, host unreachable, a name that
  does not resolve, asyncio's "Multiple exceptions" when every address refused, and
  `TimeoutError`, which is an OSError), but not the file-system and process kinds.
Anything else is a bug and keeps its traceback and INTERNAL_SERVER_ERROR.

asyncpg's pool logs a WARNING with a traceback each time it fails to reconnect its
minimum of connections (backing off from 1 s); `quiet_driver_reconnects` turns those
that are about the database being away into DEBUG lines without traceback (the outage
has its warning already).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, Final

import asyncpg
from graphql import GraphQLError

from gateway.core.errors import ErrorCode, HttpError

log = logging.getLogger(__name__)

RETRY_AFTER_S: Final = 1
PROBE_INTERVAL_S: Final = 0.2
PROBE_TIMEOUT_S: Final = 2.0
# A failure this soon after the probe saw the database back (a request that was already
# failing) continues the outage that just ended instead of opening a new one.
SETTLE_S: Final = 1.0
_CHAIN_LIMIT: Final = 10

_UNAVAILABLE_POSTGRES_ERRORS: Final = (
    asyncpg.PostgresConnectionError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.CannotConnectNowError,
    asyncpg.IdleSessionTimeoutError,
    asyncpg.TooManyConnectionsError,
)
# OSErrors that are about files and processes, never about reaching the database.
_LOCAL_OS_ERRORS: Final = (
    FileNotFoundError,
    FileExistsError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
    ProcessLookupError,
    ChildProcessError,
    BlockingIOError,
    InterruptedError,
)
# asyncpg's "connection is closed" / "cannot perform operation: connection is closed" /
# "the underlying connection is closed". Not "pool is closed": our own pool closed is a
# bug or the process stopping, not the database being away.
_CLOSED_MARKER: Final = "connection is closed"
_STUCK_MARKER: Final = "cannot switch to state"


class DatabaseUnavailable(Exception):
    """The database could not be reached while answering; the request becomes a 503.

    Raised where an error would otherwise be turned into a response body (an execution
    error inside a GraphQL result); carries the original error as `__cause__`.
    """


def is_database_unavailable(error: BaseException | None) -> bool:
    """True when `error` (or what it wraps) says the database cannot be reached now."""
    seen = 0
    while error is not None and seen < _CHAIN_LIMIT:
        if _is_connection_class(error):
            return True
        if isinstance(error, GraphQLError) and error.original_error is not None:
            error = error.original_error
        else:
            error = error.__cause__
        seen += 1
    return False


def _is_connection_class(error: BaseException) -> bool:
    if isinstance(error, (DatabaseUnavailable, *_UNAVAILABLE_POSTGRES_ERRORS)):
        return True
    if isinstance(error, asyncpg.InterfaceError):
        return _CLOSED_MARKER in str(error)
    if isinstance(error, asyncpg.exceptions.InternalClientError):
        return str(error).startswith(_STUCK_MARKER)
    return isinstance(error, OSError) and not isinstance(error, _LOCAL_OS_ERRORS)


def unavailable_error() -> HttpError:
    """The answer while the database is unavailable: 503 SERVICE_UNAVAILABLE, Retry-After."""
    return HttpError(
        503, ErrorCode.SERVICE_UNAVAILABLE, headers={"Retry-After": str(RETRY_AFTER_S)}
    )


@contextmanager
def statement_timeout_as_503() -> Iterator[None]:
    """A statement timeout (57014) inside the block becomes 503 TIMEOUT."""
    try:
        yield
    except asyncpg.QueryCanceledError:
        raise HttpError(503, ErrorCode.TIMEOUT) from None


def describe(error: BaseException) -> str:
    """What went wrong, for the outage warning: the innermost error's class and SQLSTATE."""
    inner = error
    for _ in range(_CHAIN_LIMIT):
        nested = inner.original_error if isinstance(inner, GraphQLError) else inner.__cause__
        if nested is None:
            break
        inner = nested
    sqlstate = getattr(inner, "sqlstate", None)
    return f"{type(inner).__name__} (SQLSTATE {sqlstate})" if sqlstate else type(inner).__name__


class OutageMonitor:
    """One warning when an outage starts, one line when it ends; the requests in between
    are counted, not logged. `probe` checks the database (e.g. `SELECT 1` on the pool)."""

    def __init__(
        self,
        probe: Callable[[], Awaitable[object]],
        *,
        probe_interval_s: float = PROBE_INTERVAL_S,
        probe_timeout_s: float = PROBE_TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._probe = probe
        self._interval = probe_interval_s
        self._timeout = probe_timeout_s
        self._clock = clock
        self._started: float | None = None
        self._last: tuple[float, float] | None = None  # (started, ended) of the last outage
        self._refused = 0
        self._watcher: asyncio.Task[None] | None = None
        self.outages = 0  # outages seen since start (for tests and operators)

    @property
    def active(self) -> bool:
        """True from the first failure of an outage until the probe reaches the database."""
        return self._started is not None

    def failed(self, error: BaseException, where: str) -> None:
        """A request could not reach the database (it is answered 503)."""
        self._refused += 1
        if self._started is not None:
            return
        now = self._clock()
        if self._last is not None and now - self._last[1] < SETTLE_S:
            self._started = self._last[0]  # the same outage, not a new one: no new warning
            self._watch()
            return
        self._started = now
        self._refused = 1
        self.outages += 1
        log.warning(
            "database unavailable (%s in %s): answering 503 %s until it is back",
            describe(error),
            where,
            ErrorCode.SERVICE_UNAVAILABLE.value,
        )
        self._watch()

    def _watch(self) -> None:
        self._watcher = start_probe(
            self._watcher, self._wait_until_back, "outage-probe", "database outage probe"
        )

    async def _wait_until_back(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            if await self._database_answers():
                self._recovered()
                return

    async def _database_answers(self) -> bool:
        try:
            async with asyncio.timeout(self._timeout):
                await self._probe()
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as error:
            # A server that answers with another error is up (it is not our outage).
            return not is_database_unavailable(error)
        return True

    def _recovered(self) -> None:
        started, self._started = self._started, None
        if started is None:
            return
        now = self._clock()
        self._last = (started, now)
        log.info(
            "database is back after %.1f s of outage (%d requests answered 503)",
            now - started,
            self._refused,
        )

    async def close(self) -> None:
        """Stop the probe (the application is stopping)."""
        watcher, self._watcher = self._watcher, None
        if watcher is not None and not watcher.done():
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)


class _DriverReconnects(logging.Filter):
    """asyncpg's pool reconnect failures during an outage: DEBUG, no traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if error is not None and is_database_unavailable(error):
            record.msg = f"{record.getMessage()} ({describe(error)})"
            record.args = None
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return True


def quiet_driver_reconnects() -> None:
    """Install `_DriverReconnects` on asyncpg's pool logger (once)."""
    logger = logging.getLogger("asyncpg.pool")
    if not any(isinstance(existing, _DriverReconnects) for existing in logger.filters):
        logger.addFilter(_DriverReconnects())


def start_probe(
    running: asyncio.Task[None] | None,
    probe: Callable[[], Coroutine[Any, Any, None]],
    name: str,
    what: str,
) -> asyncio.Task[None] | None:
    """`running` while it runs, else `probe()` started as a task in a context of its own
    (not the failed request's), its failure logged as "`what` stopped"; None without a
    running loop (a synchronous caller: the next failure starts it)."""
    if running is not None and not running.done():
        return running
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return running
    task = loop.create_task(probe(), name=name, context=contextvars.Context())

    def report(done: asyncio.Task[None]) -> None:
        if not done.cancelled() and done.exception() is not None:
            log.error("%s stopped", what, exc_info=done.exception())

    task.add_done_callback(report)
    return task

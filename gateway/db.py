"""Database connections: where the server is, the pool, and a per-request statement counter."""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import asyncpg

from gateway import embedded
from gateway.settings import Settings

log = logging.getLogger(__name__)


@dataclass(slots=True)
class StatementCounter:
    """Counts SQL statements sent while it is the current counter (one per request)."""

    count: int = 0
    statements: list[str] = field(default_factory=list)
    keep_text: bool = False


_current_counter: contextvars.ContextVar[StatementCounter | None] = contextvars.ContextVar(
    "statement_counter", default=None
)


@contextmanager
def counting_statements(*, keep_text: bool = False) -> Iterator[StatementCounter]:
    """Make a fresh counter current for the enclosed block (and tasks it spawns)."""
    counter = StatementCounter(keep_text=keep_text)
    token = _current_counter.set(counter)
    try:
        yield counter
    finally:
        _current_counter.reset(token)


def _record_statement(record: asyncpg.connection.LoggedQuery) -> None:
    counter = _current_counter.get()
    if counter is not None:
        counter.count += 1
        if counter.keep_text:
            counter.statements.append(record.query)


async def _init_connection(conn: asyncpg.Connection) -> None:
    conn.add_query_logger(_record_statement)


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Release without asyncpg's RESET ALL round trip: the gateway changes no session state.

    An open transaction is still rolled back by asyncpg before this runs.
    """


@dataclass(frozen=True, slots=True)
class DatabaseLocation:
    """Where the database is: a DSN plus the embedded server when we started one."""

    url: str
    server: embedded.EmbeddedServer | None


def locate_database(settings: Settings) -> DatabaseLocation:
    """`DATABASE_URL` when set, otherwise the embedded server (started if needed)."""
    if settings.database_url is not None:
        return DatabaseLocation(url=settings.database_url, server=None)
    server = embedded.start(settings.data_dir)
    return DatabaseLocation(url=server.url, server=server)


async def create_pool(url: str, settings: Settings) -> asyncpg.Pool:
    """A pool whose sessions run as the gateway's read-only role with a statement timeout."""
    pool = await asyncpg.create_pool(
        url,
        min_size=settings.pool_min_size,
        max_size=settings.pool_max_size,
        init=_init_connection,
        reset=_keep_session,
        server_settings={
            "jit": "off",  # short OLTP statements; JIT compilation only adds latency
            "role": settings.gateway_role,
            "statement_timeout": str(settings.statement_timeout_ms),
            "application_name": "school-gateway",
        },
    )
    assert pool is not None
    return pool

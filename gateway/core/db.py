"""Database connections: the pool, the gateway's session role, a per-request statement counter.

The gateway connects as its least-privilege login role (gateway.core.db_roles); where the
server is and how that role is made ready is gateway.migrations.location's job.
"""

from __future__ import annotations

import contextvars
import dataclasses
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import asyncpg

from gateway.core.db_roles import LoginIdentity, login_identity, role_to_set
from gateway.core.pooler import (
    check_session_defaults,
    explain_refused_start,
    refuse_role_switch,
    startup_settings,
    statement_cache_options,
)
from gateway.core.settings import Settings
from gateway.core.tracing import statement_span

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


def current_statement_counter() -> StatementCounter | None:
    """The counter statements are counted in now (a request's, a test's), if any."""
    return _current_counter.get()


def context_counting_into(counter: StatementCounter) -> contextvars.Context:
    """A fresh context (for a background task) whose statements count in `counter`."""
    context = contextvars.Context()
    context.run(_current_counter.set, counter)
    return context


def _record_statement(record: asyncpg.connection.LoggedQuery) -> None:
    statement_span(record.query, record.elapsed, record.exception is not None)
    counter = _current_counter.get()
    if counter is not None:
        counter.count += 1
        if counter.keep_text:
            counter.statements.append(record.query)


async def _init_connection(conn: asyncpg.Connection) -> None:
    conn.add_query_logger(_record_statement)


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Release without asyncpg's RESET ALL round trip: the gateway changes no session state
    (the change feed's LISTEN connection unlistens before it goes back to the pool).

    An open transaction is still rolled back by asyncpg before this runs.
    """


async def identify(url: str) -> LoginIdentity:
    """Whom `url` logs in as (one short connection, no named statement: it answers
    through a transaction pooler whatever the settings say)."""
    conn = await asyncpg.connect(url, statement_cache_size=0)
    try:
        return await login_identity(conn)
    finally:
        await conn.close()


async def gateway_session_settings(url: str, settings: Settings) -> dict[str, str]:
    """The server settings that make a session of `url` the gateway's: none when `url`
    logs in as its role (nothing to switch, nothing to switch back); `role` for an older
    deployment's DSN (warned); a superuser is refused (UnsafeLoginError)."""
    role = role_to_set(await identify(url), settings.gateway_role)
    return {} if role is None else {"role": role}


async def connect_as_gateway(
    url: str, settings: Settings, *, application_name: str = "school-gateway"
) -> asyncpg.Connection:
    """One connection as the gateway's role (the commands that act as the gateway)."""
    conn = await asyncpg.connect(
        url,
        server_settings={"application_name": application_name},
        **statement_cache_options(settings.pooler),
    )
    try:
        role = role_to_set(await login_identity(conn), settings.gateway_role)
        refuse_role_switch(settings.pooler, role)
        if role is not None:
            await conn.execute(f'SET ROLE "{role}"')
    except BaseException:
        await conn.close()
        raise
    return conn


async def create_pool(url: str, settings: Settings) -> asyncpg.Pool:
    """A pool of the gateway's login role with a statement timeout (see
    `gateway_session_settings` for what else `url` may log in as; gateway.core.pooler
    for a pooler in between)."""
    with explain_refused_start(settings.pooler):
        pool = await _open_pool(url, settings)
    try:
        await check_session_defaults(
            pool, settings.pooler, statement_timeout_ms=settings.statement_timeout_ms
        )
    except BaseException:
        await pool.close()
        raise
    return pool


async def check_login(url: str, settings: Settings) -> None:
    """Open and close a one-connection pool as serving will: a refusal (a superuser, a
    pooler's, gateway.core.pooler) comes in one line before any worker starts."""
    one = dataclasses.replace(settings, pool_min_size=1, pool_max_size=1)
    await (await create_pool(url, one)).close()


async def _open_pool(url: str, settings: Settings) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        url,
        min_size=settings.pool_min_size,
        max_size=settings.pool_max_size,
        init=_init_connection,
        reset=_keep_session,
        **statement_cache_options(settings.pooler),
        server_settings=startup_settings(
            settings.pooler,
            {
                "jit": "off",  # short OLTP statements; JIT compilation only adds latency
                **await gateway_session_settings(url, settings),
                "statement_timeout": str(settings.statement_timeout_ms),
                "application_name": "school-gateway",
            },
        ),
    )
    assert pool is not None
    return pool

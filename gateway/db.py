"""Database connections: where the server is, the pool, and a per-request statement counter.

The gateway connects as its least-privilege login role (gateway.db_roles): with
DATABASE_URL, the DSN the operator gives (DATABASE_OWNER_URL, or else DATABASE_URL, is
the owner's, for `seed` and `migrate`); on the embedded server, the role is created or
brought up to date at every start and its password kept in the data folder.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import asyncpg

from gateway import embedded
from gateway.db_roles import (
    LoginIdentity,
    login_identity,
    read_or_create_secret,
    role_to_set,
    with_credentials,
)
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


# Next to the embedded server's data: the gateway's database password (mode 0600).
GATEWAY_PASSWORD_FILE = "db-gateway-password"


@dataclass(frozen=True, slots=True)
class DatabaseLocation:
    """Where the database is: the gateway's login DSN (`url`: serving and the commands
    that act as the gateway), the owner's (`owner_url`: seeding and migrations), and the
    embedded server when there is one."""

    url: str
    owner_url: str
    server: embedded.EmbeddedServer | None


def locate_database(settings: Settings) -> DatabaseLocation:
    """`DATABASE_URL` when set, otherwise the embedded server (started if needed), whose
    login role is created or updated and given the password kept in its data folder.

    Blocking (it may start a server): call it from a thread when an event loop runs."""
    if settings.database_url is not None:
        owner = settings.database_owner_url or settings.database_url
        return DatabaseLocation(url=settings.database_url, owner_url=owner, server=None)
    server = embedded.start(settings.data_dir)
    url = asyncio.run(embedded_login(server, settings.gateway_role))
    return DatabaseLocation(url=url, owner_url=server.url, server=server)


async def embedded_login(server: embedded.EmbeddedServer, gateway_role: str) -> str:
    """The login DSN of the gateway's role on the embedded server (role made ready)."""
    password = read_or_create_secret(server.data_dir / GATEWAY_PASSWORD_FILE)
    return await prepare_login(server.url, gateway_role, password)


async def prepare_login(owner_url: str, gateway_role: str, password: str) -> str:
    """Create or update the login role with `password` (as the owner); its DSN."""
    from fixtures.schema import ensure_login_role

    conn = await asyncpg.connect(owner_url)
    try:
        await ensure_login_role(conn, gateway_role=gateway_role, gateway_password=password)
    finally:
        await conn.close()
    return with_credentials(owner_url, gateway_role, password)


async def identify(url: str) -> LoginIdentity:
    """Whom `url` logs in as (one short connection)."""
    conn = await asyncpg.connect(url)
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
    conn = await asyncpg.connect(url, server_settings={"application_name": application_name})
    try:
        role = role_to_set(await login_identity(conn), settings.gateway_role)
        if role is not None:
            await conn.execute(f'SET ROLE "{role}"')
    except BaseException:
        await conn.close()
        raise
    return conn


async def create_pool(url: str, settings: Settings) -> asyncpg.Pool:
    """A pool of the gateway's login role with a statement timeout (see
    `gateway_session_settings` for what else `url` may log in as)."""
    pool = await asyncpg.create_pool(
        url,
        min_size=settings.pool_min_size,
        max_size=settings.pool_max_size,
        init=_init_connection,
        reset=_keep_session,
        server_settings={
            "jit": "off",  # short OLTP statements; JIT compilation only adds latency
            **await gateway_session_settings(url, settings),
            "statement_timeout": str(settings.statement_timeout_ms),
            "application_name": "school-gateway",
        },
    )
    assert pool is not None
    return pool

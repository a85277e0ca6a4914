"""Connections through a pooler (PgBouncer): what the gateway sends and checks differently.

Direct connections (`SCHOOL_GATEWAY_DATABASE_POOLER=none`) are unchanged: `jit`,
`statement_timeout` (and `role` for an older deployment's DSN) travel as startup
parameters, and asyncpg caches named prepared statements.

Through a pooler:
- only `application_name` is sent at start (PgBouncer refuses any startup parameter it
  does not track; ignoring them with `ignore_startup_parameters` would silently drop the
  statement timeout). `statement_timeout` and `jit` are the login role's defaults
  (`ALTER ROLE ... SET`, or PgBouncer's `connect_query`), checked once when a pool opens:
  a different timeout refuses to start (PoolerSetupError, naming the statements to run),
  `jit = on` is only warned about;
- the DSN must log in as the gateway's role: a `SET ROLE` would be session state;
- a pool released connection is not reset (`RESET ALL` would run on a server session
  the pooler has given to another client: gateway/core/db.py's pool never resets anyway);
- in transaction mode asyncpg's statement cache is off (`statement_cache_size=0`, unless
  SCHOOL_GATEWAY_DATABASE_STATEMENT_CACHE=1 for PgBouncer >= 1.21's prepared statements):
  asyncpg >= 0.29 then sends each statement as an unnamed one, parsed again within the
  same Sync, which is safe when PgBouncer hands the server session to another client
  between two transactions. Named statements are not (`prepared statement
  "__asyncpg_stmt_…" does not exist`: tests/db/test_pgbouncer.py).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Final

import asyncpg

from gateway.core.pooler_settings import PoolerSettings

log = logging.getLogger(__name__)

# The startup parameter of the gateway's that PgBouncer tracks and passes on.
PASSED_THROUGH: Final = frozenset({"application_name"})

_DEFAULTS_SQL: Final = """
SELECT (SELECT setting FROM pg_settings WHERE name = 'statement_timeout') AS statement_timeout,
       current_setting('jit') AS jit, current_user AS role
"""


class PoolerSetupError(RuntimeError):
    """The database behind the pooler is not set up for the gateway's sessions."""


def statement_cache_options(pooler: PoolerSettings) -> dict[str, int]:
    """asyncpg's keyword arguments for the statement cache: none to change, or off."""
    return {} if pooler.caches_statements else {"statement_cache_size": 0}


async def _keep_server_session(_conn: asyncpg.Connection) -> None:
    """No `RESET ALL; UNLISTEN *; ...` on release (asyncpg's default reset): through a
    pooler it would run on a server session that is no longer this client's, and undo
    what a `connect_query` set for every later client."""


def reset_options(
    pooler: PoolerSettings,
) -> dict[str, Callable[[asyncpg.Connection], Awaitable[None]]]:
    """asyncpg pool's `reset`: its default directly, none through a pooler."""
    return {"reset": _keep_server_session} if pooler.pooled else {}


def startup_settings(pooler: PoolerSettings, wanted: dict[str, str]) -> dict[str, str]:
    """The `server_settings` to send: all of `wanted` directly; through a pooler only
    what it passes on. A role to switch to cannot go through a pooler."""
    if not pooler.pooled:
        return wanted
    if "role" in wanted:
        raise PoolerSetupError(_ROLE_MESSAGE.format(role=wanted["role"]))
    return {name: value for name, value in wanted.items() if name in PASSED_THROUGH}


def refuse_role_switch(pooler: PoolerSettings, role: str | None) -> None:
    """A `SET ROLE` on a pooled connection would be left on a shared server session."""
    if pooler.pooled and role is not None:
        raise PoolerSetupError(_ROLE_MESSAGE.format(role=role))


_ROLE_MESSAGE: Final = (
    "SCHOOL_GATEWAY_DATABASE_POOLER is set: the database URL must log in as the "
    "gateway's role {role!r} itself (a SET ROLE would stay on a shared server session)"
)


@contextmanager
def explain_refused_start(pooler: PoolerSettings) -> Iterator[None]:
    """PgBouncer's refusal of a startup parameter, directly configured: PoolerSetupError
    naming the setting."""
    try:
        yield
    except asyncpg.ProtocolViolationError as error:
        if pooler.pooled or "unsupported startup parameter" not in str(error):
            raise
        raise PoolerSetupError(
            f"the database refused a startup parameter ({error}): is DATABASE_URL a "
            "PgBouncer? Set SCHOOL_GATEWAY_DATABASE_POOLER=transaction (or session) "
            "and see README, PgBouncer"
        ) from error


async def check_session_defaults(
    pool: asyncpg.Pool, pooler: PoolerSettings, *, statement_timeout_ms: int
) -> None:
    """Through a pooler, the server sessions' `statement_timeout` must be the gateway's
    (PoolerSetupError otherwise) and `jit` should be off (warned). Nothing directly."""
    if not pooler.pooled:
        return
    row = await pool.fetchrow(_DEFAULTS_SQL)
    assert row is not None
    role = row["role"]
    if int(row["statement_timeout"]) != statement_timeout_ms:
        raise PoolerSetupError(
            f"through the pooler (SCHOOL_GATEWAY_DATABASE_POOLER={pooler.mode}) the "
            f"sessions' statement_timeout is {row['statement_timeout']} ms, the gateway's "
            f"is {statement_timeout_ms} ms (SCHOOL_GATEWAY_STATEMENT_TIMEOUT_MS): run "
            f'ALTER ROLE "{role}" SET statement_timeout = {statement_timeout_ms}; '
            f'ALTER ROLE "{role}" SET jit = off; (or set them in PgBouncer\'s connect_query)'
        )
    if row["jit"] != "off":
        log.warning(
            "through the pooler the sessions run with jit = %s (only adds latency to the "
            'gateway\'s short statements): ALTER ROLE "%s" SET jit = off',
            row["jit"],
            role,
        )

"""Apply the gateway's own schema (tables, the login role and its grants), idempotently.

The SQL files next to this module are the gateway's: its schema `gateway` (sessions,
accounts, clients, audit, analytics cells), the login role and the read grants. They are
applied after the school database's read contract exists (the grants name its views).
"""

from __future__ import annotations

from importlib import resources

import asyncpg

from gateway.core.db_roles import set_password_sql

GATEWAY_SQL_FILES = (
    "gateway_schema.sql",
    "gateway_auth.sql",
    "gateway_clients.sql",
    "gateway_analytics.sql",
    "gateway_signing_keys.sql",
    "login_role.sql",
    "roles.sql",
)
# Serialises concurrent starts (e.g. several workers) and migrations on one cluster.
SCHEMA_LOCK = 72163001


def gateway_sql(name: str, gateway_role: str) -> str:
    """One of the gateway's SQL files, with the login role's name filled in."""
    text = resources.files("gateway.migrations").joinpath(name).read_text(encoding="utf-8")
    return text.replace("{gateway_role}", gateway_role)


async def apply_gateway_schema(
    conn: asyncpg.Connection, *, gateway_role: str, gateway_password: str | None
) -> None:
    """Inside the caller's transaction (holding SCHEMA_LOCK): every gateway SQL file, then
    the login role's password when given."""
    for name in GATEWAY_SQL_FILES:
        await conn.execute(gateway_sql(name, gateway_role))
    if gateway_password is not None:
        await conn.execute(set_password_sql(gateway_role, gateway_password))


async def ensure_login_role(
    conn: asyncpg.Connection, *, gateway_role: str, gateway_password: str | None
) -> None:
    """Create the gateway's login role, or bring an existing one to what login_role.sql
    says (LOGIN, no other attribute, member of nothing), and set its password if given.
    Its grants are roles.sql's, applied with the schema (`apply_gateway_schema`)."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", SCHEMA_LOCK)
        await conn.execute(gateway_sql("login_role.sql", gateway_role))
        if gateway_password is not None:
            await conn.execute(set_password_sql(gateway_role, gateway_password))

"""The read contract and least privilege: the gateway logs in as its own role, which sees
the diary_api views only and cannot become anyone else."""

from __future__ import annotations

import asyncpg
import pytest
from starlette.applications import Starlette

from fixtures.database import apply_schema
from fixtures.generate import SeedSummary
from gateway.core.db import create_pool
from gateway.core.db_roles import LoginIdentity, UnsafeLoginError, role_to_set, with_credentials
from gateway.core.embedded import SUPERUSER, EmbeddedServer
from gateway.core.settings import Settings


async def test_gateway_role_reads_contract_views(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        role = await conn.fetchval("SELECT current_user")
        students = await conn.fetchval("SELECT count(*) FROM diary_api.students")
    assert role == "school_gateway"
    assert students > 100


@pytest.mark.parametrize("table", ["students", "marks", "parents", "attendance", "lessons"])
async def test_gateway_role_cannot_read_school_tables(pool: asyncpg.Pool, table: str) -> None:
    async with pool.acquire() as conn:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetchval(f"SELECT count(*) FROM school.{table}")


async def test_gateway_role_cannot_write_the_school_database(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("UPDATE diary_api.staff SET last_name = 'X'")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("DELETE FROM school.marks")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("CREATE TABLE diary_api.intruder (id int)")


async def test_password_hashes_are_not_in_the_diary_views(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        columns = await conn.fetch(
            """SELECT table_name, column_name FROM information_schema.columns
               WHERE table_schema = 'diary_api' AND column_name = 'password_hash'"""
        )
    assert [(r["table_name"], r["column_name"]) for r in columns] == [
        ("student_identities", "password_hash")
    ]


async def test_schema_can_be_applied_again(
    owner_conn: asyncpg.Connection, settings: Settings, seeded: SeedSummary
) -> None:
    before = await owner_conn.fetchval("SELECT count(*) FROM school.marks")
    await apply_schema(owner_conn, gateway_role=settings.gateway_role)
    after = await owner_conn.fetchval("SELECT count(*) FROM school.marks")
    assert before == after > 0


async def test_statement_timeout_is_set_for_the_gateway(
    pool: asyncpg.Pool, settings: Settings
) -> None:
    async with pool.acquire() as conn:
        timeout = await conn.fetchval(
            "SELECT setting FROM pg_settings WHERE name = 'statement_timeout'"
        )
    assert timeout == str(settings.statement_timeout_ms)


# --- the gateway's login role (issue 9, item 13) ---------------------------------------


async def test_the_gateway_logs_in_as_its_role_not_as_a_superuser(
    app: Starlette, pool: asyncpg.Pool, settings: Settings
) -> None:
    """The app's real pool: no SET ROLE over a superuser session, the role itself."""
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT session_user AS session, current_user AS current, rolsuper, "
            "rolcanlogin FROM pg_roles WHERE rolname = session_user"
        )
        role_setting = await conn.fetchval("SELECT current_setting('role')")
    assert row is not None
    print(f"pool session: {dict(row)}, role setting {role_setting!r}")
    assert (row["session"], row["current"]) == (settings.gateway_role, settings.gateway_role)
    assert row["rolsuper"] is False and row["rolcanlogin"] is True
    assert role_setting == "none"  # logged in as the role: nothing was switched


async def test_the_analytics_pool_logs_in_as_the_gateway_role(
    app: Starlette, settings: Settings
) -> None:
    async with app.state.services.analytics.connection() as conn:
        users = await conn.fetchrow("SELECT session_user AS session, current_user AS current")
    assert users is not None
    assert (users["session"], users["current"]) == (settings.gateway_role,) * 2


@pytest.mark.parametrize(
    "statement",
    [
        "SET ROLE postgres",
        "SET SESSION AUTHORIZATION postgres",
        "SET ROLE pg_read_all_data",
        "ALTER ROLE school_gateway SUPERUSER",
        "CREATE ROLE intruder LOGIN",
        "GRANT pg_read_all_data TO school_gateway",
    ],
)
async def test_the_login_role_cannot_become_anyone_else(
    pool: asyncpg.Pool, settings: Settings, statement: str
) -> None:
    async with pool.acquire() as conn:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(statement)
        assert await conn.fetchval("SELECT current_user") == settings.gateway_role


async def test_reset_role_leaves_the_login_role(pool: asyncpg.Pool, settings: Settings) -> None:
    async with pool.acquire() as conn:
        for statement in ("RESET ROLE", "SET ROLE NONE", "RESET SESSION AUTHORIZATION"):
            await conn.execute(statement)
            users = await conn.fetchrow("SELECT session_user AS s, current_user AS c")
            assert users is not None
            assert (users["s"], users["c"]) == (settings.gateway_role,) * 2, statement
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("INSERT INTO school.municipalities (id, name) VALUES (-1, 'x')")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("UPDATE school.students SET last_name = last_name")


async def test_the_login_role_has_no_attribute_but_login(
    owner_conn: asyncpg.Connection, settings: Settings
) -> None:
    row = await owner_conn.fetchrow(
        """SELECT rolcanlogin, rolsuper, rolcreaterole, rolcreatedb, rolreplication,
                  rolbypassrls, rolpassword LIKE 'SCRAM-SHA-256$%' AS scram,
                  (SELECT count(*) FROM pg_auth_members WHERE member = a.oid) AS memberships
           FROM pg_authid a WHERE rolname = $1""",
        settings.gateway_role,
    )
    assert row is not None
    assert dict(row) == {
        "rolcanlogin": True,
        "rolsuper": False,
        "rolcreaterole": False,
        "rolcreatedb": False,
        "rolreplication": False,
        "rolbypassrls": False,
        "scram": True,
        "memberships": 0,
    }


async def test_a_superuser_dsn_is_refused_for_serving(
    owner_url: str, owner_conn: asyncpg.Connection, settings: Settings
) -> None:
    if not await owner_conn.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user"):
        pytest.skip("the external test database's owner is not a superuser")
    with pytest.raises(UnsafeLoginError, match="superuser"):
        await create_pool(owner_url, settings)


async def test_embedded_server_wants_passwords_over_tcp(
    database_server: EmbeddedServer | None, database_url: str, settings: Settings
) -> None:
    """The role's password matters: TCP is SCRAM for everyone (the superuser too)."""
    if database_server is None:
        pytest.skip("an external test database has its own pg_hba.conf")
    for url in (
        with_credentials(database_url, settings.gateway_role, "not-the-password"),
        with_credentials(database_server.url, SUPERUSER, "not-the-password"),
    ):
        with pytest.raises(asyncpg.InvalidPasswordError):
            await asyncpg.connect(url)
    conn = await asyncpg.connect(database_url)
    try:
        assert await conn.fetchval("SELECT session_user") == settings.gateway_role
    finally:
        await conn.close()


def test_login_identities() -> None:
    """Whom `role_to_set` accepts: the role itself as is, an older deployment's owner
    with SET ROLE (warned), never a superuser."""
    assert role_to_set(LoginIdentity("school_gateway", False, ()), "school_gateway") is None
    owner = LoginIdentity("app_owner", False, ("school_gateway",))
    assert role_to_set(owner, "school_gateway") == "school_gateway"
    for superuser in ("postgres", "school_gateway"):
        with pytest.raises(UnsafeLoginError):
            role_to_set(LoginIdentity(superuser, True, ()), "school_gateway")

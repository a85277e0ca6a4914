"""The read contract and least privilege: the gateway's role sees diary_api views only."""

from __future__ import annotations

import asyncpg
import pytest

from fixtures.generate import SeedSummary
from fixtures.schema import apply_schema
from gateway.settings import Settings


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

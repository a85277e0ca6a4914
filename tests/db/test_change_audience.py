"""The change feed's audience rule (auth.store.accounts.audience_sql: who may see each
student, read from the students' side) gives exactly the scopes the viewer rule gives
(load_viewer: which students each account may see, read from the account's side), for
every kind of registry record: a well-formed SNILS, a missing or malformed one with a
phone, several records of one person in several schools."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator

import asyncpg
import pytest

from auth.store.accounts import audience_sql, load_viewer, upsert_parent_account

PEOPLE = 400


@pytest.fixture
async def parent_accounts(
    pool: asyncpg.Pool, owner_conn: asyncpg.Connection
) -> AsyncIterator[list[str]]:
    """Accounts of registry parents (as their sign-in would make them), removed after."""
    people = await owner_conn.fetch(
        """SELECT DISTINCT ON (key) snils, phone FROM (
               SELECT CASE WHEN coalesce(snils, '') ~ '^[0-9]{11}$' THEN snils END AS snils,
                      phone,
                      coalesce(CASE WHEN coalesce(snils, '') ~ '^[0-9]{11}$' THEN snils END,
                               phone) AS key
               FROM school.parents
               WHERE coalesce(snils, '') ~ '^[0-9]{11}$' OR phone ~ '^\\+7[0-9]{10}$'
           ) p
           ORDER BY key LIMIT $1""",
        PEOPLE,
    )
    before = {r[0] for r in await owner_conn.fetch("SELECT id FROM gateway.accounts")}
    ids = [
        await upsert_parent_account(
            pool, snils=row["snils"], phone=row["phone"], display_name="Родитель"
        )
        for row in people
    ]
    try:
        yield ids
    finally:
        await owner_conn.execute(
            "DELETE FROM gateway.accounts WHERE id = ANY($1::uuid[]) AND NOT id = ANY($2::uuid[])",
            ids,
            list(before),
        )


async def test_the_audience_of_every_student_is_the_scope_of_every_account(
    pool: asyncpg.Pool, parent_accounts: list[str]
) -> None:
    everyone = audience_sql("SELECT id AS student_id FROM diary_api.students")
    rows = await pool.fetch(f"SELECT student_id, account_id FROM ({everyone}) au")
    seen_by: dict[str, set[int]] = defaultdict(set)
    for row in rows:
        seen_by[row["account_id"]].add(row["student_id"])
    for account_id in parent_accounts:
        viewer = await load_viewer(pool, account_id)
        assert viewer is not None
        assert seen_by.get(account_id, set()) == set(viewer.student_ids), account_id
    assert sum(1 for a in parent_accounts if seen_by.get(a)) >= 100  # not all empty
    phone_only = await pool.fetchval(
        "SELECT count(*) FROM gateway.accounts WHERE id = ANY($1::uuid[]) AND snils IS NULL",
        parent_accounts,
    )
    assert phone_only >= 5  # the phone rule is exercised too

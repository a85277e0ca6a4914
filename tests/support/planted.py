"""Test helpers: plant a temporary parent for chosen students, ask GraphQL as them.

The parent gets a registry record (same SNILS) in every school of its children, as the
real registries do, and a gateway account; everything is removed on exit.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx

from auth.store.accounts import ensure_demo_account
from auth.store.sessions import issue_dev_token
from fixtures.demo import DemoAccount
from gateway.core import identifiers as snils
from gateway.core.settings import Settings

PLANTED_SNILS_BODY = 555_000_100


@asynccontextmanager
async def planted_parent(
    owner_conn: asyncpg.Connection,
    pool: asyncpg.Pool,
    settings: Settings,
    student_ids: Sequence[int],
    *,
    tag: int = 0,
) -> AsyncIterator[str]:
    """A bearer token of a new parent linked to exactly `student_ids`; undone on exit."""
    parent_snils = snils.make(str(PLANTED_SNILS_BODY + tag))
    schools = await owner_conn.fetch(
        "SELECT id, school_id FROM school.students WHERE id = ANY($1::int[])", list(student_ids)
    )
    assert len(schools) == len(set(student_ids)), "every planted child must exist"
    first_id = await owner_conn.fetchval("SELECT coalesce(max(id), 0) + 1 FROM school.parents")
    parent_of_school: dict[int, int] = {}
    for offset, school_id in enumerate(sorted({row["school_id"] for row in schools})):
        parent_id = first_id + offset
        parent_of_school[school_id] = parent_id
        await owner_conn.execute(
            """INSERT INTO school.parents (id, school_id, last_name, first_name, patronymic,
                                           phone, snils)
               VALUES ($1, $2, 'Проверкина', 'Тестина', 'Временная', NULL, $3)""",
            parent_id,
            school_id,
            parent_snils,
        )
    for row in schools:
        await owner_conn.execute(
            "INSERT INTO school.parent_students (parent_id, student_id) VALUES ($1, $2)",
            parent_of_school[row["school_id"]],
            row["id"],
        )
    account = DemoAccount(
        key=f"planted-{tag}",
        role="PARENT",
        description="temporary test parent",
        last_name="Проверкина",
        first_name="Тестина",
        patronymic="Временная",
        snils=parent_snils,
    )
    account_id = await ensure_demo_account(pool, account)
    try:
        yield await issue_dev_token(pool, settings, account_id)
    finally:
        await owner_conn.execute("DELETE FROM gateway.accounts WHERE id = $1::uuid", account_id)
        await owner_conn.execute(
            "DELETE FROM school.parents WHERE id = ANY($1::int[])", list(parent_of_school.values())
        )


async def post_graphql(
    client: httpx.AsyncClient,
    token: str | None,
    query: str,
    variables: dict[str, Any] | None = None,
    *,
    expect_status: int | None = 200,
) -> dict[str, Any]:
    """POST a GraphQL operation with a bearer token; the JSON body (status checked unless None)."""
    headers = {"Accept": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    body: dict[str, Any] = {"query": query}
    if variables is not None:
        body["variables"] = variables
    response = await client.post("/graphql", json=body, headers=headers)
    if expect_status is not None:
        assert response.status_code == expect_status, response.text
    payload: dict[str, Any] = response.json()
    return payload


def error_codes(payload: dict[str, Any]) -> list[str]:
    """The `extensions.code` of every error in a GraphQL response, in order."""
    return [error.get("extensions", {}).get("code") for error in payload.get("errors", [])]

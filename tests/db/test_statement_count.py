"""N+1 guard: the SQL statements of one request do not grow with children or days.

Statements are counted by `gateway.core.db.counting_statements` around whole HTTP requests
(httpx's ASGI transport runs the app in the test's task, so the counter's ContextVar is
seen by the app). asyncpg's own housekeeping is left out (`tests.support.statements`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import asyncpg
import httpx

from gateway.core.db import counting_statements
from gateway.core.settings import Settings
from tests.support.environment import TODAY
from tests.support.planted import planted_parent, post_graphql
from tests.support.statements import FAMILY_QUERY, application_statements


async def count_request(
    client: httpx.AsyncClient, token: str, variables: dict[str, str]
) -> tuple[list[str], int]:
    with counting_statements(keep_text=True) as counter:
        payload = await post_graphql(client, token, FAMILY_QUERY, variables)
    assert "errors" not in payload, payload
    children = payload["data"]["myChildren"]
    return application_statements(counter), len(children)


async def pick_students(conn: asyncpg.Connection, count: int) -> list[int]:
    """Students of different classes and schools, in grades that have marks."""
    rows = await conn.fetch(
        """SELECT DISTINCT ON (st.class_id) st.id, st.class_id, st.school_id
           FROM school.students st JOIN school.classes c ON c.id = st.class_id
           WHERE c.grade BETWEEN 2 AND 11
             AND EXISTS (SELECT 1 FROM school.marks m WHERE m.student_id = st.id)
           ORDER BY st.class_id, st.id"""
    )
    by_school: dict[int, list[int]] = {}
    for row in rows:
        by_school.setdefault(row["school_id"], []).append(row["id"])
    assert len(by_school) >= 2, "the data set has several schools"
    # Round-robin over schools so the planted parent is a merged, multi-school account.
    chosen: list[int] = []
    columns = list(by_school.values())
    while len(chosen) < count:
        for column in columns:
            if column and len(chosen) < count:
                chosen.append(column.pop(0))
    return chosen


def _window(days: int) -> dict[str, str]:
    last = TODAY
    return {"from": (last - timedelta(days=days - 1)).isoformat(), "to": last.isoformat()}


def _describe(statements: Sequence[str]) -> str:
    return "\n".join(f"  {text[:110]}" for text in statements)


async def test_the_counter_sees_statements_of_requests_over_asgi(
    client: httpx.AsyncClient,
    owner_conn: asyncpg.Connection,
    pool: asyncpg.Pool,
    settings: Settings,
) -> None:
    students = await pick_students(owner_conn, 1)
    async with planted_parent(owner_conn, pool, settings, students, tag=10) as token:
        statements, children = await count_request(client, token, _window(7))
    assert children == 1
    assert any("diary_api.lesson_facts" in text for text in statements), _describe(statements)
    assert any("diary_api.mark_facts" in text for text in statements)


async def test_statements_do_not_grow_with_children(
    client: httpx.AsyncClient,
    owner_conn: asyncpg.Connection,
    pool: asyncpg.Pool,
    settings: Settings,
) -> None:
    students = await pick_students(owner_conn, 5)
    async with planted_parent(owner_conn, pool, settings, students[:1], tag=11) as one_token:
        one, one_children = await count_request(client, one_token, _window(7))
    async with planted_parent(owner_conn, pool, settings, students, tag=12) as five_token:
        five, five_children = await count_request(client, five_token, _window(7))
    assert (one_children, five_children) == (1, 5)
    assert len(one) == len(five), f"1 child:\n{_describe(one)}\n5 children:\n{_describe(five)}"
    assert sorted(one) == sorted(five)
    assert len(five) <= 12, _describe(five)


async def test_statements_do_not_grow_with_days(
    client: httpx.AsyncClient,
    owner_conn: asyncpg.Connection,
    pool: asyncpg.Pool,
    settings: Settings,
) -> None:
    students = await pick_students(owner_conn, 5)
    async with planted_parent(owner_conn, pool, settings, students, tag=13) as token:
        one_day, _ = await count_request(client, token, _window(1))
        month, _ = await count_request(client, token, _window(settings.max_diary_days))
    assert len(one_day) == len(month), f"1 day:\n{_describe(one_day)}\nmonth:\n{_describe(month)}"
    assert sorted(one_day) == sorted(month)


async def test_a_failing_request_reads_nothing_twice(
    client: httpx.AsyncClient,
    owner_conn: asyncpg.Connection,
    pool: asyncpg.Pool,
    settings: Settings,
) -> None:
    """The compiled attempt gives way to graphql-core, which reuses its loaders' reads."""
    student, outsider = await pick_students(owner_conn, 2)
    query = """query Mixed($from: Date, $to: Date, $other: ID!) {
      myChildren { id diary(from: $from, to: $to) { marks { value } } }
      student(id: $other) { id }
    }"""
    variables = {**_window(7), "other": str(outsider)}
    async with planted_parent(owner_conn, pool, settings, [student], tag=14) as token:
        with counting_statements(keep_text=True) as counter:
            payload = await post_graphql(client, token, query, variables)
    assert payload["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert payload["data"]["myChildren"][0]["id"] == str(student)
    statements = application_statements(counter)
    assert len(statements) == len(set(statements)), _describe(statements)

"""Helpers of the change-feed tests (tests/db/test_change_feed*.py): `diaryChanges` pages
asked over HTTP, paging to the end, a family's children, the change log's rows as the
owner sees them (the expected values), and teachers writing marks concurrently."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from typing import Any

import asyncpg
import httpx

from tests.support.journal_writes import JournalWriter
from tests.support.planted import error_codes, post_graphql

CHANGES_QUERY = """
query Changes($since: ChangeCursor, $first: Int!, $ids: [ID!]) {
  diaryChanges(studentIds: $ids, since: $since, first: $first) {
    cursor hasMore
    events {
      __typename cursor studentId action lessonId date at
      ... on MarkEvent { markId mark { id value weight workTitle workType { id } } }
      ... on AttendanceEvent { attendanceId attendance { id code lessonId minutesLate } }
      ... on HomeworkEvent { homeworkId homework { id text assignedOn dueOn lessonId } }
      ... on LessonTopicEvent { topic }
      ... on LessonEvent { lesson { id room status statusComment } }
      ... on FinalMarkEvent { finalMarkId finalMark { id value kind } }
    }
  }
}
"""

# The entity id field of each event type (a lesson's events: the lesson).
ENTITY_FIELD = {
    "MarkEvent": "markId",
    "AttendanceEvent": "attendanceId",
    "HomeworkEvent": "homeworkId",
    "FinalMarkEvent": "finalMarkId",
    "LessonTopicEvent": "lessonId",
    "LessonEvent": "lessonId",
}
KIND_OF_TYPE = {
    "MarkEvent": "mark",
    "AttendanceEvent": "attendance",
    "HomeworkEvent": "homework",
    "FinalMarkEvent": "final_mark",
    "LessonTopicEvent": "lesson_topic",
    "LessonEvent": "lesson",
}

# (kind, entity id, student id, action) of one delivered copy of a change.
Key = tuple[str, int, int, str]


def operation(query: str, name: str) -> str:
    """The changes query under another operation name (to find its audit rows)."""
    return query.replace("query Changes(", f"query {name}(", 1)


async def ask_changes(
    client: httpx.AsyncClient,
    token: str | None,
    *,
    since: str | None = None,
    first: int = 50,
    student_ids: Sequence[int] | None = None,
    query: str = CHANGES_QUERY,
) -> dict[str, Any]:
    """The whole GraphQL response of one `diaryChanges` request."""
    variables: dict[str, Any] = {"since": since, "first": first}
    if student_ids is not None:
        variables["ids"] = [str(i) for i in student_ids]
    return await post_graphql(client, token, query, variables)


async def changes_page(
    client: httpx.AsyncClient,
    token: str,
    *,
    since: str | None = None,
    first: int = 50,
    student_ids: Sequence[int] | None = None,
) -> dict[str, Any]:
    """One page (`diaryChanges`), asserted free of errors."""
    payload = await ask_changes(client, token, since=since, first=first, student_ids=student_ids)
    assert "errors" not in payload, payload
    page: dict[str, Any] = payload["data"]["diaryChanges"]
    assert isinstance(page["cursor"], str) and page["cursor"]
    return page


async def page_to_end(
    client: httpx.AsyncClient,
    token: str,
    since: str,
    *,
    first: int = 50,
    student_ids: Sequence[int] | None = None,
    max_pages: int = 100,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every page after `since` up to the first that is not full: (events, pages)."""
    events: list[dict[str, Any]] = []
    pages: list[dict[str, Any]] = []
    cursor = since
    for _ in range(max_pages):
        page = await changes_page(client, token, since=cursor, first=first, student_ids=student_ids)
        pages.append(page)
        events.extend(page["events"])
        cursor = page["cursor"]
        if not page["hasMore"]:
            return events, pages
    raise AssertionError(f"still more after {max_pages} pages")


def key(event: dict[str, Any]) -> Key:
    """What an event is about, comparable with `logged`."""
    typename = event["__typename"]
    return (
        KIND_OF_TYPE[typename],
        int(event[ENTITY_FIELD[typename]]),
        int(event["studentId"]),
        event["action"].lower(),
    )


async def last_change_id(owner_conn: asyncpg.Connection) -> int:
    """The newest change's id in the log (0 when empty)."""
    value: int = await owner_conn.fetchval("SELECT coalesce(max(id), 0) FROM school_changes.events")
    return value


async def logged(
    owner_conn: asyncpg.Connection, after_id: int, student_ids: Sequence[int]
) -> list[Key]:
    """The log's copies of changes after `after_id` for these students, in id order (a
    class's change once per student of the class among them)."""
    rows = await owner_conn.fetch(
        """SELECT e.kind, e.entity_id, s.id AS student_id, e.action
           FROM school_changes.events e
           JOIN school.students s ON s.id = e.student_id OR s.class_id = e.class_id
           WHERE e.id > $1 AND s.id = ANY($2::int[])
           ORDER BY e.id, s.id""",
        after_id,
        list(student_ids),
    )
    return [(r["kind"], r["entity_id"], r["student_id"], r["action"]) for r in rows]


async def children_of(client: httpx.AsyncClient, token: str) -> list[int]:
    """The viewer's children's ids, as the API lists them."""
    payload = await post_graphql(client, token, "{ myChildren { id } }")
    assert "errors" not in payload, payload
    return sorted(int(child["id"]) for child in payload["data"]["myChildren"])


def codes(payload: dict[str, Any]) -> list[str]:
    return error_codes(payload)


async def owner_connection(owner_url: str) -> asyncpg.Connection:
    """A teacher's own connection: a wait for a lock held by the test's own open
    transaction fails (lock_timeout) instead of hanging the test."""
    return await asyncpg.connect(owner_url, server_settings={"lock_timeout": "5000"})


async def students_of_classes(owner_conn: asyncpg.Connection, count: int) -> list[int]:
    """`count` students, each of another class (grades with marks)."""
    rows = await owner_conn.fetch(
        """SELECT DISTINCT ON (s.class_id) s.id FROM school.students s
           JOIN school.classes c ON c.id = s.class_id
           WHERE c.grade BETWEEN 2 AND 11 ORDER BY s.class_id, s.id LIMIT $1""",
        count,
    )
    return [row["id"] for row in rows]


async def teacher_marks(
    owner_url: str, student: int, first_id: int, rng: random.Random, *, transactions: int = 8
) -> list[int]:
    """`transactions` transactions of one to three marks for one student on a connection
    of its own, each held open a little (ids from `first_id` on, a range of this writer's:
    concurrent writers do not wait for each other's keys); the ids written. The caller
    deletes them."""
    conn = await owner_connection(owner_url)
    written: list[int] = []
    try:
        lesson = await JournalWriter(conn).lesson_of(student)
        for _ in range(transactions):
            async with conn.transaction():
                for _ in range(rng.randint(1, 3)):
                    mark_id = first_id + len(written)
                    await conn.execute(
                        """INSERT INTO school.marks (id, student_id, lesson_id, date,
                                                     work_type_id, value, numeric_value, weight)
                           VALUES ($1, $2, $3, $4, 1, '4', 4, 1)""",
                        mark_id,
                        student,
                        lesson["id"],
                        lesson["date"],
                    )
                    written.append(mark_id)
                    await asyncio.sleep(rng.uniform(0, 0.03))
            await asyncio.sleep(rng.uniform(0, 0.02))
    finally:
        await conn.close()
    return written


async def free_mark_ids(owner_conn: asyncpg.Connection) -> int:
    """The first of a range of mark ids far above the journal's (for `teacher_marks`)."""
    value: int = await owner_conn.fetchval("SELECT max(id) + 1000001 FROM school.marks")
    return value

"""The change feed pushed over Server-Sent Events (graphql-sse), end to end: a teacher's
write through the owner connection reaches a parent's stream on a live server with the
right payload, for every kind of change; another family gets nothing of it; a removed
parent–child link stops delivery; a reconnect with `since` yields exactly what was
missed.

Every stream is first settled (tests.support.sse_client.settle): what a subscription
without a cursor gets before its settling mark was committed before the test began.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date
from typing import Any

import asyncpg
import httpx
import pytest

from fixtures.demo import demo_account
from gateway.core.settings import Settings
from tests.support.journal_writes import JournalWriter, journal_writes
from tests.support.live_server import LiveServer
from tests.support.planted import planted_parent
from tests.support.sse_client import DIARY_EVENTS, SseStream, key_of, settle, subscribed
from tests.support.tokens import link_removed, registry_children

TWO_SCHOOLS = "parent-two-schools"
ONE_SCHOOL = "parent-one-school"


@pytest.fixture
async def http(live: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as client:
        yield client


@pytest.fixture
async def writer(owner_conn: asyncpg.Connection) -> AsyncIterator[JournalWriter]:
    async with journal_writes(owner_conn) as journal:
        yield journal


async def children(owner_conn: asyncpg.Connection, key: str) -> list[int]:
    """A demo parent's children in the registries, by id."""
    snils = demo_account(key).snils
    assert snils is not None
    found = sorted(await registry_children(owner_conn, snils))
    assert found, key
    return found


def content(event: dict[str, Any]) -> dict[str, Any]:
    """An event without its cursor and time (checked to be there)."""
    assert isinstance(event["cursor"], str) and len(event["cursor"]) > 10, event
    assert isinstance(event["at"], str) and event["at"][:2] == "20", event
    return {key: value for key, value in event.items() if key not in ("cursor", "at")}


def iso(value: date) -> str:
    return value.isoformat()


@pytest.fixture
async def feed(
    http: httpx.AsyncClient,
    tokens: dict[str, str],
    owner_conn: asyncpg.Connection,
    writer: JournalWriter,
) -> AsyncIterator[tuple[SseStream, int]]:
    """parent-two-schools subscribed to all their children (settled on the first); the
    stream and that child."""
    child = (await children(owner_conn, TWO_SCHOOLS))[0]
    async with subscribed(http, DIARY_EVENTS, token=tokens[TWO_SCHOOLS]) as stream:
        await settle(stream, writer.add_mark, child)
        yield stream, child


# --- every kind of change reaches the parent -------------------------------------------


async def test_a_mark_added_changed_and_removed_reaches_the_parent(
    feed: tuple[SseStream, int], writer: JournalWriter, owner_conn: asyncpg.Connection
) -> None:
    stream, child = feed
    work_type = await owner_conn.fetchrow(
        "SELECT id, name FROM school.work_types WHERE id <> 1 ORDER BY id LIMIT 1"
    )
    assert work_type is not None
    mark_id = await writer.add_mark(
        child, value="4", work_type_id=work_type["id"], weight=2.0, work_title="Дроби: к/р"
    )
    row = await owner_conn.fetchrow(
        "SELECT m.lesson_id, m.date, s.name AS subject FROM school.marks m "
        "JOIN school.lessons l ON l.id = m.lesson_id "
        "JOIN school.subjects s ON s.id = l.subject_id WHERE m.id = $1",
        mark_id,
    )
    assert row is not None
    common = {
        "__typename": "MarkEvent",
        "studentId": str(child),
        "markId": str(mark_id),
        "date": iso(row["date"]),
        "lessonId": str(row["lesson_id"]),
    }
    mark = {
        "value": "4",
        "workType": {"name": work_type["name"]},
        "weight": 2.0,
        "workTitle": "Дроби: к/р",
        "subject": {"name": row["subject"]},
    }
    added = await stream.event()
    assert content(added) == {**common, "action": "ADDED", "mark": mark}

    await writer.change_mark(mark_id, "5")
    changed = await stream.event()
    assert content(changed) == {
        **common,
        "action": "CHANGED",
        "mark": {**mark, "value": "5"},
    }
    assert changed["cursor"] != added["cursor"]

    await writer.remove_mark(mark_id)
    removed = await stream.event()
    assert content(removed) == {**common, "action": "REMOVED", "mark": None}


async def test_an_attendance_record_reaches_the_parent(
    feed: tuple[SseStream, int], writer: JournalWriter, owner_conn: asyncpg.Connection
) -> None:
    stream, child = feed
    record_id = await writer.add_attendance(child, code="Б")
    row = await owner_conn.fetchrow(
        "SELECT lesson_id, date FROM school.attendance WHERE id = $1", record_id
    )
    assert row is not None
    event = await stream.event()
    assert content(event) == {
        "__typename": "AttendanceEvent",
        "studentId": str(child),
        "action": "ADDED",
        "date": iso(row["date"]),
        "lessonId": str(row["lesson_id"]),
        "attendanceId": str(record_id),
        "attendance": {"code": "Б", "kind": "ILL", "lessonId": str(row["lesson_id"])},
    }


async def _classmates(owner_conn: asyncpg.Connection) -> tuple[int, int, int]:
    """Two students of one class and one of another (none of them a demo child)."""
    rows = await owner_conn.fetch(
        """SELECT class_id, array_agg(id ORDER BY id) AS ids FROM school.students
           WHERE id NOT IN (SELECT student_id FROM school.parent_students ps
                            JOIN school.parents p ON p.id = ps.parent_id
                            WHERE p.snils = ANY($1::text[]))
           GROUP BY class_id HAVING count(*) >= 2 ORDER BY class_id LIMIT 2""",
        [demo_account(ONE_SCHOOL).snils, demo_account(TWO_SCHOOLS).snils],
    )
    assert len(rows) == 2
    return rows[0]["ids"][0], rows[0]["ids"][1], rows[1]["ids"][0]


async def test_homework_for_a_class_reaches_the_parent_once_per_child_in_it(
    http: httpx.AsyncClient,
    owner_conn: asyncpg.Connection,
    pool: asyncpg.Pool,
    settings: Settings,
    writer: JournalWriter,
) -> None:
    first, second, elsewhere = await _classmates(owner_conn)
    students = [first, second, elsewhere]
    async with (
        planted_parent(owner_conn, pool, settings, students, tag=140) as token,
        subscribed(http, DIARY_EVENTS, token=token) as stream,
    ):
        await settle(stream, writer.add_mark, elsewhere)
        homework_id = await writer.add_homework(first, text="Упр. 140, с. 12")
        row = await owner_conn.fetchrow(
            "SELECT h.lesson_id, h.assigned_on, h.due_on, s.name AS subject "
            "FROM school.homework h JOIN school.subjects s ON s.id = h.subject_id "
            "WHERE h.id = $1",
            homework_id,
        )
        assert row is not None
        events = sorted(await stream.events(2), key=lambda event: int(event["studentId"]))
        homework = {
            "text": "Упр. 140, с. 12",
            "assignedOn": iso(row["assigned_on"]),
            "dueOn": iso(row["due_on"]),
            "subject": {"name": row["subject"]},
        }
        assert [content(event) for event in events] == [
            {
                "__typename": "HomeworkEvent",
                "studentId": str(student),
                "action": "ADDED",
                "date": iso(row["assigned_on"]),
                "lessonId": str(row["lesson_id"]),
                "homeworkId": str(homework_id),
                "homework": homework,
            }
            for student in (first, second)
        ]
        # Nothing for the child of another class: the next event is this mark.
        mark_id = await writer.add_mark(elsewhere)
        assert key_of(await stream.event()) == (
            "MarkEvent",
            str(elsewhere),
            str(mark_id),
            "ADDED",
        )


async def _held_lesson(owner_conn: asyncpg.Connection, student_id: int) -> asyncpg.Record:
    row = await owner_conn.fetchrow(
        """SELECT l.id, l.date, l.room FROM school.lessons l
           JOIN school.students s ON s.class_id = l.class_id
           WHERE s.id = $1 AND l.status = 'held' ORDER BY l.date DESC, l.number LIMIT 1""",
        student_id,
    )
    assert row is not None
    return row


async def test_a_lesson_topic_reaches_the_parent(
    feed: tuple[SseStream, int], writer: JournalWriter, owner_conn: asyncpg.Connection
) -> None:
    stream, child = feed
    lesson = await _held_lesson(owner_conn, child)
    had_topic = await owner_conn.fetchval(
        "SELECT count(*) FROM school.lesson_topics WHERE lesson_id = $1", lesson["id"]
    )
    await writer.set_topic(lesson["id"], "Сложение дробей с разными знаменателями")
    event = await stream.event()
    assert content(event) == {
        "__typename": "LessonTopicEvent",
        "studentId": str(child),
        "action": "CHANGED" if had_topic else "ADDED",
        "date": iso(lesson["date"]),
        "lessonId": str(lesson["id"]),
        "topic": "Сложение дробей с разными знаменателями",
    }


async def test_a_lesson_moved_and_cancelled_reaches_the_parent(
    feed: tuple[SseStream, int], writer: JournalWriter, owner_conn: asyncpg.Connection
) -> None:
    stream, child = feed
    lesson = await _held_lesson(owner_conn, child)
    assert lesson["room"] != "Спортзал 2"
    common = {
        "__typename": "LessonEvent",
        "studentId": str(child),
        "action": "CHANGED",
        "date": iso(lesson["date"]),
        "lessonId": str(lesson["id"]),
    }
    await writer.move_lesson(lesson["id"], "Спортзал 2")
    moved = await stream.event()
    assert content(moved) == {
        **common,
        "lesson": {
            "id": str(lesson["id"]),
            "room": "Спортзал 2",
            "status": "HELD",
            "statusComment": None,
        },
    }
    await writer.cancel_lesson(lesson["id"], "Учитель на курсах")
    cancelled = await stream.event()
    assert content(cancelled) == {
        **common,
        "lesson": {
            "id": str(lesson["id"]),
            "room": "Спортзал 2",
            "status": "CANCELLED",
            "statusComment": "Учитель на курсах",
        },
    }


async def test_a_year_mark_reaches_the_parent(
    feed: tuple[SseStream, int], writer: JournalWriter, owner_conn: asyncpg.Connection
) -> None:
    stream, child = feed
    final_id = await writer.set_final_mark(child, "3")
    subject = await owner_conn.fetchval(
        "SELECT s.name FROM school.final_marks f JOIN school.subjects s ON s.id = f.subject_id "
        "WHERE f.id = $1",
        final_id,
    )
    event = await stream.event()
    assert content(event) == {
        "__typename": "FinalMarkEvent",
        "studentId": str(child),
        "action": "ADDED",
        "date": None,
        "lessonId": None,
        "finalMarkId": str(final_id),
        "finalMark": {"value": "3", "kind": "YEAR", "subject": {"name": subject}},
    }


# --- who gets what -----------------------------------------------------------------------


async def test_another_family_gets_nothing_of_it(
    http: httpx.AsyncClient,
    tokens: dict[str, str],
    owner_conn: asyncpg.Connection,
    writer: JournalWriter,
) -> None:
    victim = (await children(owner_conn, TWO_SCHOOLS))[0]
    own = (await children(owner_conn, ONE_SCHOOL))[0]
    classes = await owner_conn.fetch(
        "SELECT DISTINCT class_id FROM school.students WHERE id = ANY($1::int[])",
        [*await children(owner_conn, ONE_SCHOOL), victim],
    )
    assert len(classes) == len(await children(owner_conn, ONE_SCHOOL)) + 1  # no classmates
    async with (
        subscribed(http, DIARY_EVENTS, token=tokens[ONE_SCHOOL]) as other,
        subscribed(http, DIARY_EVENTS, token=tokens[TWO_SCHOOLS]) as family,
    ):
        await settle(other, writer.add_mark, own)
        await settle(family, writer.add_mark, victim)
        written = [
            ("MarkEvent", await writer.add_mark(victim)),
            ("AttendanceEvent", await writer.add_attendance(victim)),
            ("HomeworkEvent", await writer.add_homework(victim)),
        ]
        received = [key_of(event) for event in await family.events(3)]
        assert received == [(kind, str(victim), str(id_), "ADDED") for kind, id_ in written]
        mark_id = await writer.add_mark(own)
        assert key_of(await other.event()) == ("MarkEvent", str(own), str(mark_id), "ADDED")


async def test_a_removed_link_stops_delivery_for_that_child(
    http: httpx.AsyncClient,
    tokens: dict[str, str],
    owner_conn: asyncpg.Connection,
    writer: JournalWriter,
) -> None:
    kept, removed = await children(owner_conn, TWO_SCHOOLS)
    snils = demo_account(TWO_SCHOOLS).snils
    assert snils is not None
    async with subscribed(http, DIARY_EVENTS, token=tokens[TWO_SCHOOLS]) as stream:
        await settle(stream, writer.add_mark, kept)
        before = await writer.add_mark(removed)
        assert key_of(await stream.event()) == ("MarkEvent", str(removed), str(before), "ADDED")
        async with link_removed(owner_conn, snils, removed):
            hidden = await writer.add_mark(removed)
            await writer.add_attendance(removed)
            shown = await writer.add_mark(kept)
            assert key_of(await stream.event()) == ("MarkEvent", str(kept), str(shown), "ADDED")
            await writer.change_mark(hidden, "2")
            again = await writer.add_mark(kept)
            assert key_of(await stream.event()) == ("MarkEvent", str(kept), str(again), "ADDED")


# --- reconnecting -----------------------------------------------------------------------


async def test_reconnect_with_since_yields_exactly_the_missed_events(
    http: httpx.AsyncClient,
    tokens: dict[str, str],
    owner_conn: asyncpg.Connection,
    writer: JournalWriter,
) -> None:
    first, second = await children(owner_conn, TWO_SCHOOLS)
    token = tokens[TWO_SCHOOLS]
    async with subscribed(http, DIARY_EVENTS, token=token) as stream:
        await settle(stream, writer.add_mark, first)
        seen = await writer.add_mark(first)
        last = await stream.event()
        assert key_of(last) == ("MarkEvent", str(first), str(seen), "ADDED")
    # Disconnected: writes for both children.
    gone = await writer.add_mark(first)
    other = await writer.add_mark(second, value="3")
    await writer.change_mark(seen, "2")
    record = await writer.add_attendance(second, code="У")
    await writer.remove_mark(gone)
    missed = [
        ("MarkEvent", str(first), str(gone), "ADDED"),
        ("MarkEvent", str(second), str(other), "ADDED"),
        ("MarkEvent", str(first), str(seen), "CHANGED"),
        ("AttendanceEvent", str(second), str(record), "ADDED"),
        ("MarkEvent", str(first), str(gone), "REMOVED"),
    ]
    variables = {"since": last["cursor"]}
    async with subscribed(http, DIARY_EVENTS, variables, token=token) as stream:
        caught_up = await stream.events(len(missed))
        assert [key_of(event) for event in caught_up] == missed
        assert caught_up[2]["mark"]["value"] == "2"
        # Live again: the next write comes next, nothing missed is repeated.
        live_mark = await writer.add_mark(second)
        assert key_of(await stream.event()) == ("MarkEvent", str(second), str(live_mark), "ADDED")
    # From the middle of what was missed: exactly the rest.
    variables = {"since": caught_up[2]["cursor"]}
    async with subscribed(http, DIARY_EVENTS, variables, token=token) as stream:
        rest = [key_of(event) for event in await stream.events(3)]
        assert rest == [*missed[3:], ("MarkEvent", str(second), str(live_mark), "ADDED")]
        closing = await writer.add_mark(first)
        assert key_of(await stream.event()) == ("MarkEvent", str(first), str(closing), "ADDED")


async def test_student_ids_narrow_the_stream_to_those_children(
    http: httpx.AsyncClient,
    tokens: dict[str, str],
    owner_conn: asyncpg.Connection,
    writer: JournalWriter,
) -> None:
    chosen, left_out = await children(owner_conn, TWO_SCHOOLS)
    variables = {"ids": [str(chosen)]}
    async with subscribed(http, DIARY_EVENTS, variables, token=tokens[TWO_SCHOOLS]) as stream:
        await settle(stream, writer.add_mark, chosen)
        await writer.add_mark(left_out)
        await writer.add_attendance(left_out)
        mark_id = await writer.add_mark(chosen)
        assert key_of(await stream.event()) == ("MarkEvent", str(chosen), str(mark_id), "ADDED")


async def test_a_student_gets_their_own_changes_only(
    http: httpx.AsyncClient,
    tokens: dict[str, str],
    owner_conn: asyncpg.Connection,
    writer: JournalWriter,
) -> None:
    """student-older is the second child of parent-two-schools."""
    sibling, herself = await children(owner_conn, TWO_SCHOOLS)
    own = await owner_conn.fetchval(
        "SELECT id FROM school.students WHERE snils = $1", demo_account("student-older").snils
    )
    assert own == herself
    async with subscribed(http, DIARY_EVENTS, token=tokens["student-older"]) as stream:
        await settle(stream, writer.add_mark, herself)
        await writer.add_mark(sibling)
        mark_id = await writer.add_mark(herself, value="5")
        event = await stream.event()
        assert key_of(event) == ("MarkEvent", str(herself), str(mark_id), "ADDED")
        assert event["mark"]["value"] == "5"


async def test_a_page_cursor_of_diary_changes_resumes_the_stream(
    http: httpx.AsyncClient,
    tokens: dict[str, str],
    owner_conn: asyncpg.Connection,
    writer: JournalWriter,
) -> None:
    first, second = await children(owner_conn, TWO_SCHOOLS)
    token = tokens[TWO_SCHOOLS]
    page = await http.post(
        "/graphql",
        json={"query": "{ diaryChanges { cursor events { cursor } } }"},
        headers={"Authorization": f"Bearer {token}"},
    )
    now = page.json()["data"]["diaryChanges"]
    assert now["events"] == []
    marks = [await writer.add_mark(first), await writer.add_mark(second)]
    async with subscribed(http, DIARY_EVENTS, {"since": now["cursor"]}, token=token) as stream:
        assert [key_of(event) for event in await stream.events(2)] == [
            ("MarkEvent", str(student), str(mark), "ADDED")
            for student, mark in zip((first, second), marks, strict=True)
        ]
        latest = await writer.add_mark(first)
        assert key_of(await stream.event()) == ("MarkEvent", str(first), str(latest), "ADDED")

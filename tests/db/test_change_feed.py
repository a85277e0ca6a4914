"""`diaryChanges` through the app: paging a burst, payloads, class changes, scope, cursors
and the access audit.

A teacher's writes go through the owner connection straight into the `school` tables
(tests/support/journal_writes.py, undone on exit); the expected changes are the owner's
reading of the change log (`school_changes.events`) and of the school tables. Every test
starts from a cursor of its own ("now"), so the changes other tests leave behind (their
undo writes) never reach it.
"""

from __future__ import annotations

import time
from typing import Any

import asyncpg
import httpx
from starlette.applications import Starlette

from auth.store.audit import Recorder
from gateway.core.settings import Settings
from resolvers.changes.cursor import CursorCodec, Position, Snapshot, at_snapshot
from resolvers.changes.service import ChangeFeed
from tests.support.change_pages import (
    CHANGES_QUERY,
    ask_changes,
    changes_page,
    children_of,
    codes,
    key,
    last_change_id,
    logged,
    operation,
    page_to_end,
)
from tests.support.journal_writes import JournalWriter, journal_writes
from tests.support.planted import planted_parent
from tests.support.recorder_fixtures import audit_rows, op

FAMILY = "parent-two-schools"
OTHER_FAMILY = "parent-one-school"


async def burst(
    writer: JournalWriter, students: list[int], *, transactions: int, each: int
) -> None:
    """`transactions` transactions of `each` writes: marks and attendance records, by turns
    for each of the students."""
    for t in range(transactions):
        async with writer.conn.transaction():
            for i in range(each):
                student = students[(t + i) % len(students)]
                if i % 2 == 0:
                    await writer.add_mark(student, value=str(2 + i % 4), weight=1.0 + i % 3)
                else:
                    await writer.add_attendance(student, code="Н" if i % 3 else "Б")


# --- paging ------------------------------------------------------------------------------


async def test_without_since_no_events_and_a_cursor_of_now(
    client: httpx.AsyncClient, tokens: dict[str, str], owner_conn: asyncpg.Connection
) -> None:
    token = tokens[FAMILY]
    kids = await children_of(client, token)
    async with journal_writes(owner_conn) as writer:
        await writer.add_mark(kids[0])  # a change before "now": never given
        page = await changes_page(client, token)
        assert page["events"] == [] and page["hasMore"] is False
        mark_id = await writer.add_mark(kids[0], value="3")
        after = await changes_page(client, token, since=page["cursor"])
    assert [(e["markId"], e["mark"]["value"]) for e in after["events"]] == [(str(mark_id), "3")]


async def test_a_burst_pages_through_once_in_order(
    client: httpx.AsyncClient, tokens: dict[str, str], owner_conn: asyncpg.Connection
) -> None:
    token = tokens[FAMILY]
    kids = await children_of(client, token)
    assert len(kids) == 2
    start = await changes_page(client, token)
    before = await last_change_id(owner_conn)
    async with journal_writes(owner_conn) as writer:
        await burst(writer, kids, transactions=6, each=20)
        expected = await logged(owner_conn, before, kids)
        events, pages = await page_to_end(client, token, start["cursor"], first=7)
        assert len(expected) == 120
        assert [key(e) for e in events] == expected
        assert {int(e["studentId"]) for e in events} == set(kids)
        assert [len(p["events"]) for p in pages] == [7] * 17 + [1]
        assert [p["hasMore"] for p in pages] == [True] * 17 + [False]
        assert len({e["cursor"] for e in events}) == 120

        # The last page's cursor: an empty page, and its cursor still works.
        empty = await changes_page(client, token, since=pages[-1]["cursor"], first=7)
        assert (empty["events"], empty["hasMore"]) == ([], False)
        mark_id = await writer.add_mark(kids[1], value="2")
        for since in (pages[-1]["cursor"], empty["cursor"]):
            late = await changes_page(client, token, since=since, first=7)
            assert [key(e) for e in late["events"]] == [("mark", mark_id, kids[1], "added")]


async def test_an_events_cursor_resumes_right_after_it(
    client: httpx.AsyncClient, tokens: dict[str, str], owner_conn: asyncpg.Connection
) -> None:
    token = tokens[FAMILY]
    kids = await children_of(client, token)
    start = await changes_page(client, token)
    async with journal_writes(owner_conn) as writer:
        await burst(writer, kids, transactions=2, each=6)
        events, _ = await page_to_end(client, token, start["cursor"], first=5)
        assert len(events) == 12
        for index in (0, 3, 4, 7, 11):
            rest, _ = await page_to_end(client, token, events[index]["cursor"], first=5)
            assert [key(e) for e in rest] == [key(e) for e in events[index + 1 :]], index


async def test_each_kind_carries_the_row_as_in_the_school_tables(
    client: httpx.AsyncClient, tokens: dict[str, str], owner_conn: asyncpg.Connection
) -> None:
    token = tokens[FAMILY]
    kids = await children_of(client, token)
    start = await changes_page(client, token)
    async with journal_writes(owner_conn) as writer:
        mark_id = await writer.add_mark(
            kids[0], value="4", weight=2.0, work_title="Контрольная по дробям"
        )
        record_id = await writer.add_attendance(kids[1], code="Б")
        homework_id = await writer.add_homework(kids[1], text="Параграф 12, вопросы 1-3")
        lesson = await writer.lesson_of(kids[0])
        await writer.set_topic(lesson["id"], "Сложение дробей")
        await writer.move_lesson(lesson["id"], "каб. 214")
        await writer.cancel_lesson(lesson["id"], "Учитель на курсах")
        final_id = await writer.set_final_mark(kids[1], "5")
        events, _ = await page_to_end(client, token, start["cursor"])
        by_type: dict[str, list[dict[str, Any]]] = {}
        for event in events:
            by_type.setdefault(event["__typename"], []).append(event)

        mark = await owner_conn.fetchrow(
            "SELECT value, weight, work_title, work_type_id, lesson_id, date, student_id "
            "FROM school.marks WHERE id = $1",
            mark_id,
        )
        (mark_event,) = by_type["MarkEvent"]
        assert mark_event["action"] == "ADDED" and mark_event["markId"] == str(mark_id)
        assert mark_event["studentId"] == str(mark["student_id"]) == str(kids[0])
        assert mark_event["lessonId"] == str(mark["lesson_id"])
        assert mark_event["date"] == mark["date"].isoformat()
        assert mark_event["mark"] == {
            "id": str(mark_id),
            "value": mark["value"],
            "weight": float(mark["weight"]),
            "workTitle": "Контрольная по дробям",
            "workType": {"id": str(mark["work_type_id"])},
        }
        assert (mark["value"], float(mark["weight"])) == ("4", 2.0)

        record = await owner_conn.fetchrow(
            "SELECT code, lesson_id FROM school.attendance WHERE id = $1", record_id
        )
        (record_event,) = by_type["AttendanceEvent"]
        assert record_event["studentId"] == str(kids[1])
        assert record_event["attendance"]["code"] == record["code"] == "Б"
        assert record_event["attendance"]["lessonId"] == str(record["lesson_id"])

        homework = await owner_conn.fetchrow(
            "SELECT text, due_on, lesson_id FROM school.homework WHERE id = $1", homework_id
        )
        (homework_event,) = by_type["HomeworkEvent"]
        assert homework_event["studentId"] == str(kids[1])
        assert homework_event["homework"]["text"] == homework["text"]
        assert homework_event["homework"]["dueOn"] == homework["due_on"].isoformat()
        assert homework_event["lessonId"] == str(homework["lesson_id"])

        (topic_event,) = by_type["LessonTopicEvent"]
        assert (topic_event["lessonId"], topic_event["topic"]) == (
            str(lesson["id"]),
            "Сложение дробей",
        )

        # Moved, then cancelled: both events show the lesson as it is now.
        room, status, comment = await owner_conn.fetchrow(
            "SELECT room, status, status_comment FROM school.lessons WHERE id = $1", lesson["id"]
        )
        lesson_events = by_type["LessonEvent"]
        assert len(lesson_events) == 2
        for event in lesson_events:
            assert event["lesson"] == {
                "id": str(lesson["id"]),
                "room": room,
                "status": status.upper(),
                "statusComment": comment,
            }
        assert (room, status, comment) == ("каб. 214", "cancelled", "Учитель на курсах")

        final = await owner_conn.fetchrow(
            "SELECT value, kind FROM school.final_marks WHERE id = $1", final_id
        )
        (final_event,) = by_type["FinalMarkEvent"]
        assert final_event["finalMarkId"] == str(final_id)
        assert final_event["finalMark"] == {
            "id": str(final_id),
            "value": final["value"],
            "kind": final["kind"].upper(),
        }
        assert sorted(by_type) == sorted(
            [
                "MarkEvent",
                "AttendanceEvent",
                "HomeworkEvent",
                "LessonTopicEvent",
                "LessonEvent",
                "FinalMarkEvent",
            ]
        )


async def test_a_removed_mark_is_removed_with_no_mark(
    client: httpx.AsyncClient, tokens: dict[str, str], owner_conn: asyncpg.Connection
) -> None:
    token = tokens[FAMILY]
    kids = await children_of(client, token)
    async with journal_writes(owner_conn) as writer:
        mark_id = await writer.add_mark(kids[0], value="5")
        start = await changes_page(client, token)
        await writer.change_mark(mark_id, "3")
        changed = await changes_page(client, token, since=start["cursor"])
        await writer.remove_mark(mark_id)
        removed = await changes_page(client, token, since=changed["cursor"])
    (change,) = changed["events"]
    assert (change["action"], change["mark"]["value"]) == ("CHANGED", "3")
    (event,) = removed["events"]
    assert event["__typename"] == "MarkEvent"
    assert (event["action"], event["markId"], event["mark"]) == ("REMOVED", str(mark_id), None)
    assert event["studentId"] == str(kids[0])


async def test_removed_rows_of_every_kind_come_with_no_payload(
    client: httpx.AsyncClient, tokens: dict[str, str], owner_conn: asyncpg.Connection
) -> None:
    token = tokens[FAMILY]
    kids = await children_of(client, token)
    async with journal_writes(owner_conn) as writer:
        record_id = await writer.add_attendance(kids[0])
        homework_id = await writer.add_homework(kids[0])
        final_id = await writer.set_final_mark(kids[0])
        lesson = await writer.lesson_of(kids[0])
        await writer.set_topic(lesson["id"], "Тема, которую уберут")
        start = await changes_page(client, token)
        for statement, value in (
            ("DELETE FROM school.attendance WHERE id = $1", record_id),
            ("DELETE FROM school.homework WHERE id = $1", homework_id),
            ("DELETE FROM school.final_marks WHERE id = $1", final_id),
            ("DELETE FROM school.lesson_topics WHERE lesson_id = $1", lesson["id"]),
        ):
            await owner_conn.execute(statement, value)
        events, _ = await page_to_end(client, token, start["cursor"])
    assert [key(e) for e in events] == [
        ("attendance", record_id, kids[0], "removed"),
        ("homework", homework_id, kids[0], "removed"),
        ("final_mark", final_id, kids[0], "removed"),
        ("lesson_topic", lesson["id"], kids[0], "removed"),
    ]
    fields = ("attendance", "homework", "finalMark", "topic")
    assert [event[name] for event, name in zip(events, fields, strict=True)] == [None] * 4


async def _classmates(owner_conn: asyncpg.Connection) -> tuple[list[int], int]:
    """Two students of one class (grades with marks) and a student of another class."""
    rows = await owner_conn.fetch(
        """SELECT s.class_id, array_agg(s.id ORDER BY s.id) AS ids
           FROM school.students s JOIN school.classes c ON c.id = s.class_id
           WHERE c.grade BETWEEN 3 AND 9
           GROUP BY s.class_id HAVING count(*) >= 2 ORDER BY s.class_id LIMIT 2"""
    )
    return list(rows[0]["ids"][:2]), rows[1]["ids"][0]


async def test_a_class_change_comes_once_per_child_in_the_class(
    client: httpx.AsyncClient,
    owner_conn: asyncpg.Connection,
    pool: asyncpg.Pool,
    settings: Settings,
) -> None:
    pair, elsewhere = await _classmates(owner_conn)
    students = [*pair, elsewhere]
    async with planted_parent(owner_conn, pool, settings, students, tag=240) as token:
        start = await changes_page(client, token)
        async with journal_writes(owner_conn) as writer:
            homework_id = await writer.add_homework(pair[0], text="Выучить стихотворение")
            lesson = await writer.lesson_of(pair[1])
            await writer.set_topic(lesson["id"], "Стихи Пушкина")
            events, _ = await page_to_end(client, token, start["cursor"], first=3)
    assert [key(e)[:3] for e in events] == [
        ("homework", homework_id, pair[0]),
        ("homework", homework_id, pair[1]),
        ("lesson_topic", lesson["id"], pair[0]),
        ("lesson_topic", lesson["id"], pair[1]),
    ]
    assert {e["homework"]["text"] for e in events[:2]} == {"Выучить стихотворение"}
    assert {e["topic"] for e in events[2:]} == {"Стихи Пушкина"}
    assert len({e["cursor"] for e in events}) == 4


# --- scope ---------------------------------------------------------------------------------


async def test_another_familys_students_are_forbidden(
    client: httpx.AsyncClient, tokens: dict[str, str], owner_conn: asyncpg.Connection
) -> None:
    token = tokens[FAMILY]
    mine = await children_of(client, token)
    theirs = await children_of(client, tokens[OTHER_FAMILY])
    start = await changes_page(client, token)
    async with journal_writes(owner_conn) as writer:
        await writer.add_mark(theirs[0])
        await writer.add_mark(mine[0])
        for ids in ([theirs[0]], [mine[0], theirs[0]], [999_999_999]):
            payload = await ask_changes(client, token, since=start["cursor"], student_ids=ids)
            assert codes(payload) == ["FORBIDDEN"], ids
            assert payload["data"] is None
        own = await changes_page(client, token, since=start["cursor"], student_ids=[mine[0]])
    assert [int(e["studentId"]) for e in own["events"]] == [mine[0]]


async def test_only_families_may_ask(
    client: httpx.AsyncClient, tokens: dict[str, str], owner_conn: asyncpg.Connection
) -> None:
    kids = await children_of(client, tokens[FAMILY])
    start = await changes_page(client, tokens[FAMILY])
    async with journal_writes(owner_conn) as writer:
        await writer.add_mark(kids[0])
        for token, code in (
            (tokens["school-admin"], "FORBIDDEN"),
            (tokens["regional-analyst"], "FORBIDDEN"),
            # A full page is over an anonymous request's cost budget: refused before it runs.
            (None, "QUERY_TOO_COSTLY"),
        ):
            payload = await ask_changes(client, token, since=start["cursor"])
            assert codes(payload) == [code]
            assert payload.get("data") is None
        cheap = "query($since: ChangeCursor) { diaryChanges(since: $since) { cursor } }"
        payload = await ask_changes(client, None, since=start["cursor"], query=cheap)
        assert codes(payload) == ["UNAUTHENTICATED"]
        assert payload["data"] is None


async def test_a_parent_never_gets_another_familys_changes(
    client: httpx.AsyncClient, tokens: dict[str, str], owner_conn: asyncpg.Connection
) -> None:
    token, other = tokens[FAMILY], tokens[OTHER_FAMILY]
    mine = await children_of(client, token)
    theirs = await children_of(client, other)
    assert not set(mine) & set(theirs)
    start, other_start = await changes_page(client, token), await changes_page(client, other)
    async with journal_writes(owner_conn) as writer:
        their_mark = await writer.add_mark(theirs[0])
        their_homework = await writer.add_homework(theirs[1])
        my_mark = await writer.add_mark(mine[1])
        await writer.add_attendance(theirs[1])
        events, _ = await page_to_end(client, token, start["cursor"], first=2)
        their_events, _ = await page_to_end(client, other, other_start["cursor"], first=2)
    assert [key(e) for e in events] == [("mark", my_mark, mine[1], "added")]
    assert {int(e["studentId"]) for e in their_events} == set(theirs)
    assert ("mark", their_mark, theirs[0], "added") in [key(e) for e in their_events]
    assert ("homework", their_homework, theirs[1], "added") in [key(e) for e in their_events]


# --- cursors -------------------------------------------------------------------------------


def _feed(app: Starlette) -> ChangeFeed:
    feed = app.state.services.changes
    assert isinstance(feed, ChangeFeed)
    return feed


def _tampered(cursor: str) -> list[str]:
    body, mac = cursor.split(".")
    middle = len(body) // 2
    other = "A" if body[middle] != "A" else "B"
    flipped_mac = ("A" if mac[0] != "A" else "B") + mac[1:]
    return [
        body[:middle] + other + body[middle + 1 :] + "." + mac,
        body + "." + flipped_mac,
        cursor[: len(cursor) // 2],
        body,
        "не курсор",
        "x" * 20_000,
        cursor + cursor,
    ]


async def test_a_tampered_cursor_is_bad_user_input(
    client: httpx.AsyncClient, tokens: dict[str, str], settings: Settings
) -> None:
    token = tokens[FAMILY]
    start = await changes_page(client, token)
    for cursor in _tampered(start["cursor"]):
        payload = await ask_changes(client, token, since=cursor)
        assert codes(payload) == ["BAD_USER_INPUT"], cursor[:80]
        assert payload["data"] is None
        assert "Курсор" in payload["errors"][0]["message"]
    stranger = CursorCodec("another-secret-another-secret-0123456789", max_age_s=3600)
    position = at_snapshot(Snapshot(1, 2), int(time.time()))
    foreign = await ask_changes(client, token, since=stranger.encode(position))
    assert codes(foreign) == ["BAD_USER_INPUT"]


async def test_an_expired_cursor_is_refused(
    app: Starlette,
    client: httpx.AsyncClient,
    tokens: dict[str, str],
    owner_conn: asyncpg.Connection,
) -> None:
    token = tokens[FAMILY]
    codec = _feed(app).codec
    start = await changes_page(client, token)
    now = codec.decode(start["cursor"], now=time.time())
    old = Position(now.base, now.base_at - codec.max_age_s - 60)
    payload = await ask_changes(client, token, since=codec.encode(old))
    assert codes(payload) == ["CURSOR_EXPIRED"]
    assert payload["data"] is None
    just_in_time = Position(now.base, int(time.time()) - codec.max_age_s + 60)
    assert "errors" not in await ask_changes(client, token, since=codec.encode(just_in_time))


async def test_the_page_size_is_bounded(client: httpx.AsyncClient, tokens: dict[str, str]) -> None:
    token = tokens[FAMILY]
    start = await changes_page(client, token)
    for first in (0, -1, 201):
        payload = await ask_changes(client, token, since=start["cursor"], first=first)
        assert codes(payload) == ["LIMIT_OUT_OF_RANGE"], first
        assert payload["data"] is None
    for first in (1, 200):
        assert "errors" not in await ask_changes(client, token, since=start["cursor"], first=first)


# --- audit ---------------------------------------------------------------------------------


async def test_a_request_is_audited_with_the_students_it_returned(
    app: Starlette,
    client: httpx.AsyncClient,
    tokens: dict[str, str],
    owner_conn: asyncpg.Connection,
) -> None:
    token = tokens[FAMILY]
    kids = await children_of(client, token)
    recorder: Recorder = app.state.auth.recorder
    name = op("Changes")
    query = operation(CHANGES_QUERY, name)
    start = await changes_page(client, token)
    async with journal_writes(owner_conn) as writer:
        await writer.add_mark(kids[1])
        await writer.add_mark(kids[1])
        one = await ask_changes(client, token, since=start["cursor"], query=query)
        assert len(one["data"]["diaryChanges"]["events"]) == 2
        await writer.add_attendance(kids[0])
        await writer.add_mark(kids[1])
        cursor = one["data"]["diaryChanges"]["cursor"]
        both = await ask_changes(client, token, since=cursor, query=query)
        assert len(both["data"]["diaryChanges"]["events"]) == 2
        empty = await ask_changes(
            client, token, since=both["data"]["diaryChanges"]["cursor"], query=query
        )
        assert empty["data"]["diaryChanges"]["events"] == []
    rows = await audit_rows(owner_conn, recorder, name)
    assert [list(row["student_ids"]) for row in rows] == [[kids[1]], sorted(kids)]
    assert {row["role"] for row in rows} == {"PARENT"}


async def test_a_long_student_list_is_refused_before_it_is_read(
    client: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    """A family names a few students; 51 ids (even all the viewer's own) are refused."""
    token = tokens[FAMILY]
    kids = await children_of(client, token)
    start = await changes_page(client, token)
    payload = await ask_changes(client, token, since=start["cursor"], student_ids=kids * 26)
    assert codes(payload) == ["LIMIT_OUT_OF_RANGE"]
    assert payload["data"] is None
    fine = await ask_changes(client, token, since=start["cursor"], student_ids=kids * 25)
    assert "errors" not in fine, fine

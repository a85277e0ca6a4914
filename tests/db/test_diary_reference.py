"""The diary's reference data (resolvers/diary/reference.py): subjects, teachers and bells
named from a per-process copy kept current by the students statement.

Checked against the `school` tables directly (as the owner): every lesson's subject,
teacher, replacement and bell times; a renamed teacher shows on the very next request
(response cache on); a copy lacking an id reads the missing names once; the students
statement sends the reference data only to a copy of another version.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from starlette.applications import Starlette

from auth.store.accounts import ensure_demo_account, load_viewer
from fixtures.demo import demo_account
from gateway.app import create_app
from gateway.core.db import counting_statements
from gateway.core.settings import Settings
from resolvers.diary import sql as data
from resolvers.diary.loaders import Loaders
from resolvers.diary.reference import (
    ReferenceCache,
    ReferenceData,
    RequestReference,
    parse_reference,
)
from resolvers.diary.sql import StudentRange
from tests.support.environment import TODAY
from tests.support.planted import planted_parent, post_graphql
from tests.support.statements import application_statements

NAMES_BY_ID = "JOIN diary_api.teachers t ON t.id = k.id"  # the missing names' statement
FIRST = TODAY - timedelta(days=30)
WINDOW = {"from": FIRST.isoformat(), "to": TODAY.isoformat()}

LESSONS_QUERY = """
query ReferenceLessons($from: Date!, $to: Date!) {
  myChildren {
    id
    diary(from: $from, to: $to) {
      lessons {
        id status startsAt endsAt subject { id name } teacher { id name }
        replacement { subject { id name } teacher { id name } }
      }
    }
  }
}
"""

EXPECTED_SQL = """
SELECT l.id, l.status, b.starts_at, b.ends_at, sub.id AS subject_id, sub.name AS subject,
       t.id AS teacher_id, concat_ws(' ', t.last_name, t.first_name, t.patronymic) AS teacher,
       rsub.name AS replacement_subject,
       concat_ws(' ', rt.last_name, rt.first_name, rt.patronymic) AS replacement_teacher
FROM school.lessons l
JOIN school.classes c ON c.id = l.class_id
JOIN school.subjects sub ON sub.id = l.subject_id
JOIN school.teachers t ON t.id = l.teacher_id
LEFT JOIN school.bell_schedule b ON b.school_id = c.school_id AND b.lesson_number = l.number
LEFT JOIN school.subjects rsub ON rsub.id = l.replacement_subject_id
LEFT JOIN school.teachers rt ON rt.id = l.replacement_teacher_id
WHERE l.class_id = ANY($1::int[]) AND l.date BETWEEN $2 AND $3
"""


async def _two_schools_children(owner_conn: asyncpg.Connection) -> list[int]:
    """A student in each of two schools whose classes had a replaced lesson lately."""
    rows = await owner_conn.fetch(
        """SELECT DISTINCT ON (st.school_id) st.id
           FROM school.students st
           WHERE EXISTS (SELECT 1 FROM school.lessons l
                         WHERE l.class_id = st.class_id AND l.status = 'replaced'
                           AND l.date BETWEEN $1 AND $2)
           ORDER BY st.school_id, st.id LIMIT 2""",
        FIRST,
        TODAY,
    )
    assert len(rows) == 2, "the data set has replaced lessons in two schools"
    return [row["id"] for row in rows]


def _time(value: Any) -> str | None:
    return None if value is None else value.isoformat()


async def test_names_and_bells_are_the_tables(
    client: httpx.AsyncClient,
    owner_conn: asyncpg.Connection,
    pool: asyncpg.Pool,
    settings: Settings,
) -> None:
    students = await _two_schools_children(owner_conn)
    classes = [
        row["class_id"]
        for row in await owner_conn.fetch(
            "SELECT class_id FROM school.students WHERE id = ANY($1::int[])", students
        )
    ]
    async with planted_parent(owner_conn, pool, settings, students, tag=40) as token:
        payload = await post_graphql(client, token, LESSONS_QUERY, WINDOW)
    assert "errors" not in payload, payload
    shown = {
        int(lesson["id"]): lesson
        for child in payload["data"]["myChildren"]
        for lesson in child["diary"]["lessons"]
    }
    expected = await owner_conn.fetch(EXPECTED_SQL, classes, FIRST, TODAY)
    assert len(shown) == len(expected) > 20
    replaced = 0
    for row in expected:
        lesson = shown[row["id"]]
        assert lesson["subject"] == {"id": str(row["subject_id"]), "name": row["subject"]}
        assert lesson["teacher"] == {"id": str(row["teacher_id"]), "name": row["teacher"]}
        assert (lesson["startsAt"], lesson["endsAt"]) == (
            _time(row["starts_at"]),
            _time(row["ends_at"]),
        )
        if row["status"] == "replaced":
            replaced += 1
            assert lesson["replacement"]["subject"]["name"] == (
                row["replacement_subject"] or row["subject"]
            )
            assert lesson["replacement"]["teacher"]["name"] == (
                row["replacement_teacher"] or row["teacher"]
            )
    assert replaced > 0


async def test_a_renamed_teacher_shows_on_the_next_request(
    app: Starlette,
    client: httpx.AsyncClient,
    owner_conn: asyncpg.Connection,
    pool: asyncpg.Pool,
    settings: Settings,
) -> None:
    """The rename changes the journal and reference versions: the cached response is not
    served and the
    process's copy of the names is replaced, in the statements the request sends anyway."""
    students = await _two_schools_children(owner_conn)
    async with planted_parent(owner_conn, pool, settings, students[:1], tag=41) as token:
        before = await post_graphql(client, token, LESSONS_QUERY, WINDOW)
        lesson = before["data"]["myChildren"][0]["diary"]["lessons"][0]
        teacher_id = int(lesson["teacher"]["id"])
        old = await owner_conn.fetchrow(
            "SELECT last_name FROM school.teachers WHERE id = $1", teacher_id
        )
        assert old is not None
        await owner_conn.execute(
            "UPDATE school.teachers SET last_name = 'Переименованная' WHERE id = $1", teacher_id
        )
        try:
            with counting_statements(keep_text=True) as counter:
                after = await post_graphql(client, token, LESSONS_QUERY, WINDOW)
        finally:
            await owner_conn.execute(
                "UPDATE school.teachers SET last_name = $2 WHERE id = $1",
                teacher_id,
                old["last_name"],
            )
        restored = await post_graphql(client, token, LESSONS_QUERY, WINDOW)
    names = {
        item["teacher"]["name"]
        for item in after["data"]["myChildren"][0]["diary"]["lessons"]
        if int(item["teacher"]["id"]) == teacher_id
    }
    assert len(names) == 1 and next(iter(names)).startswith("Переименованная ")
    assert not any(NAMES_BY_ID in text for text in counter.statements)
    assert restored == before
    assert app.state.services.reference.current.version is not None


async def _viewer_loaders(
    pool: asyncpg.Pool, account_id: str, reference: ReferenceCache
) -> Loaders:
    viewer = await load_viewer(pool, account_id)
    assert viewer is not None
    return Loaders(pool, viewer, reference)


async def test_a_copy_lacking_an_id_reads_the_missing_names_once(pool: asyncpg.Pool) -> None:
    account_id = await ensure_demo_account(pool, demo_account("student-young"))
    viewer = await load_viewer(pool, account_id)
    assert viewer is not None
    (student_id,) = viewer.student_ids
    reference = ReferenceCache()
    key = StudentRange(student_id, FIRST, TODAY)
    warm = await _viewer_loaders(pool, account_id, reference)
    await warm.student_by_id.load(key.student_id)
    lessons = await warm.lessons_by_student_range.load(key)
    assert lessons and reference.current.version is not None
    teacher = lessons[0].teacher
    copy = reference.current
    teachers = {i: t for i, t in copy.teachers.items() if i != int(teacher.id)}
    reference.current = dataclasses.replace(copy, teachers=teachers)

    stale = await _viewer_loaders(pool, account_id, reference)
    with counting_statements(keep_text=True) as counter:
        again = await stale.lessons_by_student_range.load(key)
    assert [lesson.teacher for lesson in again] == [lesson.teacher for lesson in lessons]
    assert sum(NAMES_BY_ID in text for text in counter.statements) == 1
    assert int(teacher.id) in reference.current.teachers

    current = await _viewer_loaders(pool, account_id, reference)
    with counting_statements(keep_text=True) as counter:
        await current.lessons_by_student_range.load(key)
    assert not any(NAMES_BY_ID in text for text in counter.statements)


async def test_the_students_statement_sends_the_data_only_to_another_version(
    owner_conn: asyncpg.Connection, pool: asyncpg.Pool
) -> None:
    student_id = await owner_conn.fetchval("SELECT min(id) FROM school.students")
    (fresh,) = await data.get_students_by_ids(
        pool, student_ids=[student_id], reference_version=None
    )
    assert fresh["reference"] is not None
    version = fresh["reference_version"]
    (same,) = await data.get_students_by_ids(
        pool, student_ids=[student_id], reference_version=version
    )
    assert same["reference"] is None and same["reference_version"] == version
    (other,) = await data.get_students_by_ids(
        pool, student_ids=[student_id], reference_version=version - 1
    )
    assert other["reference"] == fresh["reference"]
    cache = ReferenceCache()
    cache.received(ReferenceData(), version, fresh["reference"])
    counts = await owner_conn.fetchrow(
        """SELECT (SELECT count(*) FROM school.teachers) AS teachers,
                  (SELECT count(*) FROM school.bell_schedule) AS bells,
                  (SELECT count(*) FROM school.work_types) AS work_types,
                  (SELECT count(*) FROM school.subjects) AS subjects"""
    )
    copy = cache.current
    assert (len(copy.teachers), len(copy.bells), len(copy.work_types), len(copy.subjects)) == (
        counts["teachers"],
        counts["bells"],
        counts["work_types"],
        counts["subjects"],
    )


MARKS_QUERY = """
query ReferenceMarks($id: ID!) {
  student(id: $id) {
    marks(first: 500) { id subject { id name } workType { id name shortName weight } }
  }
}
"""


async def test_marks_name_their_subject_and_work_type_as_the_tables(
    gql: Any, owner_conn: asyncpg.Connection, pool: asyncpg.Pool
) -> None:
    account_id = await ensure_demo_account(pool, demo_account("student-older"))
    viewer = await load_viewer(pool, account_id)
    assert viewer is not None
    (student_id,) = viewer.student_ids
    payload = await gql(MARKS_QUERY, {"id": str(student_id)}, account="student-older")
    marks = payload["data"]["student"]["marks"]
    expected = {
        row["id"]: row
        for row in await owner_conn.fetch(
            """SELECT m.id, sub.id AS subject_id, sub.name AS subject, w.id AS work_type_id,
                      w.name AS work_type, w.short_name, w.weight
               FROM school.marks m JOIN school.lessons l ON l.id = m.lesson_id
               JOIN school.subjects sub ON sub.id = l.subject_id
               JOIN school.work_types w ON w.id = m.work_type_id
               WHERE m.student_id = $1""",
            student_id,
        )
    }
    assert len(marks) > 20
    for mark in marks:
        row = expected[int(mark["id"])]
        assert mark["subject"] == {"id": str(row["subject_id"]), "name": row["subject"]}
        assert mark["workType"] == {
            "id": str(row["work_type_id"]),
            "name": row["work_type"],
            "shortName": row["short_name"],
            "weight": float(row["weight"]),
        }


async def test_a_request_names_rows_from_the_copy_its_students_statement_saw(
    pool: asyncpg.Pool,
) -> None:
    """Another request replacing the process's copy with an older one (its students
    statement answered late) does not change the names of a request already running."""
    account_id = await ensure_demo_account(pool, demo_account("student-young"))
    viewer = await load_viewer(pool, account_id)
    assert viewer is not None
    (student_id,) = viewer.student_ids
    key = StudentRange(student_id, FIRST, TODAY)
    reference = ReferenceCache()
    await (await _viewer_loaders(pool, account_id, reference)).student_by_id.load(student_id)
    current = reference.current

    running = await _viewer_loaders(pool, account_id, reference)
    await running.student_by_id.load(student_id)  # sends the current version: no data back
    older = {i: dataclasses.replace(t, name="Устаревшее Имя") for i, t in current.teachers.items()}
    reference.current = dataclasses.replace(current, teachers=older)  # a late, older answer
    lessons = await running.lessons_by_student_range.load(key)
    assert lessons and all(lesson.teacher.name != "Устаревшее Имя" for lesson in lessons)
    assert {lesson.teacher.name for lesson in lessons} <= {
        t.name for t in current.teachers.values()
    }


async def test_an_id_naming_nothing_is_read_once_per_version(pool: asyncpg.Pool) -> None:
    reference = ReferenceCache()
    dangling = 2_000_000_000
    request = RequestReference(reference)
    missing = request.missing(subject_ids=[dangling], teacher_ids=[dangling])
    assert missing.subject_ids == [dangling] and missing.teacher_ids == [dangling]
    rows = await data.list_names_by_ids(pool, missing)
    assert rows == []
    copy = request.add_names(rows, missing)
    assert {("s", dangling), ("t", dangling)} <= copy.absent
    assert not RequestReference(reference).missing(subject_ids=[dangling], teacher_ids=[dangling])


def test_unusable_reference_entries_are_skipped_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    payload = orjson.dumps(
        {
            "subjects": [[1, "Алгебра"], [2, None]],
            "teachers": [[5, "Иванова Мария Петровна"]],
            "bells": [[3, 1, "08:00:00", "08:45:00"], [3, 2, "23:15:00", "24:00:00"]],
            "work_types": [[7, "Контрольная работа", "К/р", 2.0], [8, "Тест", None, 1.0]],
        }
    ).decode()
    with caplog.at_level(logging.WARNING, logger="resolvers.diary.reference"):
        data_ = parse_reference(42, payload)
    assert (list(data_.subjects), list(data_.teachers), list(data_.work_types)) == ([1], [5], [7])
    assert list(data_.bells) == [(3, 1)]
    assert [record.getMessage() for record in caplog.records] == [
        "reference data: 3 entries skipped (NULL or malformed values)"
    ]


async def test_the_first_request_of_a_process_sends_the_statements_of_any_other(
    settings: Settings, owner_conn: asyncpg.Connection, pool: asyncpg.Pool
) -> None:
    """A fresh application (no reference copy yet) answers its first diary request with
    the same statements as its second: the copy comes inside the students statement."""
    students = await _two_schools_children(owner_conn)
    fresh = create_app(settings, pool=pool)
    second_window = {"from": (FIRST - timedelta(days=7)).isoformat(), "to": FIRST.isoformat()}
    try:
        transport = httpx.ASGITransport(app=fresh)
        async with (
            httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as client,
            planted_parent(owner_conn, pool, settings, students, tag=42) as token,
        ):
            counts = []
            for window in (WINDOW, second_window):
                with counting_statements(keep_text=True) as counter:
                    payload = await post_graphql(client, token, LESSONS_QUERY, window)
                assert "errors" not in payload, payload
                counts.append(application_statements(counter))
    finally:
        await fresh.state.auth.recorder.close()
        await fresh.state.services.close()
    cold, warm = counts
    assert fresh.state.services.reference.current.version is not None
    assert len(cold) == len(warm) and sorted(cold) == sorted(warm)


async def test_a_registry_write_does_not_send_the_reference_data_again(
    owner_conn: asyncpg.Connection, pool: asyncpg.Pool, settings: Settings
) -> None:
    """Parent links change the journal's version (the response cache's), not the
    reference data's: the copy is not sent again for them."""
    student_id = await owner_conn.fetchval("SELECT min(id) FROM school.students")
    (row,) = await data.get_students_by_ids(pool, student_ids=[student_id], reference_version=None)
    version = row["reference_version"]
    journal = "SELECT version FROM diary_api.journal_version"
    before = await owner_conn.fetchval(journal)
    async with planted_parent(owner_conn, pool, settings, [student_id], tag=43):
        after = await owner_conn.fetchval(journal)
        (again,) = await data.get_students_by_ids(
            pool, student_ids=[student_id], reference_version=version
        )
    assert after != before
    assert again["reference"] is None and again["reference_version"] == version

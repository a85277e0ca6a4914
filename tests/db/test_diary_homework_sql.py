"""The diary's homework statement (`resolvers.diary.sql._HOMEWORK_SQL`): two index-driven
halves (due in the window; given at the class's lessons in the window) give exactly the
rows of the plain `OR` definition, each once, and read only the window's homework.

One intended difference from the `OR` the diary used before (`h.lesson_date` in the window
whatever the lesson's class): a homework of the class given at ANOTHER class's lesson is
returned when due in the window but not when only given in it (docs/read-contract.md)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import asyncpg

from resolvers.diary import sql as data
from resolvers.diary.sql import StudentRange
from tests.support.environment import TODAY

# The plain definition the statement must equal, written with the `OR`.
REFERENCE_SQL = """
SELECT k.ord, h.id, h.lesson_id, h.subject_id, h.text,
       h.assigned_on, h.due_on, h.attachments::text AS attachments, h.updated_at
FROM unnest($1::int[], $2::date[], $3::date[])
    WITH ORDINALITY AS k(student_id, date_from, date_to, ord)
JOIN diary_api.students s ON s.id = k.student_id
JOIN diary_api.homework_facts h ON h.class_id = s.class_id
JOIN diary_api.lesson_facts l ON l.id = h.lesson_id
JOIN diary_api.subjects sub ON sub.id = h.subject_id
WHERE h.due_on BETWEEN k.date_from AND k.date_to
   OR (l.class_id = s.class_id AND l.date BETWEEN k.date_from AND k.date_to)
ORDER BY k.ord, h.due_on, sub.name, h.id
"""

MONDAY = TODAY - timedelta(days=TODAY.weekday())
WINDOWS = [
    (MONDAY, MONDAY + timedelta(days=6)),
    (TODAY, TODAY),
    (date(2026, 9, 1), date(2026, 12, 31)),
    (date(2026, 10, 5), date(2026, 10, 18)),
]


def _arrays(keys: list[StudentRange]) -> list[list[Any]]:
    return [[k.student_id for k in keys], [k.date_from for k in keys], [k.date_to for k in keys]]


async def test_the_statement_equals_the_plain_definition_for_every_student(
    pool: asyncpg.Pool,
) -> None:
    student_ids = [row["id"] for row in await pool.fetch("SELECT id FROM diary_api.students")]
    compared = 0
    for date_from, date_to in WINDOWS:
        keys = [StudentRange(sid, date_from, date_to) for sid in student_ids]
        groups = await data.list_homework_by_student_ranges(pool, keys=keys)
        reference = await pool.fetch(REFERENCE_SQL, *_arrays(keys))
        expected = data._group(reference, key_count=len(keys))
        assert [[tuple(r) for r in g] for g in groups] == [[tuple(r) for r in g] for g in expected]
        compared += len(reference)
    assert compared > 1000


async def _plant(conn: asyncpg.Connection) -> tuple[int, date, list[int]]:
    """Three homework of one class around its lessons of the week of TODAY: given in the
    week and due later, given weeks before and due in the week, given and due in the week.
    Returns a student of the class, the Monday and the three ids."""
    lesson = await conn.fetchrow(
        """SELECT l.id, l.class_id, l.subject_id, l.date FROM school.lessons l
           WHERE l.date BETWEEN $1 AND $2 AND EXISTS
                 (SELECT 1 FROM school.students st WHERE st.class_id = l.class_id)
           ORDER BY l.id LIMIT 1""",
        MONDAY,
        MONDAY + timedelta(days=6),
    )
    assert lesson is not None
    earlier = await conn.fetchval(
        "SELECT id FROM school.lessons WHERE class_id = $1 AND date < $2 ORDER BY date LIMIT 1",
        lesson["class_id"],
        MONDAY - timedelta(days=14),
    )
    student_id = await conn.fetchval(
        "SELECT min(id) FROM school.students WHERE class_id = $1", lesson["class_id"]
    )
    first = await conn.fetchval("SELECT max(id) + 1 FROM school.homework")
    planted = [
        (first, lesson["id"], lesson["date"], lesson["date"] + timedelta(days=30)),
        (first + 1, earlier, MONDAY - timedelta(days=14), MONDAY + timedelta(days=1)),
        (first + 2, lesson["id"], lesson["date"], lesson["date"]),
    ]
    for homework_id, lesson_id, assigned_on, due_on in planted:
        await conn.execute(
            """INSERT INTO school.homework
                   (id, lesson_id, class_id, subject_id, text, assigned_on, due_on)
               VALUES ($1, $2, $3, $4, 'planted', $5, $6)""",
            homework_id,
            lesson_id,
            lesson["class_id"],
            lesson["subject_id"],
            assigned_on,
            due_on,
        )
    return student_id, MONDAY, [first, first + 1, first + 2]


async def _plant_cross_class(conn: asyncpg.Connection, student_id: int) -> tuple[int, int]:
    """Two homework of the student's class given at ANOTHER class's lessons: one at a lesson
    in the week of TODAY and due 30 days later, one at a lesson weeks before and due in the
    week. Returns (given in the week, due in the week)."""
    class_id = await conn.fetchval("SELECT class_id FROM school.students WHERE id = $1", student_id)
    other_lessons = """SELECT id, subject_id, date FROM school.lessons
                       WHERE class_id <> $1 AND date BETWEEN $2 AND $3 ORDER BY id LIMIT 1"""
    in_week = await conn.fetchrow(other_lessons, class_id, MONDAY, MONDAY + timedelta(days=6))
    before = await conn.fetchrow(other_lessons, class_id, date(2026, 9, 1), MONDAY - timedelta(14))
    assert in_week is not None and before is not None
    first = await conn.fetchval("SELECT max(id) + 1 FROM school.homework")
    for homework_id, lesson, due_on in (
        (first, in_week, in_week["date"] + timedelta(days=30)),
        (first + 1, before, MONDAY + timedelta(days=2)),
    ):
        await conn.execute(
            """INSERT INTO school.homework
                   (id, lesson_id, class_id, subject_id, text, assigned_on, due_on)
               VALUES ($1, $2, $3, $4, 'planted across classes', $5, $6)""",
            homework_id,
            lesson["id"],
            class_id,
            lesson["subject_id"],
            lesson["date"],
            due_on,
        )
    return first, first + 1


async def test_each_half_is_found_and_nothing_twice(owner_conn: asyncpg.Connection) -> None:
    """Both halves found, none twice, equal to the reference; the cross-class case pinned:
    the `OR` the diary used before (`h.lesson_date` in the window, whatever the lesson's
    class) would also return `given_elsewhere` (class matches, its lesson is in the week),
    so the `not in` below fails for it; `due_here` is returned by both."""
    transaction = owner_conn.transaction()
    await transaction.start()
    try:
        student_id, monday, planted = await _plant(owner_conn)
        given_elsewhere, due_here = await _plant_cross_class(owner_conn, student_id)
        keys = [StudentRange(student_id, monday, monday + timedelta(days=6))]
        rows = await owner_conn.fetch(data._HOMEWORK_SQL, *_arrays(keys))
        reference = await owner_conn.fetch(REFERENCE_SQL, *_arrays(keys))
    finally:
        await transaction.rollback()
    ids = [row["id"] for row in rows]
    assert len(ids) == len(set(ids))
    assert set(planted) <= set(ids)
    assert due_here in ids
    assert given_elsewhere not in ids
    assert [tuple(r) for r in rows] == [tuple(r) for r in reference]


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def _rows_read(node: dict[str, Any]) -> float:
    kept = node["Actual Rows"] + node.get("Rows Removed by Filter", 0)
    return float(kept * node["Actual Loops"])


async def _homework_rows_read(pool: asyncpg.Pool, sql: str, keys: list[StudentRange]) -> float:
    """Rows of school.homework the generic plan of `sql` reads (returned or filtered out)."""
    async with pool.acquire() as conn:
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        try:
            explained = await conn.fetchval("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, *_arrays(keys))
        finally:
            await conn.execute("RESET plan_cache_mode")
    (top,) = json.loads(explained)
    nodes = _nodes(top["Plan"])
    return sum(_rows_read(node) for node in nodes if node.get("Relation Name") == "homework")


async def test_the_generic_plan_reads_only_the_windows_homework(pool: asyncpg.Pool) -> None:
    """Homework rows read <= twice those returned (the second half drops the ones the first
    returned), where the `OR` read every homework of the class so far this school year."""
    week = (MONDAY, MONDAY + timedelta(days=6))
    student_ids = await pool.fetch(
        """SELECT min(s.id) FROM diary_api.students s
           WHERE EXISTS (SELECT 1 FROM diary_api.homework_facts h
                         WHERE h.class_id = s.class_id AND h.due_on BETWEEN $1 AND $2)
           GROUP BY s.class_id ORDER BY 1 LIMIT 2""",
        *week,
    )
    keys = [StudentRange(row[0], *week) for row in student_ids]
    returned = sum(map(len, await data.list_homework_by_student_ranges(pool, keys=keys)))
    read = await _homework_rows_read(pool, data._HOMEWORK_SQL, keys)
    read_with_or = await _homework_rows_read(pool, REFERENCE_SQL, keys)
    print(f"homework rows: {returned} returned, {read} read, {read_with_or} with the OR")
    assert len(keys) == 2 and returned > 0
    assert read <= 2 * returned
    assert read_with_or > 2 * returned  # what the test would catch

"""Every SQL statement of the diary, reading only the `diary_api` views.

Each function takes the pool and keyword-only arguments and sends exactly one statement,
whatever the number of keys: batches go in as arrays, unnested into a key relation `k`.
Each array parameter is read through a scalar sub-select, `(SELECT $1::int[])`: the
planner then cannot see how many keys a call has, so PostgreSQL's generic plan of a
prepared statement (asyncpg prepares and caches every statement per connection) costs
the same as a custom one and is reused, instead of re-planning these many-join views on
every execution (2-4x the time of the statement itself). The plans are written to be
good for any number of keys: index scans per key, views kept as per-key subqueries.
Callers pass only student ids already checked against the viewer's scope: the loaders in
`resolvers.diary.loaders` (which do that check), and the response cache's version read of
the viewer's own students (gateway.http.response_cache); these functions never widen a
scope themselves.
Rows come back grouped per key, in the order of the keys.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any, NamedTuple

import asyncpg

from resolvers.diary.reference import REFERENCE_JSON, Missing

Row = Any  # asyncpg.Record: untyped mapping of column name to value


class StudentRange(NamedTuple):
    """A student and an inclusive date window."""

    student_id: int
    date_from: date
    date_to: date


class MarksFilter(NamedTuple):
    """A page of one student's marks: optional window and subject, newest first."""

    student_id: int
    date_from: date | None
    date_to: date | None
    subject_id: int | None
    limit: int


def _group(rows: Sequence[Row], *, key_count: int, column: str = "ord") -> list[list[Row]]:
    """Split rows carrying a 1-based key ordinal into one list per key."""
    groups: list[list[Row]] = [[] for _ in range(key_count)]
    for row in rows:
        groups[row[column] - 1].append(row)
    return groups


def _range_arrays(keys: Sequence[StudentRange]) -> tuple[list[int], list[date], list[date]]:
    return (
        [key.student_id for key in keys],
        [key.date_from for key in keys],
        [key.date_to for key in keys],
    )


def _distinct(student_ids: Sequence[int]) -> list[int]:
    return list(dict.fromkeys(student_ids))


_RANGE_KEYS = """unnest((SELECT $1::int[]), (SELECT $2::date[]), (SELECT $3::date[]))
    WITH ORDINALITY AS k(student_id, date_from, date_to, ord)"""

# Distinct student ids (callers pass them through `_distinct`).
_STUDENT_KEYS = "unnest((SELECT $1::int[])) AS k(student_id)"

_NAMES_BY_IDS_SQL = """
SELECT 's' AS kind, s.id, s.name
FROM unnest((SELECT $1::int[])) AS k(id) JOIN diary_api.subjects s ON s.id = k.id
UNION ALL
SELECT 't', t.id, t.name
FROM unnest((SELECT $2::int[])) AS k(id) JOIN diary_api.teachers t ON t.id = k.id
UNION ALL
SELECT 'w', w.id, json_build_array(w.name, w.short_name, w.weight)::text
FROM unnest((SELECT $3::int[])) AS k(id) JOIN diary_api.work_types w ON w.id = k.id
"""


async def list_names_by_ids(pool: asyncpg.Pool, missing: Missing) -> list[Row]:
    """Subjects (`kind` 's') and teachers ('t') by id with their names (`name`), and work
    types ('w') with `name` a JSON array of name, short name and default weight."""
    return list(
        await pool.fetch(
            _NAMES_BY_IDS_SQL, missing.subject_ids, missing.teacher_ids, missing.work_type_ids
        )
    )


# `periods` (rows of diary_api.periods, as in _PERIODS_SQL) come along: averages and the
# period list need them right after the student, which saves that request a statement
# and a round trip. `reference_version` and `reference` keep the process's copy of the
# reference data current (resolvers.diary.reference): `$2` is the copy's version, and the
# whole reference data comes back, on the first row only, when the database's is another
# (a scalar sub-select PostgreSQL evaluates only then).
_STUDENTS_SQL = f"""
SELECT s.id, s.school_id, s.class_id, s.last_name, s.first_name, s.patronymic,
       s.grade, s.letter, s.class_name, s.period_scheme, s.year_id,
       sc.name AS school_name, sc.short_name AS school_short_name,
       sc.municipality_id, sc.municipality,
       ARRAY(SELECT p FROM diary_api.periods p
             WHERE p.school_id = s.school_id AND p.year_id = s.year_id
               AND p.scheme = s.period_scheme
             ORDER BY p.number) AS periods,
       r.version AS reference_version,
       CASE WHEN r.version IS DISTINCT FROM $2::bigint AND row_number() OVER () = 1
            THEN {REFERENCE_JSON} END AS reference
FROM {_STUDENT_KEYS}
JOIN diary_api.students s ON s.id = k.student_id
JOIN diary_api.schools sc ON sc.id = s.school_id
CROSS JOIN diary_api.reference_version r
"""


async def get_students_by_ids(
    pool: asyncpg.Pool, *, student_ids: Sequence[int], reference_version: int | None
) -> list[Row]:
    """Students with their school and class, and their periods (column `periods`, the
    rows `list_periods_by_student_ids` gives, by number), in no particular order; with
    the reference data's version and, unless it is `reference_version`, the reference
    data (columns `reference_version`, `reference`: see resolvers.diary.reference)."""
    return list(await pool.fetch(_STUDENTS_SQL, _distinct(student_ids), reference_version))


_LESSONS_SQL = f"""
SELECT k.ord, l.id, l.date, l.number, l.school_id,
       l.subject_id, l.teacher_id, l.room, l.status, l.status_comment,
       l.replacement_subject_id, l.replacement_teacher_id, l.topic, l.updated_at
FROM {_RANGE_KEYS}
JOIN diary_api.students s ON s.id = k.student_id
CROSS JOIN LATERAL (
    -- OFFSET 0 keeps the view a separate subquery planned per key: an index scan on
    -- (class_id, date). Flattened, the generic plan joins the class and topics around
    -- the keys instead (0.23 vs 0.14 ms of backend CPU for parent-week's two children).
    SELECT *
    FROM diary_api.lesson_facts ll
    WHERE ll.class_id = s.class_id AND ll.date BETWEEN k.date_from AND k.date_to
    OFFSET 0
) l
ORDER BY k.ord, l.date, l.number, l.id
"""


async def list_lessons_by_student_ranges(
    pool: asyncpg.Pool, *, keys: Sequence[StudentRange]
) -> list[list[Row]]:
    """Lessons of each student's class within each window, by date and number; subjects,
    teachers and bells by id (names: resolvers.diary.reference)."""
    rows = await pool.fetch(_LESSONS_SQL, *_range_arrays(keys))
    return _group(rows, key_count=len(keys))


# Subjects and work types by id: their names come from the reference data.
_MARK_COLUMNS = """m.id, m.student_id, m.lesson_id, m.date, m.lesson_number, m.lesson_topic,
       m.subject_id, m.work_type_id, m.work_title, m.value, m.numeric_value, m.weight,
       m.comment, m.counts_in_average, m.created_at, m.updated_at"""

_MARKS_SQL = f"""
SELECT k.ord, {_MARK_COLUMNS}
FROM {_RANGE_KEYS}
JOIN diary_api.mark_facts m
  ON m.student_id = k.student_id AND m.date BETWEEN k.date_from AND k.date_to
ORDER BY k.ord, m.date, m.lesson_number, m.id
"""


async def list_marks_by_student_ranges(
    pool: asyncpg.Pool, *, keys: Sequence[StudentRange]
) -> list[list[Row]]:
    """Each student's marks dated within each window, oldest first."""
    rows = await pool.fetch(_MARKS_SQL, *_range_arrays(keys))
    return _group(rows, key_count=len(keys))


_MARK_PAGES_SQL = f"""
SELECT k.ord, {_MARK_COLUMNS}
FROM unnest((SELECT $1::int[]), (SELECT $2::date[]), (SELECT $3::date[]),
            (SELECT $4::int[]), (SELECT $5::int[]))
    WITH ORDINALITY AS k(student_id, date_from, date_to, subject_id, page_size, ord)
CROSS JOIN LATERAL (
    SELECT *
    FROM diary_api.mark_facts mm
    WHERE mm.student_id = k.student_id
      AND (k.date_from IS NULL OR mm.date >= k.date_from)
      AND (k.date_to IS NULL OR mm.date <= k.date_to)
      AND (k.subject_id IS NULL OR mm.subject_id = k.subject_id)
    ORDER BY mm.date DESC, mm.id DESC
    LIMIT k.page_size
) m
ORDER BY k.ord, m.date DESC, m.id DESC
"""


async def list_mark_pages(pool: asyncpg.Pool, *, keys: Sequence[MarksFilter]) -> list[list[Row]]:
    """For each filter, the newest marks matching it, at most `limit` of them."""
    rows = await pool.fetch(
        _MARK_PAGES_SQL,
        [key.student_id for key in keys],
        [key.date_from for key in keys],
        [key.date_to for key in keys],
        [key.subject_id for key in keys],
        [key.limit for key in keys],
    )
    return _group(rows, key_count=len(keys))


_ATTENDANCE_SQL = f"""
SELECT k.ord, a.id, a.student_id, a.lesson_id, a.date, a.lesson_number,
       a.subject_id, a.code, a.minutes_late, a.comment, a.updated_at
FROM {_RANGE_KEYS}
JOIN diary_api.attendance_facts a
  ON a.student_id = k.student_id AND a.date BETWEEN k.date_from AND k.date_to
ORDER BY k.ord, a.date, a.lesson_number, a.id
"""


async def list_attendance_by_student_ranges(
    pool: asyncpg.Pool, *, keys: Sequence[StudentRange]
) -> list[list[Row]]:
    """Each student's attendance records within each window, by date and lesson."""
    rows = await pool.fetch(_ATTENDANCE_SQL, *_range_arrays(keys))
    return _group(rows, key_count=len(keys))


# Two index-driven halves instead of one `OR`: the class's homework due in the window
# (index on homework (class_id, due_on)), then the homework given at the class's lessons
# in the window and not due in it (lessons by (class_id, date), homework by lesson_id).
# With the `OR`, PostgreSQL read every homework of the class so far this year and looked
# up each one's lesson (~460 lookups for two children in November at scale 10). The
# subject's name is joined once, after the halves, for the order only (the name shown
# comes from the reference data).
_HOMEWORK_SQL = f"""
SELECT k.ord, h.id, h.lesson_id, h.subject_id, h.text,
       h.assigned_on, h.due_on, h.attachments::text AS attachments, h.updated_at
FROM {_RANGE_KEYS}
JOIN diary_api.students s ON s.id = k.student_id
CROSS JOIN LATERAL (
    SELECT hd.* FROM diary_api.homework_facts hd
    WHERE hd.class_id = s.class_id AND hd.due_on BETWEEN k.date_from AND k.date_to
    UNION ALL
    SELECT hl.*
    FROM diary_api.lesson_facts l
    JOIN diary_api.homework_facts hl ON hl.lesson_id = l.id
    WHERE l.class_id = s.class_id AND l.date BETWEEN k.date_from AND k.date_to
      AND hl.class_id = s.class_id
      AND NOT hl.due_on BETWEEN k.date_from AND k.date_to
) h
JOIN diary_api.subjects sub ON sub.id = h.subject_id
ORDER BY k.ord, h.due_on, sub.name, h.id
"""


async def list_homework_by_student_ranges(
    pool: asyncpg.Pool, *, keys: Sequence[StudentRange]
) -> list[list[Row]]:
    """Homework of each student's class due within each window, or given at one of the
    class's lessons within it."""
    rows = await pool.fetch(_HOMEWORK_SQL, *_range_arrays(keys))
    return _group(rows, key_count=len(keys))


_PERIODS_SQL = f"""
SELECT s.id AS student_id, p.id, p.number, p.title, p.scheme, p.starts_on, p.ends_on,
       p.year_id, p.year_title
FROM {_STUDENT_KEYS}
JOIN diary_api.students s ON s.id = k.student_id
JOIN diary_api.periods p
  ON p.school_id = s.school_id AND p.year_id = s.year_id AND p.scheme = s.period_scheme
ORDER BY s.id, p.number
"""


async def list_periods_by_student_ids(
    pool: asyncpg.Pool, *, student_ids: Sequence[int]
) -> list[Row]:
    """Study periods of each student's scheme in their class's academic year."""
    return list(await pool.fetch(_PERIODS_SQL, _distinct(student_ids)))


_FINAL_MARKS_SQL = f"""
SELECT f.id, f.student_id, f.subject_id, f.subject_name, f.year_id, f.year_title,
       f.kind, f.period_id, f.period_title, f.value, f.numeric_value, f.updated_at
FROM {_STUDENT_KEYS}
JOIN diary_api.students s ON s.id = k.student_id
JOIN diary_api.final_marks f ON f.student_id = s.id AND f.year_id = s.year_id
ORDER BY f.student_id, f.subject_name,
         CASE f.kind WHEN 'period' THEN 0 WHEN 'year' THEN 1 ELSE 2 END,
         f.period_id, f.id
"""


async def list_final_marks_by_student_ids(
    pool: asyncpg.Pool, *, student_ids: Sequence[int]
) -> list[Row]:
    """Period, year and exam marks of each student in their current academic year."""
    return list(await pool.fetch(_FINAL_MARKS_SQL, _distinct(student_ids)))


_LAST_UPDATED_SQL = f"""
SELECT c.student_id, c.last_updated_at
FROM {_STUDENT_KEYS}
JOIN diary_api.student_last_changes c ON c.student_id = k.student_id
"""


async def list_last_updated_by_student_ids(
    pool: asyncpg.Pool, *, student_ids: Sequence[int]
) -> list[Row]:
    """Latest change to each student's marks, attendance, final marks, lessons or homework."""
    return list(await pool.fetch(_LAST_UPDATED_SQL, _distinct(student_ids)))


_VERSIONS_SQL = f"""
SELECT concat_ws(';',
    (SELECT j.version FROM diary_api.journal_version j),
    (SELECT string_agg(concat_ws(':', v.student_id, v.class_id, v.student_version,
                                 v.class_version), ',' ORDER BY v.student_id)
     FROM {_STUDENT_KEYS}
     JOIN diary_api.student_versions v ON v.student_id = k.student_id))
"""


async def get_versions(pool: asyncpg.Pool, *, student_ids: Sequence[int]) -> str:
    """One token for the versions of the journal and of these students and their classes.

    Any committed change to data the diary shows for these students gives a different
    token (see `diary_api.student_versions`).
    """
    token = await pool.fetchval(_VERSIONS_SQL, _distinct(student_ids))
    return str(token)

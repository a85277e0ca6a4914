"""Every SQL statement of the school IT dashboard: one or two per dashboard section.

Called only by resolvers.dashboard.service, with a school id it checked against the
admin's schools; each function reads that one school's data through the diary_api views
of fixtures/contract_dashboard.sql and the gateway's own sign-in events. Statements are
constant texts; counts and groupings are done in SQL, except the SNILS checksum, which is
checked in Python (resolvers.dashboard.registry).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import asyncpg

Row = Any  # asyncpg.Record

_SCHOOL_SQL = """
SELECT id, name, short_name, municipality
FROM diary_api.schools
WHERE id = $1
"""


async def get_school(pool: asyncpg.Pool, *, school_id: int) -> Row | None:
    """The school's row (id, name, short_name, municipality), or None."""
    return await pool.fetchrow(_SCHOOL_SQL, school_id)


_SCHOOLS_SQL = """
SELECT id, name, short_name, municipality
FROM diary_api.schools
WHERE id = ANY($1::int[])
ORDER BY name, id
"""


async def list_schools(pool: asyncpg.Pool, *, school_ids: list[int]) -> list[Row]:
    """The rows of these schools (id, name, short_name, municipality), by name."""
    return list(await pool.fetch(_SCHOOLS_SQL, school_ids))


# Per teacher, class and subject over the window. A lesson is held when it is not
# cancelled and its date is not after today ($4); empty when held before today with no
# topic, no attendance record and no mark. Groups without a held lesson are left out.
_JOURNAL_SQL = """
SELECT j.teacher_id, j.teacher_name, j.class_id, j.class_name, j.grade, j.letter,
       j.subject_id, j.subject_name,
       count(*) AS held,
       count(*) FILTER (WHERE j.has_topic) AS with_topic,
       count(*) FILTER (WHERE j.attendance_count > 0) AS with_attendance,
       count(*) FILTER (WHERE j.homework_count > 0) AS with_homework,
       count(*) FILTER (WHERE j.marks_count > 0) AS with_marks,
       count(*) FILTER (
           WHERE j.date < $4 AND NOT j.has_topic
             AND j.attendance_count = 0 AND j.marks_count = 0
       ) AS past_empty,
       max(j.last_entry_at) AS last_entry_at
FROM diary_api.journal_lessons j
WHERE j.school_id = $1 AND j.date BETWEEN $2 AND $3
  AND j.date <= $4 AND j.status <> 'cancelled'
GROUP BY j.teacher_id, j.teacher_name, j.class_id, j.class_name, j.grade, j.letter,
         j.subject_id, j.subject_name
"""


async def list_journal_completeness(
    pool: asyncpg.Pool, *, school_id: int, date_from: date, date_to: date, today: date
) -> list[Row]:
    """Journal fill-in counts per (teacher, class, subject), in no particular order."""
    return list(await pool.fetch(_JOURNAL_SQL, school_id, date_from, date_to, today))


# Every parent record of the school; for a well-formed SNILS also found in other
# schools' registries (a merged account), those schools and which fields differ.
_PARENTS_SQL = """
SELECT p.parent_id, p.last_name, p.first_name, p.patronymic, p.phone, p.snils,
       p.children_count,
       coalesce(o.school_ids, '{}'::int[]) AS other_school_ids,
       coalesce(o.last_name, false) AS last_name_differs,
       coalesce(o.first_name, false) AS first_name_differs,
       coalesce(o.patronymic, false) AS patronymic_differs,
       coalesce(o.birth_date, false) AS birth_date_differs,
       coalesce(o.phone, false) AS phone_differs
FROM diary_api.registry_parents p
LEFT JOIN LATERAL (
    SELECT array_agg(DISTINCT q.school_id ORDER BY q.school_id) AS school_ids,
           bool_or(q.last_name IS DISTINCT FROM p.last_name) AS last_name,
           bool_or(q.first_name IS DISTINCT FROM p.first_name) AS first_name,
           bool_or(q.patronymic IS DISTINCT FROM p.patronymic) AS patronymic,
           bool_or(q.birth_date IS DISTINCT FROM p.birth_date) AS birth_date,
           bool_or(q.phone IS DISTINCT FROM p.phone) AS phone
    FROM diary_api.registry_parents q
    WHERE q.snils = p.snils AND q.school_id <> p.school_id
) o ON p.snils ~ '^[0-9]{11}$'
WHERE p.school_id = $1
ORDER BY p.last_name, p.first_name, p.patronymic, p.parent_id
"""


async def list_registry_parents(pool: asyncpg.Pool, *, school_id: int) -> list[Row]:
    """Every parent record of the school with its merged-account comparison."""
    return list(await pool.fetch(_PARENTS_SQL, school_id))


_UNLINKED_STUDENTS_SQL = """
SELECT s.student_id, s.last_name, s.first_name, s.patronymic,
       s.class_id, s.class_name, s.grade, s.letter
FROM diary_api.registry_students s
WHERE s.school_id = $1 AND s.parent_count = 0
ORDER BY s.grade, s.letter, s.last_name, s.first_name, s.patronymic, s.student_id
"""


async def list_students_without_parents(pool: asyncpg.Pool, *, school_id: int) -> list[Row]:
    """The school's students that no parent record (of any school) is linked to."""
    return list(await pool.fetch(_UNLINKED_STUDENTS_SQL, school_id))


# Sign-in attempts of people found in the school's registries, by outcome.
_SIGN_IN_COUNTS_SQL = """
SELECT e.outcome, count(*) AS attempts, max(e.at) AS last_at
FROM gateway.sign_in_events e
WHERE e.school_ids @> ARRAY[$1::integer] AND e.at >= $2 AND e.at < $3
GROUP BY e.outcome
ORDER BY count(*) DESC, e.outcome
"""

# The newest failed attempts (every outcome but SIGNED_IN), optionally of one outcome.
_SIGN_IN_RECENT_SQL = """
SELECT e.id, e.at, e.method, e.outcome, e.masked_snils, e.masked_phone, e.login
FROM gateway.sign_in_events e
WHERE e.school_ids @> ARRAY[$1::integer] AND e.at >= $2 AND e.at < $3
  AND e.outcome <> 'SIGNED_IN' AND ($4::text IS NULL OR e.outcome = $4)
ORDER BY e.at DESC, e.id DESC
LIMIT $5
"""


async def count_sign_ins(
    pool: asyncpg.Pool, *, school_id: int, start: datetime, end: datetime
) -> list[Row]:
    """(outcome, attempts, last_at) of the school's people in [start, end), most first."""
    return list(await pool.fetch(_SIGN_IN_COUNTS_SQL, school_id, start, end))


async def list_failed_sign_ins(
    pool: asyncpg.Pool,
    *,
    school_id: int,
    start: datetime,
    end: datetime,
    outcome: str | None,
    limit: int,
) -> list[Row]:
    """The newest failed sign-ins of the school's people in [start, end), masked."""
    return list(await pool.fetch(_SIGN_IN_RECENT_SQL, school_id, start, end, outcome, limit))

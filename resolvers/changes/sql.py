"""Every SQL statement of the change feed, reading only the `diary_api` views.

A page of changes is one statement: the changes visible now and not behind the position
(`resolvers.changes.cursor`), the current snapshot they were read in, and each change's
row as it is now (a mark, an attendance record, a homework, a lesson, a final mark),
joined by id — the payload of every subscriber's event comes from that one read. A
payload row must belong to the change's student or class (a row moved elsewhere since
is not shown through this change). `reference_version` and, when the caller's copy is of
another version, the reference data come along as in the diary's students statement
(resolvers.diary.reference).

Two forms: the whole region's changes (the process's dispatcher, one read per
notification whatever the number of subscribers), and one viewer's (catch-up and
`diaryChanges`), where a class's change comes once per student of the viewer's in it.
Array and snapshot parameters go through scalar sub-selects, as in resolvers.diary.sql.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeAlias

import asyncpg

from auth.store.accounts import audience_sql
from resolvers.changes.cursor import Position, Snapshot
from resolvers.diary.reference import REFERENCE_JSON

Row = Any
# A pool, or one of its connections held by the caller (the dispatcher's LISTEN one).
Reader: TypeAlias = asyncpg.Pool | asyncpg.Connection | asyncpg.pool.PoolConnectionProxy

MARK_COLUMNS = (
    "id", "student_id", "lesson_id", "date", "lesson_number", "lesson_topic", "subject_id",
    "work_type_id", "work_title", "value", "numeric_value", "weight", "comment",
    "counts_in_average", "created_at", "updated_at",
)  # fmt: skip
ATTENDANCE_COLUMNS = (
    "id", "student_id", "lesson_id", "date", "lesson_number", "subject_id", "code",
    "minutes_late", "comment", "updated_at",
)  # fmt: skip
HOMEWORK_COLUMNS = (
    "id", "lesson_id", "subject_id", "text", "assigned_on", "due_on", "attachments",
    "updated_at",
)  # fmt: skip
LESSON_COLUMNS = (
    "id", "date", "number", "school_id", "subject_id", "teacher_id", "room", "status",
    "status_comment", "replacement_subject_id", "replacement_teacher_id", "topic",
    "updated_at",
)  # fmt: skip
FINAL_MARK_COLUMNS = (
    "id", "student_id", "subject_id", "subject_name", "year_id", "year_title", "kind",
    "period_id", "period_title", "value", "numeric_value", "updated_at",
)  # fmt: skip

# Prefix of each payload's columns in a page's rows (`resolvers.changes.events.Prefixed`).
MARK, ATTENDANCE, HOMEWORK, LESSON, FINAL_MARK = "m_", "a_", "h_", "l_", "f_"


def _columns(alias: str, prefix: str, columns: Sequence[str]) -> str:
    return ", ".join(
        f"{alias}.{c}::text AS {prefix}{c}" if c == "attachments" else f"{alias}.{c} AS {prefix}{c}"
        for c in columns
    )


_PAYLOAD_COLUMNS = ",\n       ".join(
    (
        _columns("m", MARK, MARK_COLUMNS),
        _columns("a", ATTENDANCE, ATTENDANCE_COLUMNS),
        _columns("h", HOMEWORK, HOMEWORK_COLUMNS),
        _columns("l", LESSON, LESSON_COLUMNS),
        _columns("f", FINAL_MARK, FINAL_MARK_COLUMNS),
    )
)

_PAYLOAD_JOINS = """
LEFT JOIN LATERAL (SELECT * FROM diary_api.mark_facts x
                   WHERE c.kind = 'mark' AND x.id = c.entity_id
                     AND x.student_id = c.student_id) m ON true
LEFT JOIN LATERAL (SELECT * FROM diary_api.attendance_facts x
                   WHERE c.kind = 'attendance' AND x.id = c.entity_id
                     AND x.student_id = c.student_id) a ON true
LEFT JOIN LATERAL (SELECT * FROM diary_api.homework_facts x
                   WHERE c.kind = 'homework' AND x.id = c.entity_id
                     AND x.class_id = c.class_id) h ON true
LEFT JOIN LATERAL (SELECT * FROM diary_api.lesson_facts x
                   WHERE c.kind IN ('lesson', 'lesson_topic') AND x.id = c.entity_id
                     AND x.class_id = c.class_id) l ON true
LEFT JOIN LATERAL (SELECT * FROM diary_api.final_marks x
                   WHERE c.kind = 'final_mark' AND x.id = c.entity_id
                     AND x.student_id = c.student_id) f ON true
"""

# $1 base snapshot, $2 upper snapshot (or NULL), $3/$4 the last (change id, student id)
# of `upper` delivered, $5 the page size, $6 the caller's reference data version.
_NOT_DELIVERED = """
e.xid >= pg_snapshot_xmin((SELECT $1::pg_snapshot))
AND NOT pg_visible_in_snapshot(e.xid, (SELECT $1::pg_snapshot))"""

# $8: a bound (NULL: none): only what this snapshot sees (a catch-up up to the
# dispatcher's position, resolvers.changes.subscription).
_WITHIN_BOUND = """(
    (SELECT $8::pg_snapshot) IS NULL OR pg_visible_in_snapshot(e.xid, (SELECT $8::pg_snapshot)))"""

# The kinds and actions the gateway knows (a source's new ones are not shown).
_KNOWN = """(e.kind IN ('mark', 'attendance', 'final_mark', 'homework', 'lesson_topic', 'lesson')
    AND e.action IN ('added', 'changed', 'removed'))"""

_IN_UPPER = "coalesce(pg_visible_in_snapshot(e.xid, (SELECT $2::pg_snapshot)), false)"


# Who may see a region change now (auth.store.accounts.audience_sql): parallel arrays of
# (student, account) pairs, ordered by student, for the student's change or for each
# student of the class's change.
_AUDIENCE_JOIN = f"""
LEFT JOIN LATERAL (
    SELECT array_agg(au.student_id ORDER BY au.student_id, au.account_id) AS students,
           array_agg(au.account_id ORDER BY au.student_id, au.account_id) AS accounts
    FROM ({
    audience_sql(
        "SELECT c.student_id WHERE c.student_id IS NOT NULL "
        "UNION ALL SELECT st.id FROM diary_api.students st WHERE st.class_id = c.class_id"
    )
}) au
) au ON true"""


def _page(changes: str, *, audience: bool = False) -> str:
    audience_columns = "au.students AS audience_students, au.accounts AS audience_accounts,"
    return f"""
SELECT s.snap AS snapshot,
       floor(extract(epoch FROM statement_timestamp()))::bigint AS taken_at,
       r.version AS reference_version,
       CASE WHEN r.version IS DISTINCT FROM $6::bigint AND row_number() OVER () = 1
            THEN {REFERENCE_JSON} END AS reference,
       c.id, c.xid, c.at, c.kind, c.action, c.entity_id, c.student_id, c.class_id,
       c.lesson_id, c.date, c.in_upper, c.for_student,
       {audience_columns if audience else ""}
       {_PAYLOAD_COLUMNS}
FROM (SELECT pg_current_snapshot() AS snap) s
CROSS JOIN diary_api.reference_version r
LEFT JOIN LATERAL ({changes}) c ON true
{_PAYLOAD_JOINS}
{_AUDIENCE_JOIN if audience else ""}
ORDER BY c.in_upper DESC, c.id, c.for_student
"""


# The region's changes: a class's change once (for_student 0), with who may see it now.
_REGION_PAGE_SQL = _page(
    f"""
    SELECT e.*, 0 AS for_student, {_IN_UPPER} AS in_upper
    FROM diary_api.diary_changes e
    WHERE {_NOT_DELIVERED} AND {_KNOWN}
      AND NOT ({_IN_UPPER} AND (e.id, 0) <= ($3::bigint, $4::int))
    ORDER BY in_upper DESC, e.id
    LIMIT $5""",
    audience=True,
)

# One viewer's students' changes ($7, those of them account $9 may see now: the audience
# rule, as the region's pages check every change): a class's change once per student of
# theirs in it.
_STUDENTS_PAGE_SQL = _page(
    f"""
    WITH k AS MATERIALIZED (
        SELECT DISTINCT au.student_id AS id
        FROM ({audience_sql("SELECT unnest((SELECT $7::int[])) AS student_id")}) au
        WHERE au.account_id = $9::text
    )
    SELECT * FROM (
        SELECT e.*, e.student_id AS for_student, {_IN_UPPER} AS in_upper
        FROM k
        JOIN diary_api.diary_changes e ON e.student_id = k.id
        WHERE {_NOT_DELIVERED} AND {_WITHIN_BOUND} AND {_KNOWN}
        UNION ALL
        SELECT e.*, st.id AS for_student, {_IN_UPPER} AS in_upper
        FROM k
        JOIN diary_api.students st ON st.id = k.id
        JOIN diary_api.diary_changes e ON e.class_id = st.class_id
        WHERE {_NOT_DELIVERED} AND {_WITHIN_BOUND} AND {_KNOWN}
    ) e
    WHERE NOT (e.in_upper AND (e.id, e.for_student) <= ($3::bigint, $4::int))
    ORDER BY e.in_upper DESC, e.id, e.for_student
    LIMIT $5"""
)


def _arguments(position: Position, limit: int, reference_version: int | None) -> list[object]:
    return [
        position.base.record(),
        position.upper.record() if position.upper is not None else None,
        position.after[0],
        position.after[1],
        limit,
        reference_version,
    ]


async def list_region_changes(
    pool: Reader, *, position: Position, limit: int, reference_version: int | None
) -> list[Row]:
    """Up to `limit` of the region's changes after `position`, in feed order, with their
    payloads and audiences (`audience_students`, `audience_accounts`: who may see the
    change now, per student); always at least one row (the snapshot; change columns NULL
    when there is none)."""
    return list(await pool.fetch(_REGION_PAGE_SQL, *_arguments(position, limit, reference_version)))


async def list_student_changes(
    pool: Reader,
    *,
    position: Position,
    student_ids: Sequence[int],
    limit: int,
    reference_version: int | None,
    account_id: str,
    bound: Snapshot | None = None,
) -> list[Row]:
    """As `list_region_changes`, for these students only (already checked against the
    viewer's scope), a class's change once per student in it (`for_student`); with a
    `bound`, only the changes that snapshot sees. Only the students `account_id` may see
    now are read (a link removed since the viewer was loaded is honoured)."""
    arguments = _arguments(position, limit, reference_version)
    students = sorted(set(student_ids))
    upto = bound.record() if bound is not None else None
    return list(await pool.fetch(_STUDENTS_PAGE_SQL, *arguments, students, upto, account_id))


async def current_snapshot(pool: Reader) -> Row:
    """The database's snapshot now (`snapshot`, `taken_at` Unix seconds)."""
    return await pool.fetchrow(
        "SELECT pg_current_snapshot() AS snapshot, "
        "floor(extract(epoch FROM statement_timestamp()))::bigint AS taken_at"
    )

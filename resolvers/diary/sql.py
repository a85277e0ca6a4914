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

import functools
from collections.abc import Collection, Sequence
from datetime import date
from typing import Any, NamedTuple

import asyncpg

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


# Distinct student ids (callers pass them through `_distinct`).
_STUDENT_KEYS = "unnest((SELECT $1::int[])) AS k(student_id)"

# `periods` (rows of diary_api.periods, as in _PERIODS_SQL) come along: averages and the
# period list need them right after the student, which saves that request a statement
# and a round trip.
_STUDENTS_SQL = f"""
SELECT s.id, s.school_id, s.class_id, s.last_name, s.first_name, s.patronymic,
       s.grade, s.letter, s.class_name, s.period_scheme, s.year_id,
       sc.name AS school_name, sc.short_name AS school_short_name,
       sc.municipality_id, sc.municipality,
       ARRAY(SELECT p FROM diary_api.periods p
             WHERE p.school_id = s.school_id AND p.year_id = s.year_id
               AND p.scheme = s.period_scheme
             ORDER BY p.number) AS periods
FROM {_STUDENT_KEYS}
JOIN diary_api.students s ON s.id = k.student_id
JOIN diary_api.schools sc ON sc.id = s.school_id
"""


async def get_students_by_ids(pool: asyncpg.Pool, *, student_ids: Sequence[int]) -> list[Row]:
    """Students with their school and class, and their periods (column `periods`, the
    rows `list_periods_by_student_ids` gives, by number), in no particular order."""
    return list(await pool.fetch(_STUDENTS_SQL, _distinct(student_ids)))


_MARK_COLUMNS = """m.id, m.student_id, m.lesson_id, m.date, m.lesson_number, m.lesson_topic,
       m.subject_id, m.subject_name,
       m.work_type_id, m.work_type_name, m.work_type_short_name, m.work_type_weight,
       m.work_title, m.value, m.numeric_value, m.weight, m.comment, m.counts_in_average,
       m.created_at, m.updated_at"""

_MARK_PAGES_SQL = f"""
SELECT k.ord, {_MARK_COLUMNS}
FROM unnest((SELECT $1::int[]), (SELECT $2::date[]), (SELECT $3::date[]),
            (SELECT $4::int[]), (SELECT $5::int[]))
    WITH ORDINALITY AS k(student_id, date_from, date_to, subject_id, page_size, ord)
CROSS JOIN LATERAL (
    SELECT *
    FROM diary_api.marks mm
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


# --- the diary: lessons, marks, attendance and homework in one statement -----------------
#
# A request's `diary` fields load their parts for every child in ONE statement: each
# selected part is a branch of a UNION ALL over the same keys. Fewer statements is the
# point: every statement costs PostgreSQL a fixed ~0.03 ms (a backend wake-up, a
# transaction, the locks and plan check of every relation behind the views) before any
# row, and four round trips cost the event loop four pool acquisitions. Rows carry their
# branch (`kind`, the part's name) and key ordinal (`ord`); each row has the columns of
# every selected part (NULL where not its own: cheap to send and decode), under the names
# the per-part row converters read (resolvers.diary.rows). Every output column is cast
# to one declared type (`_COLUMN_TYPES`), so that the branches agree whatever the read
# contract's own column types are (smallint or integer, numeric's precision).

LESSONS = "lessons"
MARKS = "marks"
ATTENDANCE = "attendance"
HOMEWORK = "homework"
DIARY_PARTS: tuple[str, ...] = (LESSONS, MARKS, ATTENDANCE, HOMEWORK)

_COLUMN_TYPES: dict[str, str] = {
    "id": "bigint",
    "student_id": "integer",
    "lesson_id": "bigint",
    "date": "date",
    "number": "integer",
    "lesson_number": "integer",
    "starts_at": "time",
    "ends_at": "time",
    "subject_id": "integer",
    "subject_name": "text",
    "teacher_id": "integer",
    "teacher_name": "text",
    "room": "text",
    "status": "text",
    "status_comment": "text",
    "replacement_subject_id": "integer",
    "replacement_subject_name": "text",
    "replacement_teacher_id": "integer",
    "replacement_teacher_name": "text",
    "topic": "text",
    "lesson_topic": "text",
    "work_type_id": "integer",
    "work_type_name": "text",
    "work_type_short_name": "text",
    "work_type_weight": "numeric",
    "work_title": "text",
    "value": "text",
    "numeric_value": "numeric",
    "weight": "numeric",
    "comment": "text",
    "counts_in_average": "boolean",
    "code": "text",
    "minutes_late": "integer",
    "text": "text",
    "assigned_on": "date",
    "due_on": "date",
    "attachments": "text",
    "created_at": "timestamptz",
    "updated_at": "timestamptz",
    # The order within a part (see `_Branch.order`), the same three for every branch.
    "sort_on": "date",
    "sort_number": "integer",
    "sort_text": "text",
}


class _Branch(NamedTuple):
    """One part of the diary: its rows for the keys `k` (student_id, date_from, date_to,
    ord, and class_id for the parts in `_CLASS_PARTS`), the output columns it fills and
    its order within a key."""

    columns: tuple[str, ...]
    source: str  # FROM clause after `k`; its row alias is `r`
    order: tuple[str, str, str]  # sort_on, sort_number, sort_text (then r.id)


_LESSON_FIELDS = (
    "id", "date", "number", "starts_at", "ends_at", "subject_id", "subject_name",
    "teacher_id", "teacher_name", "room", "status", "status_comment",
    "replacement_subject_id", "replacement_subject_name",
    "replacement_teacher_id", "replacement_teacher_name", "topic", "updated_at",
)  # fmt: skip
_MARK_FIELDS = (
    "id", "student_id", "lesson_id", "date", "lesson_number", "lesson_topic",
    "subject_id", "subject_name", "work_type_id", "work_type_name", "work_type_short_name",
    "work_type_weight", "work_title", "value", "numeric_value", "weight", "comment",
    "counts_in_average", "created_at", "updated_at",
)  # fmt: skip
_ATTENDANCE_FIELDS = (
    "id", "student_id", "lesson_id", "date", "lesson_number", "subject_id", "subject_name",
    "code", "minutes_late", "comment", "updated_at",
)  # fmt: skip
_HOMEWORK_FIELDS = (
    "id", "lesson_id", "subject_id", "subject_name", "text", "assigned_on", "due_on",
    "attachments", "updated_at",
)  # fmt: skip

_BRANCHES: dict[str, _Branch] = {
    LESSONS: _Branch(
        _LESSON_FIELDS,
        # OFFSET 0 keeps the view a separate subquery planned per key: an index scan on
        # (class_id, date). Flattened, its eight relations plus the keys exceed
        # join_collapse_limit and the planner hash-joins the whole lessons table.
        """CROSS JOIN LATERAL (
    SELECT * FROM diary_api.lessons ll
    WHERE ll.class_id = k.class_id AND ll.date BETWEEN k.date_from AND k.date_to
    OFFSET 0) r""",
        ("r.date", "r.number", "NULL"),
    ),
    MARKS: _Branch(
        _MARK_FIELDS,
        """JOIN diary_api.marks r
  ON r.student_id = k.student_id AND r.date BETWEEN k.date_from AND k.date_to""",
        ("r.date", "r.lesson_number", "NULL"),
    ),
    ATTENDANCE: _Branch(
        _ATTENDANCE_FIELDS,
        """JOIN diary_api.attendance r
  ON r.student_id = k.student_id AND r.date BETWEEN k.date_from AND k.date_to""",
        ("r.date", "r.lesson_number", "NULL"),
    ),
    # Two index-driven halves instead of one `OR`: the class's homework due in the window
    # (index on homework (class_id, due_on)), then the homework given at the class's
    # lessons in the window and not due in it (lessons by (class_id, date), homework by
    # lesson_id). With the `OR`, PostgreSQL read every homework of the class so far this
    # year and looked up each one's lesson (~460 lookups for two children in November at
    # scale 10).
    HOMEWORK: _Branch(
        _HOMEWORK_FIELDS,
        """CROSS JOIN LATERAL (
    SELECT * FROM diary_api.homework hd
    WHERE hd.class_id = k.class_id AND hd.due_on BETWEEN k.date_from AND k.date_to
    UNION ALL
    SELECT * FROM diary_api.homework hl
    WHERE hl.class_id = k.class_id AND hl.lesson_class_id = k.class_id
      AND hl.lesson_date BETWEEN k.date_from AND k.date_to
      AND NOT hl.due_on BETWEEN k.date_from AND k.date_to) r""",
        ("r.due_on", "NULL", "r.subject_name"),
    ),
}

# The keys, with each student's class when a part reads the class's rows (LEFT JOIN: a
# key naming no student reads no lessons or homework, and its marks and attendance
# branches are what they would be alone).
_KEYS = """unnest((SELECT $1::int[]), (SELECT $2::date[]), (SELECT $3::date[]))
        WITH ORDINALITY AS k(student_id, date_from, date_to, ord)"""
_KEYS_WITH_CLASS = f"""k AS MATERIALIZED (
    SELECT k.student_id, k.date_from, k.date_to, k.ord, s.class_id
    FROM {_KEYS}
    LEFT JOIN diary_api.students s ON s.id = k.student_id)"""
_KEYS_ALONE = f"""k AS MATERIALIZED (
    SELECT k.student_id, k.date_from, k.date_to, k.ord FROM {_KEYS})"""
_CLASS_PARTS = frozenset({LESSONS, HOMEWORK})


def _branch_select(part: str, columns: Sequence[str]) -> str:
    branch = _BRANCHES[part]
    own = set(branch.columns)
    values = [f"'{part}'::text AS kind", "k.ord"]
    for column in columns:
        expression = f"r.{column}" if column in own else "NULL"
        values.append(f"{expression}::{_COLUMN_TYPES[column]} AS {column}")
    for name, expression in zip(("sort_on", "sort_number", "sort_text"), branch.order, strict=True):
        values.append(f"{expression}::{_COLUMN_TYPES[name]} AS {name}")
    return f"SELECT {', '.join(values)}\nFROM k {branch.source}"


@functools.cache
def diary_statement(parts: frozenset[str]) -> str:
    """The one statement reading these parts of the diary for every key."""
    chosen = [part for part in DIARY_PARTS if part in parts]
    if not chosen or len(chosen) != len(parts):
        raise ValueError(f"diary parts must be some of {DIARY_PARTS}, got {sorted(parts)}")
    columns = list(dict.fromkeys(c for part in chosen for c in _BRANCHES[part].columns))
    branches = "\nUNION ALL\n".join(_branch_select(part, columns) for part in chosen)
    keys = _KEYS_WITH_CLASS if parts & _CLASS_PARTS else _KEYS_ALONE
    return f"""WITH {keys}
{branches}
ORDER BY kind, ord, sort_on, sort_number, sort_text, id"""


async def list_diary_parts(
    pool: asyncpg.Pool, *, keys: Sequence[StudentRange], parts: Collection[str]
) -> dict[str, list[list[Row]]]:
    """For each part (lessons, marks, attendance, homework), each key's rows, in one
    statement: lessons of the student's class in the window by date and number; the
    student's marks and attendance dated in it, by date and lesson; homework of the
    class due in it, or given at one of the class's lessons in it, by due date and
    subject."""
    wanted = frozenset(parts)
    rows = await pool.fetch(diary_statement(wanted), *_range_arrays(keys))
    grouped: dict[str, list[list[Row]]] = {part: [[] for _ in keys] for part in wanted}
    for row in rows:
        grouped[row["kind"]][row["ord"] - 1].append(row)
    return grouped


async def list_marks_by_student_ranges(
    pool: asyncpg.Pool, *, keys: Sequence[StudentRange]
) -> list[list[Row]]:
    """Each student's marks dated within each window, oldest first."""
    return (await list_diary_parts(pool, keys=keys, parts=(MARKS,)))[MARKS]

"""Regional analytics SQL: the refresh of the base cells and the suppressed aggregates.

The base cells (gateway/migrations/gateway_analytics.sql) are the finest groups the analytics
know: school x grade x subject x period x work type for marks, school x grade x subject
x period x code for attendance, school x grade x subject x period for the lessons held.
Each carries the number of distinct students it covers. A cell is *published* when
that number is at least k (`min_group_size`). Every figure released for any grouping
(the ungrouped total included) is a sum over published cells only, so no combination of
released figures (a total minus the other groups, overlapping filters) can isolate an
unpublished cell: its data is in none of them. A group with no published cell is
reported as suppressed, without figures.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any, Final

import asyncpg

from resolvers.analytics.cells import COMMON_KEY, CellFilter, Freshness, Labels

__all__ = [
    "Freshness",
    "attendance_aggregates",
    "freshness",
    "labels",
    "mark_aggregates",
    "refresh",
]


def _where(
    cell_filter: CellFilter, params: list[object], *, has_work_type: bool, has_code: bool
) -> str:
    """The SQL condition of `cell_filter` (parameters appended to `params`)."""
    conditions = ["true"]
    columns: list[tuple[str, Sequence[int] | Sequence[str] | None, str]] = [
        ("school_id", cell_filter.school_ids, "integer[]"),
        ("municipality_id", cell_filter.municipality_ids, "integer[]"),
        ("grade", cell_filter.grades, "smallint[]"),
        ("subject_id", cell_filter.subject_ids, "integer[]"),
        ("period_number", cell_filter.period_numbers, "smallint[]"),
    ]
    if has_work_type:
        columns.append(("work_type_id", cell_filter.work_type_ids, "integer[]"))
    if has_code:
        columns.append(("code", cell_filter.codes, "text[]"))
    for column, values, sql_type in columns:
        if values is not None:
            params.append(list(values))
            conditions.append(f"{column} = ANY(${len(params)}::{sql_type})")
    if cell_filter.period_scheme is not None:
        params.append(cell_filter.period_scheme)
        conditions.append(f"period_scheme = ${len(params)}")
    return " AND ".join(conditions)


# --- refresh -------------------------------------------------------------------------

_CELL_KEY: Final = (
    "school_id",
    "grade",
    "subject_id",
    "year_id",
    "period_scheme",
    "period_number",
    "work_type_id",
)
_MARK_CELL_COLUMNS: Final = (
    *COMMON_KEY,
    "work_type_id",
    "students",
    "marks",
    "counted_marks",
    "weighted_sum",
    "weight_sum",
)
_ATTENDANCE_CELL_COLUMNS: Final = (*COMMON_KEY, "code", "students", "records")
_VALUE_COLUMNS: Final = (*_CELL_KEY, "value", "marks")

# Student-lessons up to the diary's today; a cell's students are its classes' enrolment.
_COMMON = ", ".join(COMMON_KEY)
_LESSON_CELLS = f"""
SELECT {_COMMON},
       sum(enrolled)::integer AS students, sum(lessons)::integer AS lessons,
       sum(lessons * enrolled)::bigint AS student_lessons
FROM (
    SELECT {_COMMON}, class_id, max(enrolled) AS enrolled, sum(lessons) AS lessons
    FROM diary_api.analytics_class_lessons
    WHERE date <= $1
    GROUP BY {_COMMON}, class_id
) per_class
GROUP BY {_COMMON}
"""
_LESSON_CELL_COLUMNS: Final = (*COMMON_KEY, "students", "lessons", "student_lessons")

_TABLES: Final = (
    "analytics_mark_values",
    "analytics_mark_cells",
    "analytics_attendance_cells",
    "analytics_lesson_cells",
)


# Neither LOCK nor SET takes a snapshot: the first query after the lock does.
_LOCK_SQL: Final = "LOCK TABLE gateway.analytics_refresh IN EXCLUSIVE MODE"
_RECORD_REFRESH_SQL: Final = """
INSERT INTO gateway.analytics_refresh (id, refreshed_at, as_of, duration_ms)
VALUES (true, clock_timestamp(), $1, $2)
ON CONFLICT (id) DO UPDATE SET refreshed_at = excluded.refreshed_at,
    as_of = excluded.as_of, duration_ms = excluded.duration_ms
RETURNING refreshed_at, as_of, duration_ms
"""


def _select(view: str, columns: Sequence[str]) -> str:
    return f"SELECT {', '.join(columns)} FROM diary_api.{view}"


async def _copy(
    conn: asyncpg.Connection, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    await conn.copy_records_to_table(
        table, schema_name="gateway", columns=list(columns), records=rows
    )


async def refresh(
    conn: asyncpg.Connection,
    *,
    today: date,
    timeout_ms: int,
    wait: bool = True,
    stale_before: datetime | None = None,
) -> Freshness | None:
    """Rebuild every base cell in one transaction; None if another refresh holds the lock
    and `wait` is False. With `stale_before`, the cells are left as they are (and their
    freshness returned) when, once the lock is held, they were refreshed at or after it:
    another process has just done it. Readers see the previous snapshot until the commit.

    The lock (an EXCLUSIVE lock on gateway.analytics_refresh) is taken before the first
    query, so that the transaction's one snapshot (repeatable read) is taken after it:
    the views are all read from that snapshot (a write committed between two of the
    reads is in all of the new cells or in none), and it sees any refresh that committed
    while this one waited. The views are read with plain SELECTs (which PostgreSQL may
    run in parallel, unlike INSERT ... SELECT) and the rows copied into the gateway's
    tables."""
    started = time.perf_counter()
    try:
        async with conn.transaction(isolation="repeatable_read"):
            await conn.execute(f"SET LOCAL statement_timeout = {int(timeout_ms)}")
            await conn.execute("SET LOCAL work_mem = '64MB'")
            await conn.execute(_LOCK_SQL if wait else _LOCK_SQL + " NOWAIT")
            if stale_before is not None:
                current = await freshness(conn)
                if current is not None and current.refreshed_at >= stale_before:
                    return current
            await _rebuild(conn, today)
            duration_ms = round((time.perf_counter() - started) * 1000)
            row = await conn.fetchrow(_RECORD_REFRESH_SQL, today, duration_ms)
    except asyncpg.LockNotAvailableError:  # NOWAIT: another refresh is running
        return None
    assert row is not None
    return Freshness(row["refreshed_at"], row["as_of"], row["duration_ms"])


async def _rebuild(conn: asyncpg.Connection, today: date) -> None:
    cells = await conn.fetch(_select("analytics_mark_cells", _MARK_CELL_COLUMNS))
    values = await conn.fetch(_select("analytics_mark_values", _VALUE_COLUMNS))
    attendance = await conn.fetch(_select("analytics_attendance_cells", _ATTENDANCE_CELL_COLUMNS))
    lessons = await conn.fetch(_LESSON_CELLS, today)
    for table in _TABLES:
        await conn.execute(f"DELETE FROM gateway.{table}")
    await _copy(conn, "analytics_mark_cells", _MARK_CELL_COLUMNS, cells)
    # A value row carries its cell's municipality and distinct students.
    of_cell = {tuple(row[c] for c in _CELL_KEY): row for row in cells}
    value_rows = []
    for row in values:
        cell = of_cell[tuple(row[c] for c in _CELL_KEY)]
        value_rows.append((*row, cell["municipality_id"], cell["students"]))
    await _copy(
        conn,
        "analytics_mark_values",
        (*_VALUE_COLUMNS, "municipality_id", "students"),
        value_rows,
    )
    await _copy(conn, "analytics_attendance_cells", _ATTENDANCE_CELL_COLUMNS, attendance)
    await _copy(conn, "analytics_lesson_cells", _LESSON_CELL_COLUMNS, lessons)


async def freshness(conn: asyncpg.Connection) -> Freshness | None:
    """The last refresh, or None if the cells were never built."""
    row = await conn.fetchrow(
        "SELECT refreshed_at, as_of, duration_ms FROM gateway.analytics_refresh"
    )
    return None if row is None else Freshness(row[0], row[1], row[2])


# --- aggregates ----------------------------------------------------------------------


def _grouping(columns: Sequence[str], extra: Sequence[str] = ()) -> tuple[str, str]:
    """(select list of the key columns, GROUP BY clause): the groups and the total."""
    keys = [*columns, *extra]
    select = "".join(f"{column}, " for column in keys)
    if columns:
        total_flag = f"GROUPING({', '.join(columns)}) <> 0 AS is_total, "
        sets = f"GROUPING SETS (({', '.join(keys)}), ({', '.join(extra)}))"
    else:
        total_flag = "true AS is_total, "
        sets = f"({', '.join(extra)})" if extra else "()"
    return select + total_flag, sets


def _published_sums(
    table: str, columns: Sequence[str], where: str, sums: Sequence[str], extra: Sequence[str] = ()
) -> str:
    """Per group and for the total: whether any cell is published (students >= k, $1)
    and the sums of `sums` over the published cells only (the suppression rule)."""
    select, sets = _grouping(columns, extra)
    figures = "".join(f", sum({c}) FILTER (WHERE students >= $1) AS {c}" for c in sums)
    return (
        f"SELECT {select} bool_or(students >= $1) AS published{figures}"
        f" FROM gateway.{table} WHERE {where} GROUP BY {sets}"
    )


async def mark_aggregates(
    conn: asyncpg.Connection,
    columns: Sequence[str],
    cell_filter: CellFilter,
    k: int,
    *,
    with_values: bool,
) -> tuple[list[asyncpg.Record], list[asyncpg.Record]]:
    """(figures per group and for the total, value counts per group and for the total:
    one row per group with the values and their counts, most frequent first)."""
    params: list[object] = [k]
    where = _where(cell_filter, params, has_work_type=True, has_code=False)
    figures = await conn.fetch(
        _published_sums(
            "analytics_mark_cells",
            columns,
            where,
            ("marks", "counted_marks", "weighted_sum", "weight_sum"),
        ),
        *params,
    )
    if not with_values:
        return figures, []
    select, sets = _grouping(columns, ("value",))
    keys = "".join(f"{column}, " for column in columns)
    values = await conn.fetch(
        f"""
        SELECT {keys} is_total,
               array_agg(value ORDER BY marks DESC, value) AS "values",
               array_agg(marks ORDER BY marks DESC, value) AS counts
        FROM (
            SELECT {select} sum(marks) AS marks
            FROM gateway.analytics_mark_values
            WHERE students >= $1 AND {where}
            GROUP BY {sets}
        ) per_value
        GROUP BY {keys} is_total
        """,
        *params,
    )
    return figures, values


async def attendance_aggregates(
    conn: asyncpg.Connection, columns: Sequence[str], cell_filter: CellFilter, k: int
) -> tuple[list[asyncpg.Record], list[asyncpg.Record]]:
    """(lessons per group without the code, records per group and code), totals included."""
    lesson_columns = [column for column in columns if column != "code"]
    params: list[object] = [k]
    where = _where(cell_filter, params, has_work_type=False, has_code=False)
    lessons = await conn.fetch(
        _published_sums(
            "analytics_lesson_cells", lesson_columns, where, ("lessons", "student_lessons")
        ),
        *params,
    )
    params = [k]
    where = _where(cell_filter, params, has_work_type=False, has_code=True)
    records = await conn.fetch(
        _published_sums(
            "analytics_attendance_cells", lesson_columns, where, ("records",), ("code",)
        ),
        *params,
    )
    return lessons, records


async def labels(conn: asyncpg.Connection) -> Labels:
    """Every label, in one statement (the tables are small)."""
    row = await conn.fetchrow(
        """
        SELECT
          (SELECT array_agg((id, name, short_name, municipality_id, municipality))
           FROM diary_api.schools) AS schools,
          (SELECT array_agg((id, name)) FROM diary_api.analytics_subjects) AS subjects,
          (SELECT array_agg((id, name, short_name, weight))
           FROM diary_api.analytics_work_types) AS work_types,
          (SELECT array_agg((year_id, period_scheme, period_number, year_title, title))
           FROM diary_api.analytics_periods) AS periods
        """
    )
    assert row is not None
    schools: list[Any] = row["schools"] or []
    return Labels(
        schools={r[0]: (r[1], r[2], r[4]) for r in schools},
        municipalities={r[3]: r[4] for r in schools},
        subjects={r[0]: r[1] for r in row["subjects"] or []},
        work_types={r[0]: (r[1], r[2], r[3]) for r in row["work_types"] or []},
        periods={(r[0], r[1], r[2]): (r[3], r[4]) for r in row["periods"] or []},
    )

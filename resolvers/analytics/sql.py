"""Regional analytics SQL: the refresh of the units and the aggregates over them.

A refresh reads the base cells (school x grade x subject x period x work type for
marks, x code for attendance, school x grade x subject x period for the lessons held)
with the number of distinct students each covers, and the single records of the cells
below k, and stores the UNITS that resolvers.analytics.merge makes of them: the cells of
at least k students, and the small ones merged up a fixed hierarchy until they are that
large. Every figure released for any grouping and filter is a sum over whole units: a
unit is included only when all its values pass the filter, and counted in a group only
when it has one value of each grouped dimension (else in `spanning`). The small base
cells are kept as unpublished "shadows" (no figures) so that their groups are listed as
suppressed.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Final

import asyncpg

from resolvers.analytics import merge, units
from resolvers.analytics.cells import CellFilter, Freshness, Labels

log = logging.getLogger(__name__)

__all__ = [
    "Freshness",
    "attendance_aggregates",
    "freshness",
    "labels",
    "mark_aggregates",
    "refresh",
]

# Filter → the unit column holding all its values (a unit passes when every one does).
_FILTER_ARRAYS: Final = (
    ("school_ids", "school_ids", "integer[]"),
    ("municipality_ids", "municipality_ids", "integer[]"),
    ("grades", "grades", "smallint[]"),
    ("subject_ids", "subject_ids", "integer[]"),
    ("period_numbers", "period_numbers", "smallint[]"),
)


def _where(cell_filter: CellFilter, params: list[object], *, kind: str) -> str:
    """The SQL condition of `cell_filter` on units (parameters appended to `params`):
    a unit is selected only when all of its values pass, so that it is never split."""
    conditions = ["true"]
    for attribute, column, sql_type in _FILTER_ARRAYS:
        values = getattr(cell_filter, attribute)
        if values is not None:
            params.append(list(values))
            conditions.append(f"{column} <@ ${len(params)}::{sql_type}")
    if cell_filter.period_scheme is not None:
        params.append([cell_filter.period_scheme])
        conditions.append(f"period_schemes <@ ${len(params)}::text[]")
    if kind == "marks" and cell_filter.work_type_ids is not None:
        params.append(list(cell_filter.work_type_ids))
        conditions.append(f"work_type_ids <@ ${len(params)}::integer[]")
    if kind == "attendance" and cell_filter.codes is not None:
        params.append(list(cell_filter.codes))
        conditions.append(f"code = ANY(${len(params)}::text[])")
    return " AND ".join(conditions)


# --- refresh -------------------------------------------------------------------------

_KEY: Final = (
    "school_id",
    "municipality_id",
    "grade",
    "subject_id",
    "year_id",
    "period_scheme",
    "period_number",
)
_MARK_FIGURES: Final = ("marks", "counted_marks", "weighted_sum", "weight_sum")
_SMALL_JOIN: Final = """
JOIN unnest($1::integer[], $2::smallint[], $3::integer[], $4::integer[], $5::text[],
            $6::smallint[], $7::{detail_type}[])
     AS small(school_id, grade, subject_id, year_id, period_scheme, period_number, {detail})
  USING (school_id, grade, subject_id, year_id, period_scheme, period_number, {detail})
"""
_KEY_SELECT: Final = ", ".join(f"f.{column}" for column in _KEY)
# The students of some cells (ids only in memory, to count distinct students of merged
# cells; never stored).
_MARK_MEMBERS: Final = f"""
SELECT DISTINCT {_KEY_SELECT}, f.work_type_id, f.student_id
FROM diary_api.analytics_mark_facts f
{_SMALL_JOIN.format(detail_type="integer", detail="work_type_id")}
"""
_ATTENDANCE_MEMBERS: Final = f"""
SELECT DISTINCT {_KEY_SELECT}, f.code, f.student_id
FROM diary_api.analytics_attendance_facts f
{_SMALL_JOIN.format(detail_type="text", detail="code")}
"""
# The students' query of each kind whose merged cells need distinct students counted.
_MEMBERS: Final = {"marks": _MARK_MEMBERS, "attendance": _ATTENDANCE_MEMBERS}
_COMMON = ", ".join(_KEY)
# Lessons held up to the diary's today, per cell and class (with the class's enrolment).
_CLASS_LESSONS: Final = f"""
SELECT {_COMMON}, class_id, max(enrolled) AS enrolled, sum(lessons)::integer AS lessons
FROM diary_api.analytics_class_lessons
WHERE date <= $1
GROUP BY {_COMMON}, class_id
"""
_TABLES: Final = (
    "analytics_mark_unit_values",  # (values first: they name units)
    "analytics_mark_units",
    "analytics_attendance_units",
    "analytics_lesson_units",
)


# Neither LOCK nor SET takes a snapshot: the first query after the lock does.
_LOCK_SQL: Final = "LOCK TABLE gateway.analytics_refresh IN EXCLUSIVE MODE"
_RECORD_REFRESH_SQL: Final = """
INSERT INTO gateway.analytics_refresh (id, refreshed_at, as_of, duration_ms, min_group_size,
                                       rules)
VALUES (true, clock_timestamp(), $1, $2, $3, $4)
ON CONFLICT (id) DO UPDATE SET refreshed_at = excluded.refreshed_at,
    as_of = excluded.as_of, duration_ms = excluded.duration_ms,
    min_group_size = excluded.min_group_size, rules = excluded.rules
RETURNING refreshed_at, as_of, duration_ms, min_group_size
"""


async def refresh(
    conn: asyncpg.Connection,
    *,
    today: date,
    min_group_size: int,
    timeout_ms: int,
    wait: bool = True,
    stale_before: datetime | None = None,
    restart: bool = False,
) -> Freshness | None:
    """Rebuild every unit for k = `min_group_size` in one transaction (`restart`: the
    year's assignment of cells to units starts over, see resolvers.analytics.merge); None if another
    refresh holds the lock and `wait` is False. With `stale_before`, the units are left
    as they are (and their freshness returned) when, once the lock is held, they were
    built for the same k at or after it: another process has just done it. Readers see
    the previous snapshot until the commit.

    The lock (an EXCLUSIVE lock on gateway.analytics_refresh) is taken before the first
    query, so that the transaction's one snapshot (repeatable read) is taken after it:
    the views are all read from that snapshot (a write committed between two of the
    reads is in all of the new units or in none), and it sees any refresh that committed
    while this one waited."""
    try:
        async with conn.transaction(isolation="repeatable_read"):
            await conn.execute(f"SET LOCAL statement_timeout = {int(timeout_ms)}")
            await conn.execute("SET LOCAL work_mem = '64MB'")
            await conn.execute(_LOCK_SQL if wait else _LOCK_SQL + " NOWAIT")
            started = time.perf_counter()  # the rebuild's own time, not the lock's wait
            if stale_before is not None:
                current = await freshness(conn)
                if (
                    current is not None
                    and current.refreshed_at >= stale_before
                    and current.min_group_size == min_group_size
                ):
                    return current
            rules = merge.rules(min_group_size)
            restart = restart or await _stored_rules(conn) != rules
            await _rebuild(conn, today, min_group_size, restart=restart)
            duration_ms = round((time.perf_counter() - started) * 1000)
            row = await conn.fetchrow(
                _RECORD_REFRESH_SQL, today, duration_ms, min_group_size, rules
            )
    except asyncpg.LockNotAvailableError:  # NOWAIT: another refresh is running
        return None
    assert row is not None
    await _vacuum(conn)
    return Freshness(row[0], row[1], row[2], row[3])


async def _vacuum(conn: asyncpg.Connection) -> None:
    """Reclaim the rows the rebuild replaced, and fresh statistics (outside the
    transaction; where the gateway's role may not, PostgreSQL skips a table with a
    warning and autovacuum does it: gateway_analytics.sql).

    VACUUM runs outside any transaction, so under the session's statement timeout (the
    role's default through PgBouncer, 5 s), which it may not set for itself there (a SET
    would stay on a server connection other clients share). Cancelled, it is one warning:
    the new units are committed, and autovacuum reclaims and analyzes the tables later."""
    tables = ", ".join(f"gateway.{table}" for table in (*_TABLES, "analytics_assignments"))
    try:
        await conn.execute(f"VACUUM (ANALYZE) {tables}")
    except asyncpg.QueryCanceledError:
        log.warning(
            "analytics refresh: VACUUM cancelled by the statement timeout; autovacuum follows"
        )


def _cell_key(row: asyncpg.Record, detail: str | None) -> merge.CellKey:
    return merge.CellKey(
        school_id=row["school_id"],
        municipality_id=row["municipality_id"],
        grade=row["grade"],
        subject_id=row["subject_id"],
        year_id=row["year_id"],
        period_scheme=row["period_scheme"],
        period_number=row["period_number"],
        detail=None if detail is None else row[detail],
    )


def _key_columns(keys: Sequence[merge.CellKey]) -> list[list[Any]]:
    """Cell keys as the columns of `_SMALL_JOIN`'s unnest."""
    return [
        [key.school_id for key in keys],
        [key.grade for key in keys],
        [key.subject_id for key in keys],
        [key.year_id for key in keys],
        [key.period_scheme for key in keys],
        [key.period_number for key in keys],
        [key.detail for key in keys],
    ]


async def _load_members(
    conn: asyncpg.Connection,
    query: str,
    detail: str,
    cells: Sequence[merge.Cell],
    wanted: Sequence[merge.CellKey],
) -> None:
    """Give the `wanted` cells their students (ids in memory only)."""
    if not wanted:
        return
    members: dict[merge.CellKey, dict[int, int]] = defaultdict(dict)
    for row in await conn.fetch(query, *_key_columns(wanted)):
        members[_cell_key(row, detail)][row["student_id"]] = 1
    for cell in cells:
        if cell.key in members:
            cell.members = members[cell.key]


async def _mark_cells(conn: asyncpg.Connection) -> list[merge.Cell]:
    cells = {
        key: merge.Cell(key, row["students"], tuple(Decimal(row[c]) for c in _MARK_FIGURES))
        for row in await conn.fetch("SELECT * FROM diary_api.analytics_mark_cells")
        for key in [_cell_key(row, "work_type_id")]
    }
    for row in await conn.fetch("SELECT * FROM diary_api.analytics_mark_values"):
        cell = cells.get(_cell_key(row, "work_type_id"))
        if cell is not None:
            cell.values[row["value"]] += row["marks"]
    return list(cells.values())


async def _attendance_cells(conn: asyncpg.Connection) -> list[merge.Cell]:
    return [
        merge.Cell(_cell_key(row, "code"), row["students"], (Decimal(row["records"]),))
        for row in await conn.fetch("SELECT * FROM diary_api.analytics_attendance_cells")
    ]


async def _lesson_cells(conn: asyncpg.Connection, today: date) -> list[merge.Cell]:
    return merge.cells_from_members(
        (
            _cell_key(row, None),
            row["class_id"],
            row["enrolled"],
            (Decimal(row["lessons"]), Decimal(row["lessons"] * row["enrolled"])),
        )
        for row in await conn.fetch(_CLASS_LESSONS, today)
    )


_ASSIGNMENT_COLUMNS: Final = ("kind", *_KEY, "detail", "unit_id", "level")


async def _assignment(conn: asyncpg.Connection, kind: units.Kind) -> merge.Assignment:
    rows = await conn.fetch(
        "SELECT * FROM gateway.analytics_assignments WHERE kind = $1", kind.name
    )
    return {
        _cell_key(row, None)._replace(detail=kind.detail_of(row["detail"])): (
            row["unit_id"],
            row["level"],
        )
        for row in rows
    }


async def _place(
    conn: asyncpg.Connection, kind: units.Kind, cells: list[merge.Cell], k: int
) -> merge.Placement:
    """Place the cells (sticky: the year's assignment first) and keep the new assignment."""
    assignment = await _assignment(conn, kind)
    query = _MEMBERS.get(kind.name)  # lessons: their members came with the cells
    if query is not None and kind.detail_column is not None:
        wanted = merge.needs_members(cells, k, assignment)
        await _load_members(conn, query, kind.detail_column, cells, wanted)
    placement = merge.place(cells, kind.hierarchy, k, assignment)
    await conn.execute("DELETE FROM gateway.analytics_assignments WHERE kind = $1", kind.name)
    await conn.copy_records_to_table(
        "analytics_assignments",
        schema_name="gateway",
        columns=list(_ASSIGNMENT_COLUMNS),
        records=units.assignment_records(kind, placement.assignment),
    )
    return placement


async def _store(
    conn: asyncpg.Connection, kind: units.Kind, placement: merge.Placement, k: int
) -> None:
    rows = units.unit_rows(kind, placement, k)
    if rows.records:
        await conn.copy_records_to_table(
            kind.table, schema_name="gateway", columns=list(rows.columns), records=rows.records
        )
    if rows.values:
        await conn.copy_records_to_table(
            "analytics_mark_unit_values",
            schema_name="gateway",
            columns=["unit_id", "value", "marks"],
            records=rows.values,
        )


async def _stored_rules(conn: asyncpg.Connection) -> str | None:
    """The placement rules (k and hierarchies) the stored assignment was made by."""
    value = await conn.fetchval("SELECT rules FROM gateway.analytics_refresh")
    return None if value is None else str(value)


async def _rebuild(conn: asyncpg.Connection, today: date, k: int, *, restart: bool) -> None:
    """Place every kind's cells and store the units. With `restart` (asked for, or the
    assignment was made for another k or other hierarchies) the year's assignment starts
    over: every cell is placed afresh."""
    if restart:
        await conn.execute("DELETE FROM gateway.analytics_assignments")
    marks = await _place(conn, units.MARKS, await _mark_cells(conn), k)
    attendance = await _place(conn, units.ATTENDANCE, await _attendance_cells(conn), k)
    lessons = await _place(conn, units.LESSONS, await _lesson_cells(conn, today), k)
    for table in _TABLES:
        await conn.execute(f"DELETE FROM gateway.{table}")
    await _store(conn, units.MARKS, marks, k)
    await _store(conn, units.ATTENDANCE, attendance, k)
    await _store(conn, units.LESSONS, lessons, k)


async def freshness(conn: asyncpg.Connection) -> Freshness | None:
    """The last refresh, or None if the units were never built."""
    row = await conn.fetchrow(
        "SELECT refreshed_at, as_of, duration_ms, min_group_size FROM gateway.analytics_refresh"
    )
    return None if row is None else Freshness(row[0], row[1], row[2], row[3])


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
    """Per group and for the total: whether any published unit is in it and the sums of
    `sums` over the published units only (shadows have no figures). A group whose key
    has a NULL is the units spanning several groups (a NULL key column: several values)."""
    select, sets = _grouping(columns, extra)
    figures = "".join(f", sum({c}) FILTER (WHERE published) AS {c}" for c in sums)
    return (
        f"SELECT {select} bool_or(published) AS published{figures}"
        f" FROM gateway.{table} WHERE {where} GROUP BY {sets}"
    )


async def mark_aggregates(
    conn: asyncpg.Connection,
    columns: Sequence[str],
    cell_filter: CellFilter,
    *,
    with_values: bool,
) -> tuple[list[asyncpg.Record], list[asyncpg.Record]]:
    """(figures per group and for the total, value counts per group and for the total:
    one row per group with the values and their counts, most frequent first)."""
    params: list[object] = []
    where = _where(cell_filter, params, kind="marks")
    figures = await conn.fetch(
        _published_sums("analytics_mark_units", columns, where, _MARK_FIGURES), *params
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
            SELECT {select} sum(v.marks) AS marks
            FROM gateway.analytics_mark_units u
            JOIN gateway.analytics_mark_unit_values v USING (unit_id)
            WHERE u.published AND {where}
            GROUP BY {sets}
        ) per_value
        GROUP BY {keys} is_total
        """,
        *params,
    )
    return figures, values


async def attendance_aggregates(
    conn: asyncpg.Connection, columns: Sequence[str], cell_filter: CellFilter
) -> tuple[list[asyncpg.Record], list[asyncpg.Record]]:
    """(lessons per group without the code, records per group and code), totals included."""
    lesson_columns = [column for column in columns if column != "code"]
    params: list[object] = []
    where = _where(cell_filter, params, kind="lessons")
    lessons = await conn.fetch(
        _published_sums(
            "analytics_lesson_units", lesson_columns, where, ("lessons", "student_lessons")
        ),
        *params,
    )
    params = []
    where = _where(cell_filter, params, kind="attendance")
    records = await conn.fetch(
        _published_sums(
            "analytics_attendance_units", lesson_columns, where, ("records",), ("code",)
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


async def limit_transaction(conn: asyncpg.Connection, timeout_ms: int) -> None:
    """The statement timeout of the current transaction only (through a pooler, which
    passes no startup parameter for it: gateway.core.pooler)."""
    await conn.execute(f"SET LOCAL statement_timeout = {int(timeout_ms)}")

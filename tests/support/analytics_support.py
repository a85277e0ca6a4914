"""Test helpers for the regional analytics: expected figures computed independently.

The expected values are computed in Python from raw journal rows read over the owner
connection from the `school` tables (not the diary_api views, not the gateway's units):
each mark / absence is placed in its base (L0) cell (school, grade, subject, period, work
type / code), each held lesson's class in its lesson cell (school, grade, subject,
period), and the cells are merged into units by tests/support/analytics_model.py, an
implementation of the merge rule of issue 12 written apart from resolvers.analytics.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from datetime import date
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
from starlette.applications import Starlette

from gateway.app import create_app
from gateway.core.settings import Settings
from tests.support.analytics_model import (
    ATTENDANCE_ABSORBING,
    ATTENDANCE_LEVELS,
    DIMENSION_INDEX,
    LESSON_ABSORBING,
    LESSON_LEVELS,
    MARK_ABSORBING,
    MARK_LEVELS,
    AttendanceAnswer,
    AttendanceFigures,
    Cell,
    CellKey,
    Figures,
    Filter,
    Grouped,
    Partition,
    Unit,
    expected_attendance,
    expected_marks,
    group_key,
    keep_all,
    merge,
    unit_filter,
)
from tests.support.planted import post_graphql

__all__ = [
    "ATTENDANCE_QUERY",
    "DIMENSION_INDEX",
    "KEY_FIELDS",
    "MARK_FIELDS",
    "AttendanceAnswer",
    "AttendanceFigures",
    "Cell",
    "CellKey",
    "Figures",
    "Filter",
    "Grouped",
    "Partition",
    "Unit",
    "analytics_app",
    "analytics_client",
    "answer_key",
    "ask",
    "ask_attendance",
    "attendance_cells",
    "attendance_units",
    "check_attendance",
    "check_attendance_group",
    "check_mark_group",
    "check_marks",
    "codes",
    "expected_attendance",
    "expected_marks",
    "group_key",
    "keep_all",
    "lesson_cells",
    "lesson_units",
    "mark_cells",
    "mark_units",
    "unit_filter",
]

_MARK_ROWS = """
SELECT c.school_id, s.municipality_id, c.grade, l.subject_id, c.year_id, p.scheme,
       p.number, m.work_type_id, m.student_id, m.value, m.numeric_value, m.weight,
       m.counts_in_average
FROM school.marks m
JOIN school.lessons l ON l.id = m.lesson_id
JOIN school.classes c ON c.id = l.class_id
JOIN school.schools s ON s.id = c.school_id
JOIN school.periods p ON p.school_id = c.school_id AND p.year_id = c.year_id
     AND p.scheme = c.period_scheme AND m.date BETWEEN p.starts_on AND p.ends_on
"""

_ATTENDANCE_ROWS = """
SELECT c.school_id, s.municipality_id, c.grade, l.subject_id, c.year_id, p.scheme,
       p.number, a.code, a.student_id
FROM school.attendance a
JOIN school.lessons l ON l.id = a.lesson_id
JOIN school.classes c ON c.id = l.class_id
JOIN school.schools s ON s.id = c.school_id
JOIN school.periods p ON p.school_id = c.school_id AND p.year_id = c.year_id
     AND p.scheme = c.period_scheme AND a.date BETWEEN p.starts_on AND p.ends_on
"""

# Held (not cancelled) lessons up to a date, per class, subject and period, with the
# class's enrolment (a class without students has no student-lessons and no cell).
_LESSON_ROWS = """
SELECT c.school_id, s.municipality_id, c.grade, l.subject_id, c.year_id, p.scheme,
       p.number, c.id AS class_id, count(*) AS lessons, e.enrolled
FROM school.lessons l
JOIN school.classes c ON c.id = l.class_id
JOIN school.schools s ON s.id = c.school_id
JOIN school.periods p ON p.school_id = c.school_id AND p.year_id = c.year_id
     AND p.scheme = c.period_scheme AND l.date BETWEEN p.starts_on AND p.ends_on
JOIN (SELECT class_id, count(*) AS enrolled FROM school.students GROUP BY class_id) e
     ON e.class_id = c.id
WHERE l.status <> 'cancelled' AND l.date <= $1
GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, e.enrolled
"""


async def mark_cells(conn: asyncpg.Connection) -> dict[CellKey, Cell]:
    """L0 mark cells: distinct students, marks, counted marks, weighted sums, values."""
    cells: dict[CellKey, Cell] = defaultdict(Cell)
    for row in await conn.fetch(_MARK_ROWS):
        cell = cells[tuple(row[:8])]
        cell.members[row["student_id"]] = 1
        cell.sums["marks"] += 1
        cell.sums["value:" + row["value"]] += 1
        if row["counts_in_average"] and row["numeric_value"] is not None and row["weight"] > 0:
            cell.sums["counted"] += 1
            cell.sums["weighted_sum"] += row["weight"] * row["numeric_value"]
            cell.sums["weight_sum"] += row["weight"]
    return dict(cells)


async def attendance_cells(conn: asyncpg.Connection) -> dict[CellKey, Cell]:
    """L0 attendance cells: distinct students and records per code."""
    cells: dict[CellKey, Cell] = defaultdict(Cell)
    for row in await conn.fetch(_ATTENDANCE_ROWS):
        cell = cells[tuple(row[:8])]
        cell.members[row["student_id"]] = 1
        cell.sums["records"] += 1
    return dict(cells)


async def lesson_cells(conn: asyncpg.Connection, as_of: date) -> dict[CellKey, Cell]:
    """L0 lesson cells up to `as_of`: the classes (their enrolment), lessons and
    student-lessons (Σ over held lessons of the class's enrolment)."""
    cells: dict[CellKey, Cell] = defaultdict(Cell)
    for row in await conn.fetch(_LESSON_ROWS, as_of):
        cell = cells[tuple(row[:7])]
        cell.members[row["class_id"]] = int(row["enrolled"])
        cell.sums["lessons"] += Decimal(row["lessons"])
        cell.sums["student_lessons"] += Decimal(row["lessons"] * row["enrolled"])
    return dict(cells)


async def mark_units(conn: asyncpg.Connection, k: int) -> Partition:
    return merge(await mark_cells(conn), MARK_LEVELS, k, MARK_ABSORBING)


async def attendance_units(conn: asyncpg.Connection, k: int) -> Partition:
    return merge(await attendance_cells(conn), ATTENDANCE_LEVELS, k, ATTENDANCE_ABSORBING)


async def lesson_units(conn: asyncpg.Connection, k: int, as_of: date) -> Partition:
    return merge(await lesson_cells(conn, as_of), LESSON_LEVELS, k, LESSON_ABSORBING)


def answer_key(
    group: dict[str, Any], dimensions: Iterable[str], *, year_id: int
) -> tuple[Any, ...]:
    """The key of an answered group, in the order of `group_key`."""
    key = group["key"]
    parts: dict[int, Any] = {}
    for name in dimensions:
        if name == "SCHOOL":
            parts[0] = int(key["school"]["id"])
        elif name == "MUNICIPALITY":
            parts[1] = int(key["municipality"]["id"])
        elif name == "GRADE":
            parts[2] = key["grade"]
        elif name == "SUBJECT":
            parts[3] = int(key["subject"]["id"])
        elif name == "PERIOD":
            period = key["period"]
            parts[4], parts[5], parts[6] = year_id, period["scheme"].lower(), period["number"]
        elif name == "WORK_TYPE":
            parts[7] = int(key["workType"]["id"])
        elif name == "CODE":
            parts[7] = key["code"]
    return tuple(parts[i] for i in sorted(parts))


KEY_FIELDS = (
    "key { school { id } municipality { id } grade subject { id } "
    "period { scheme number title } workType { id } code }"
)
MARK_FIELDS = (
    f"{KEY_FIELDS} suppressed markCount countedMarkCount weightSum weightedAverage "
    "distribution { value count }"
)


@asynccontextmanager
async def analytics_app(
    settings: Settings, pool: asyncpg.Pool, **analytics: Any
) -> AsyncIterator[tuple[Starlette, httpx.AsyncClient]]:
    """A separate app whose analytics settings are overridden, and a client of it."""
    changed = dataclasses.replace(
        settings, analytics=dataclasses.replace(settings.analytics, **analytics)
    )
    app = create_app(changed, pool=pool)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as c:
            yield app, c
    finally:
        await app.state.services.close()


@asynccontextmanager
async def analytics_client(
    settings: Settings, pool: asyncpg.Pool, **analytics: Any
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a separate app whose analytics settings are overridden."""
    async with analytics_app(settings, pool, **analytics) as (_app, client):
        yield client


async def ask(
    client: httpx.AsyncClient,
    token: str | None,
    query: str,
    variables: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return await post_graphql(client, token, query, variables, expect_status=200)


def codes(body: dict[str, Any]) -> list[str]:
    return [error["extensions"]["code"] for error in body.get("errors", [])]


def check_mark_group(answer: dict[str, Any], figures: Figures | None) -> None:
    """A MarkGroup answered against the model's figures (None or unpublished: suppressed)."""
    if figures is None or not figures.published:
        assert answer["suppressed"] is True, answer
        assert answer["markCount"] is None and answer["weightedAverage"] is None
        assert answer.get("distribution") is None
        return
    assert answer["suppressed"] is False, answer
    assert answer["markCount"] == figures.marks
    assert answer["countedMarkCount"] == figures.counted
    assert answer["weightSum"] == float(figures.weight_sum)
    assert answer["weightedAverage"] == figures.average()
    if "distribution" in answer:
        assert {d["value"]: d["count"] for d in answer["distribution"]} == figures.values


def check_attendance_group(answer: dict[str, Any], figures: AttendanceFigures) -> None:
    """An AttendanceGroup answered against the model (only the fields selected)."""
    assert answer["suppressed"] is figures.suppressed, (answer, figures)
    expected: dict[str, Any] = {
        "lessons": figures.lessons,
        "studentLessons": figures.student_lessons,
        "records": figures.records,
        "rate": figures.rate,
    }
    for name, value in expected.items():
        if name in answer:
            assert answer[name] == value, (name, answer, figures)
    if "byCode" in answer:
        if figures.by_code is None:
            assert answer["byCode"] is None
            return
        assert {c["code"]: c["records"] for c in answer["byCode"]} == figures.by_code
        if answer["byCode"] and "rate" in answer["byCode"][0]:
            assert {c["code"]: c["rate"] for c in answer["byCode"]} == figures.code_rates


def check_marks(
    answer: dict[str, Any], units: Partition, group_by: list[str], flt: Filter, year_id: int
) -> None:
    """Every group (the set and each one's figures), the total and `spanning` against the
    model, and total = Σ groups + spanning exactly."""
    expected = expected_marks(units, group_by, flt)
    check_mark_group(answer["total"], expected.total)
    if expected.spanning is None:
        assert answer["spanning"] is None
    else:
        check_mark_group(answer["spanning"], expected.spanning)
        assert all(value is None for value in answer["spanning"]["key"].values())
    answered = {answer_key(g, group_by, year_id=year_id): g for g in answer["groups"]}
    assert len(answered) == len(answer["groups"])
    if group_by:
        assert set(answered) == set(expected.groups)
        for key, group in answered.items():
            check_mark_group(group, expected.groups[key])
    else:
        assert answer["groups"] == [] and answer["spanning"] is None
        return
    shown = [g for g in answer["groups"] if not g["suppressed"]]
    if answer["spanning"] is not None:
        shown.append(answer["spanning"])
    assert (answer["total"]["markCount"] or 0) == sum(g["markCount"] for g in shown)
    for value, count in expected.total.values.items():
        parts = [d["count"] for g in shown for d in g["distribution"] if d["value"] == value]
        assert sum(parts) == count


def check_attendance(
    answer: dict[str, Any],
    records: Partition,
    lessons: Partition,
    group_by: list[str],
    flt: Filter,
    year_id: int,
) -> None:
    """Groups, total and spanning against the model; total = Σ groups + spanning per code."""
    expected = expected_attendance(records, lessons, group_by, flt)
    check_attendance_group(answer["total"], expected.total)
    if expected.spanning is None:
        assert answer["spanning"] is None
    else:
        check_attendance_group(answer["spanning"], expected.spanning)
    got = {answer_key(g, group_by, year_id=year_id): g for g in answer["groups"]}
    assert len(got) == len(answer["groups"])
    assert set(got) == set(expected.groups)
    for key, group in got.items():
        check_attendance_group(group, expected.groups[key])
    per_code: dict[str, int] = {}
    shown = [g for g in answer["groups"] if not g["suppressed"]]
    if answer["spanning"] is not None:
        shown.append(answer["spanning"])
    for group in shown:
        for count in group["byCode"]:
            per_code[count["code"]] = per_code.get(count["code"], 0) + count["records"]
    assert per_code == {c["code"]: c["records"] for c in answer["total"]["byCode"] or []}


ATTENDANCE_QUERY = (
    "query($g: [AttendanceDimension!]!, $f: AnalyticsFilter) { regionalAnalytics { "
    "attendance(groupBy: $g, filter: $f) { total { suppressed lessons studentLessons records "
    "rate byCode { code records rate } } spanning { suppressed lessons studentLessons "
    f"records rate byCode {{ code records rate }} }} groups {{ {KEY_FIELDS} suppressed "
    "lessons records studentLessons rate byCode { code records rate } } } } }"
)


async def ask_attendance(
    client: httpx.AsyncClient, token: str, group_by: list[str], flt: Filter | None = None
) -> dict[str, Any]:
    """The attendance answer (total, spanning, groups with every figure) of a grouping."""
    variables = {"g": group_by, "f": None if flt is None else flt.api()}
    body = await ask(client, token, ATTENDANCE_QUERY, variables)
    assert "errors" not in body, body
    result: dict[str, Any] = body["data"]["regionalAnalytics"]["attendance"]
    return result

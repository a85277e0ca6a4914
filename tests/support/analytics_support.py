"""Test helpers for the regional analytics: expected figures computed independently.

The expected values are computed in Python from raw journal rows read over the owner
connection from the `school` tables (not the diary_api views, not the gateway's cells):
each mark / absence is placed in its base cell (school, grade, subject, period, work
type / code), a cell is published when it has at least k distinct students, and a
group's figures are sums over its published cells.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import asyncpg
import httpx
from starlette.applications import Starlette

from gateway.app import create_app
from gateway.core.settings import Settings
from tests.support.planted import post_graphql

# Cell key: (school, municipality, grade, subject, year, scheme, number, work type | code)
CellKey = tuple[Any, ...]
DIMENSION_INDEX = {
    "SCHOOL": (0,),
    "MUNICIPALITY": (1,),
    "GRADE": (2,),
    "SUBJECT": (3,),
    "PERIOD": (4, 5, 6),
    "WORK_TYPE": (7,),
    "CODE": (7,),
}

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


@dataclass(slots=True)
class MarkCell:
    students: set[int] = field(default_factory=set)
    marks: int = 0
    counted: int = 0
    weighted_sum: Decimal = Decimal(0)
    weight_sum: Decimal = Decimal(0)
    values: dict[str, int] = field(default_factory=lambda: defaultdict(int))


@dataclass(slots=True)
class AttendanceCell:
    students: set[int] = field(default_factory=set)
    records: int = 0


async def mark_cells(conn: asyncpg.Connection) -> dict[CellKey, MarkCell]:
    cells: dict[CellKey, MarkCell] = defaultdict(MarkCell)
    for row in await conn.fetch(_MARK_ROWS):
        cell = cells[tuple(row[:8])]
        cell.students.add(row["student_id"])
        cell.marks += 1
        cell.values[row["value"]] += 1
        if row["counts_in_average"] and row["numeric_value"] is not None and row["weight"] > 0:
            cell.counted += 1
            cell.weighted_sum += row["weight"] * row["numeric_value"]
            cell.weight_sum += row["weight"]
    return dict(cells)


async def attendance_cells(conn: asyncpg.Connection) -> dict[CellKey, AttendanceCell]:
    cells: dict[CellKey, AttendanceCell] = defaultdict(AttendanceCell)
    for row in await conn.fetch(_ATTENDANCE_ROWS):
        cell = cells[tuple(row[:8])]
        cell.students.add(row["student_id"])
        cell.records += 1
    return dict(cells)


def group_key(key: CellKey, dimensions: Iterable[str]) -> tuple[Any, ...]:
    indexes = sorted({i for name in dimensions for i in DIMENSION_INDEX[name]})
    return tuple(key[i] for i in indexes)


@dataclass(slots=True)
class MarkFigures:
    published: bool = False
    marks: int = 0
    counted: int = 0
    weighted_sum: Decimal = Decimal(0)
    weight_sum: Decimal = Decimal(0)
    values: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def average(self) -> float | None:
        if not self.weight_sum:
            return None
        ratio = self.weighted_sum / self.weight_sum
        return float(ratio.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def expected_marks(
    cells: dict[CellKey, MarkCell],
    dimensions: Iterable[str],
    k: int,
    keep: Callable[[CellKey], bool] = lambda _key: True,
) -> dict[tuple[Any, ...], MarkFigures]:
    """Figures per group (the key of the grouped cell columns); () is the total."""
    dimensions = list(dimensions)
    groups: dict[tuple[Any, ...], MarkFigures] = defaultdict(MarkFigures)
    for key, cell in cells.items():
        if not keep(key):
            continue
        for target in {group_key(key, dimensions), ()}:
            figures = groups[target]
            if len(cell.students) < k:
                continue
            figures.published = True
            figures.marks += cell.marks
            figures.counted += cell.counted
            figures.weighted_sum += cell.weighted_sum
            figures.weight_sum += cell.weight_sum
            for value, count in cell.values.items():
                figures.values[value] += count
    return dict(groups)


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

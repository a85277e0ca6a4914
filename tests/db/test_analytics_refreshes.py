"""Answers of two refreshes compared: a cell merged into a unit never stands alone later
(units are sticky for the school year), so the difference of the two answers is the
records added in between, never a small cell's history (real PostgreSQL, real HTTP)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest

from gateway.core.settings import Settings
from resolvers.analytics.service import refresh_cells
from tests.support.analytics_support import analytics_client, ask

ANALYST = "regional-analyst"
FINEST = ["SCHOOL", "GRADE", "SUBJECT", "PERIOD", "WORK_TYPE"]
QUERY = (
    "query($g: [MarkDimension!]!, $f: AnalyticsFilter) { regionalAnalytics { marks(groupBy: $g,"
    " filter: $f) { total { suppressed markCount distribution { value count } }"
    " groups { key { grade } suppressed markCount } } } }"
)
_CELLS = """
SELECT c.school_id, c.grade, c.subject_id, c.period_scheme, c.period_number, c.work_type_id,
       c.students, a.unit_id,
       (SELECT count(*) FROM gateway.analytics_assignments o
        WHERE o.kind = 'marks' AND o.unit_id = a.unit_id) AS cells
FROM diary_api.analytics_mark_cells c
JOIN gateway.analytics_assignments a
  ON a.kind = 'marks' AND a.school_id = c.school_id AND a.grade = c.grade
 AND a.subject_id = c.subject_id AND a.year_id = c.year_id
 AND a.period_scheme = c.period_scheme AND a.period_number = c.period_number
 AND a.detail = c.work_type_id::text
WHERE a.level >= 1 AND c.students = $1
ORDER BY c.school_id, c.grade, c.subject_id, c.period_number, c.work_type_id
"""
# A lesson of the cell's class, subject and period, and a student of that class with no
# mark of the cell's work type in the period.
_NEWCOMER = """
SELECT l.id AS lesson_id, l.date, st.id AS student_id
FROM school.lessons l
JOIN school.classes cl ON cl.id = l.class_id
JOIN school.periods p ON p.school_id = cl.school_id AND p.year_id = cl.year_id
 AND p.scheme = cl.period_scheme AND l.date BETWEEN p.starts_on AND p.ends_on
JOIN school.students st ON st.class_id = cl.id
WHERE cl.school_id = $1 AND cl.grade = $2 AND l.subject_id = $3 AND p.scheme = $4
  AND p.number = $5 AND l.status <> 'cancelled'
  AND NOT EXISTS (
      SELECT 1 FROM school.marks m JOIN school.lessons ml ON ml.id = m.lesson_id
      WHERE m.student_id = st.id AND ml.subject_id = $3 AND m.work_type_id = $6
        AND m.date BETWEEN p.starts_on AND p.ends_on)
ORDER BY l.date, st.id
LIMIT 1
"""


@dataclass(frozen=True, slots=True)
class Target:
    """A cell one student short of k, merged into a unit of several cells."""

    school_id: int
    grade: int
    subject_id: int
    scheme: str
    number: int
    work_type_id: int
    unit_id: int

    def cell_filter(self) -> dict[str, Any]:
        return {
            "schoolIds": [str(self.school_id)],
            "grades": [self.grade],
            "subjectIds": [str(self.subject_id)],
            "periodScheme": self.scheme.upper(),
            "periodNumbers": [self.number],
            "workTypeIds": [str(self.work_type_id)],
        }


@pytest.fixture
async def rebuilt(settings: Settings, database_url: str) -> AsyncIterator[None]:
    """Units built afresh now for the suite's k, and again afterwards from the journal as
    left (placed afresh: units are sticky, and the test moved a cell across k)."""
    await refresh_cells(database_url, settings, restart=True)
    yield
    await refresh_cells(database_url, settings, restart=True)


async def _marks(
    settings: Settings, pool: asyncpg.Pool, token: str, group_by: list[str], flt: dict[str, Any]
) -> dict[str, Any]:
    async with analytics_client(settings, pool) as client:
        body = await ask(client, token, QUERY, {"g": group_by, "f": flt})
    assert "errors" not in body, body
    marks: dict[str, Any] = body["data"]["regionalAnalytics"]["marks"]
    return marks


async def test_a_merged_cell_that_reaches_k_stays_in_its_unit(
    settings: Settings,
    pool: asyncpg.Pool,
    tokens: dict[str, str],
    owner_conn: asyncpg.Connection,
    database_url: str,
    rebuilt: None,
) -> None:
    k = settings.analytics.min_group_size
    candidates = [row for row in await owner_conn.fetch(_CELLS, k - 1) if row["cells"] > 1]
    assert candidates, "the scale-1 data should have a merged cell of k - 1 students"
    for row in candidates:
        newcomer = await owner_conn.fetchrow(
            _NEWCOMER,
            *(row[c] for c in ("school_id", "grade", "subject_id")),
            row["period_scheme"],
            row["period_number"],
            row["work_type_id"],
        )
        if newcomer is not None:
            break
    else:
        raise AssertionError("no class with a student left to mark")
    target = Target(
        row["school_id"],
        row["grade"],
        row["subject_id"],
        row["period_scheme"],
        row["period_number"],
        row["work_type_id"],
        row["unit_id"],
    )
    alone = await _marks(settings, pool, tokens[ANALYST], FINEST, target.cell_filter())
    assert [g["suppressed"] for g in alone["groups"]] == [True]  # merged: not alone
    mark_id = await owner_conn.fetchval("SELECT max(id) + 1 FROM school.marks")
    await owner_conn.execute(
        """INSERT INTO school.marks (id, student_id, lesson_id, date, work_type_id, value,
                                     numeric_value, weight)
           VALUES ($1, $2, $3, $4, $5, '5', 5, 1)""",
        mark_id,
        newcomer["student_id"],
        newcomer["lesson_id"],
        newcomer["date"],
        target.work_type_id,
    )
    try:
        await refresh_cells(database_url, settings)
        students = await owner_conn.fetchval(
            """SELECT students FROM diary_api.analytics_mark_cells WHERE school_id = $1
               AND grade = $2 AND subject_id = $3 AND period_scheme = $4
               AND period_number = $5 AND work_type_id = $6""",
            target.school_id,
            target.grade,
            target.subject_id,
            target.scheme,
            target.number,
            target.work_type_id,
        )
        assert students == k  # big enough on its own now ...
        unit_id = await owner_conn.fetchval(
            """SELECT unit_id FROM gateway.analytics_assignments WHERE kind = 'marks'
               AND school_id = $1 AND grade = $2 AND subject_id = $3 AND period_scheme = $4
               AND period_number = $5 AND detail = $6""",
            target.school_id,
            target.grade,
            target.subject_id,
            target.scheme,
            target.number,
            str(target.work_type_id),
        )
        assert unit_id == target.unit_id  # ... and still in its unit
        later = await _marks(settings, pool, tokens[ANALYST], FINEST, target.cell_filter())
        # Published alone now, the cell would give away its siblings: the unit's answer
        # before minus this one. It stays withheld.
        assert [g["suppressed"] for g in later["groups"]] == [True]
        assert later["total"]["suppressed"] is True
    finally:
        await owner_conn.execute("DELETE FROM school.marks WHERE id = $1", mark_id)

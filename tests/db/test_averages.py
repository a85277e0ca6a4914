"""Weighted averages Σ(w·m)/Σ(w), checked against an independent SQL computation.

The explanation (`contributions`) must list every mark of the subject in the window,
say whether it counted and why, with its weight and numeric value.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from typing import Any

import asyncpg
import pytest
import strawberry

from resolvers.common.types import PeriodScheme, Subject, WorkType
from resolvers.diary.averages import current_period, subject_average
from resolvers.diary.rows import PeriodRecord
from resolvers.diary.types import LessonSummary, Mark
from tests.support.environment import TODAY, GraphQL
from tests.support.journal import family_student_ids
from tests.support.planted import error_codes

ACCOUNT = "parent-one-school"

AVERAGES_QUERY = """
query Averages($id: ID!, $period: ID, $from: Date, $to: Date) {
  student(id: $id) {
    averages(periodId: $period, from: $from, to: $to) {
      subject { id name }
      weightedAverage weightSum marksCounted
      contributions { counted weight numericValue reason mark { id value countsInAverage } }
    }
  }
}
"""

# The reason a mark does or does not count, computed in SQL (teacher's flag first).
REASON_SQL = """
CASE WHEN NOT m.counts_in_average THEN 'NOT_COUNTED_BY_TEACHER'
     WHEN m.numeric_value IS NULL THEN 'NO_NUMERIC_VALUE'
     WHEN m.weight <= 0 THEN 'ZERO_WEIGHT'
     ELSE 'COUNTED' END
"""


async def expected_averages(
    conn: asyncpg.Connection, student_id: int, date_from: date, date_to: date
) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        f"""
        WITH m AS (
            SELECT m.*, l.subject_id, {REASON_SQL} AS reason
            FROM school.marks m JOIN school.lessons l ON l.id = m.lesson_id
            WHERE m.student_id = $1 AND m.date BETWEEN $2 AND $3
        )
        SELECT s.id, s.name,
               round(sum(m.weight * m.numeric_value) FILTER (WHERE reason = 'COUNTED')
                     / nullif(sum(m.weight) FILTER (WHERE reason = 'COUNTED'), 0), 2) AS average,
               coalesce(sum(m.weight) FILTER (WHERE reason = 'COUNTED'), 0) AS weight_sum,
               count(*) FILTER (WHERE reason = 'COUNTED') AS counted,
               array_agg(m.id::text || ':' || reason ORDER BY m.date, m.id) AS reasons
        FROM m JOIN school.subjects s ON s.id = m.subject_id
        GROUP BY s.id, s.name
        ORDER BY s.name, s.id
        """,
        student_id,
        date_from,
        date_to,
    )
    return [
        {
            "subject": {"id": str(row["id"]), "name": row["name"]},
            "weightedAverage": None if row["average"] is None else float(row["average"]),
            "weightSum": float(row["weight_sum"]),
            "marksCounted": row["counted"],
            "reasons": sorted(row["reasons"]),
        }
        for row in rows
    ]


def summarised(averages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The GraphQL averages in the shape of `expected_averages`."""
    return [
        {
            "subject": item["subject"],
            "weightedAverage": item["weightedAverage"],
            "weightSum": item["weightSum"],
            "marksCounted": item["marksCounted"],
            "reasons": sorted(f"{c['mark']['id']}:{c['reason']}" for c in item["contributions"]),
        }
        for item in averages
    ]


async def period_of(conn: asyncpg.Connection, student_id: int) -> asyncpg.Record:
    row = await conn.fetchrow(
        """SELECT p.id, p.starts_on, p.ends_on FROM school.students st
           JOIN school.classes c ON c.id = st.class_id
           JOIN school.periods p ON p.school_id = st.school_id AND p.year_id = c.year_id
                                AND p.scheme = c.period_scheme
           WHERE st.id = $1 AND $2 BETWEEN p.starts_on AND p.ends_on""",
        student_id,
        TODAY,
    )
    assert row is not None
    return row


async def averages_of(gql: GraphQL, student_id: int, **arguments: str) -> list[dict[str, Any]]:
    payload = await gql(AVERAGES_QUERY, {"id": str(student_id), **arguments}, account=ACCOUNT)
    assert "errors" not in payload, payload
    averages: list[dict[str, Any]] = payload["data"]["student"]["averages"]
    return averages


async def test_default_averages_are_over_the_current_period(
    gql: GraphQL, owner_conn: asyncpg.Connection
) -> None:
    checked = 0
    for student_id in await family_student_ids(owner_conn, ACCOUNT):
        period = await period_of(owner_conn, student_id)
        expected = await expected_averages(
            owner_conn, student_id, period["starts_on"], period["ends_on"]
        )
        shown = await averages_of(gql, student_id)
        assert summarised(shown) == expected
        checked += sum(1 for item in expected if item["weightedAverage"] is not None)
    assert checked > 3, "the demo children have averages in several subjects"


async def test_averages_over_a_period_and_over_dates(
    gql: GraphQL, owner_conn: asyncpg.Connection
) -> None:
    (student_id, *_) = await family_student_ids(owner_conn, ACCOUNT)
    first = await owner_conn.fetchrow(
        """SELECT p.id, p.starts_on, p.ends_on FROM school.students st
           JOIN school.classes c ON c.id = st.class_id
           JOIN school.periods p ON p.school_id = st.school_id AND p.year_id = c.year_id
                                AND p.scheme = c.period_scheme
           WHERE st.id = $1 ORDER BY p.number LIMIT 1""",
        student_id,
    )
    by_period = await averages_of(gql, student_id, period=str(first["id"]))
    assert summarised(by_period) == await expected_averages(
        owner_conn, student_id, first["starts_on"], first["ends_on"]
    )
    window = (date(2026, 10, 1), date(2026, 11, 27))
    by_dates = await averages_of(
        gql, student_id, **{"from": window[0].isoformat(), "to": window[1].isoformat()}
    )
    assert summarised(by_dates) == await expected_averages(owner_conn, student_id, *window)


async def test_contributions_carry_weights_and_values(
    gql: GraphQL, owner_conn: asyncpg.Connection
) -> None:
    (student_id, *_) = await family_student_ids(owner_conn, ACCOUNT)
    period = await period_of(owner_conn, student_id)
    rows = await owner_conn.fetch(
        """SELECT id, weight, numeric_value, value, counts_in_average FROM school.marks
           WHERE student_id = $1 AND date BETWEEN $2 AND $3""",
        student_id,
        period["starts_on"],
        period["ends_on"],
    )
    by_id = {str(row["id"]): row for row in rows}
    shown = await averages_of(gql, student_id)
    contributions = [c for item in shown for c in item["contributions"]]
    assert sorted(c["mark"]["id"] for c in contributions) == sorted(by_id)
    for contribution in contributions:
        row = by_id[contribution["mark"]["id"]]
        assert contribution["weight"] == float(row["weight"])
        numeric = row["numeric_value"]
        assert contribution["numericValue"] == (None if numeric is None else float(numeric))
        assert contribution["mark"]["value"] == row["value"]
        assert contribution["counted"] == (contribution["reason"] == "COUNTED")
    for item in shown:
        counted = [c for c in item["contributions"] if c["counted"]]
        weight_sum = sum(c["weight"] for c in counted)
        assert item["marksCounted"] == len(counted)
        assert item["weightSum"] == pytest.approx(weight_sum)
        if counted:
            mean = sum(c["weight"] * c["numericValue"] for c in counted) / weight_sum
            # Rounded to hundredths, half up (float noise allowed at the half).
            assert abs(item["weightedAverage"] - mean) <= 0.005 + 1e-9


@pytest.fixture
async def planted_marks(owner_conn: asyncpg.Connection) -> AsyncIterator[dict[str, Any]]:
    """Marks that must not count, on a lesson whose subject has no other marks that day."""
    (student_id, *_) = await family_student_ids(owner_conn, ACCOUNT)
    lesson = await owner_conn.fetchrow(
        """SELECT l.id, l.date, l.subject_id FROM school.students st
           JOIN school.lessons l ON l.class_id = st.class_id
           WHERE st.id = $1 AND l.date <= $2 AND l.status = 'held'
             AND NOT EXISTS (SELECT 1 FROM school.marks m
                             JOIN school.lessons ml ON ml.id = m.lesson_id
                             WHERE m.student_id = st.id AND m.date = l.date
                               AND ml.subject_id = l.subject_id)
           ORDER BY l.date DESC, l.number LIMIT 1""",
        student_id,
        TODAY,
    )
    assert lesson is not None
    first_id = await owner_conn.fetchval("SELECT max(id) + 1000 FROM school.marks")
    # (value, numeric value, weight, counts in average, expected reason)
    planted = [
        ("5", 5, 0, True, "ZERO_WEIGHT"),
        ("2", 2, 2, False, "NOT_COUNTED_BY_TEACHER"),
        ("зачёт", None, 1, True, "NO_NUMERIC_VALUE"),
        ("осв", None, 1, False, "NOT_COUNTED_BY_TEACHER"),
    ]
    work_type = await owner_conn.fetchval("SELECT min(id) FROM school.work_types")
    reasons: dict[str, str] = {}
    for offset, (value, numeric, weight, counts, reason) in enumerate(planted):
        mark_id = first_id + offset
        await owner_conn.execute(
            """INSERT INTO school.marks (id, student_id, lesson_id, date, work_type_id, value,
                                         numeric_value, weight, counts_in_average)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)""",
            mark_id,
            student_id,
            lesson["id"],
            lesson["date"],
            work_type,
            value,
            numeric,
            weight,
            counts,
        )
        reasons[str(mark_id)] = reason
    try:
        yield {
            "student_id": student_id,
            "date": lesson["date"],
            "subject_id": lesson["subject_id"],
            "reasons": reasons,
        }
    finally:
        await owner_conn.execute(
            "DELETE FROM school.marks WHERE id = ANY($1::bigint[])",
            [int(mark_id) for mark_id in reasons],
        )


async def test_marks_that_do_not_count_are_explained(
    gql: GraphQL, owner_conn: asyncpg.Connection, planted_marks: dict[str, Any]
) -> None:
    student_id = planted_marks["student_id"]
    day: date = planted_marks["date"]
    shown = await averages_of(gql, student_id, **{"from": day.isoformat(), "to": day.isoformat()})
    (subject,) = [s for s in shown if s["subject"]["id"] == str(planted_marks["subject_id"])]
    assert subject["weightedAverage"] is None
    assert subject["weightSum"] == 0
    assert subject["marksCounted"] == 0
    assert {c["mark"]["id"]: c["reason"] for c in subject["contributions"]} == planted_marks[
        "reasons"
    ]
    assert not any(c["counted"] for c in subject["contributions"])
    # Over the whole period, the planted marks change nothing but the explanation.
    period = await period_of(owner_conn, student_id)
    expected = await expected_averages(
        owner_conn, student_id, period["starts_on"], period["ends_on"]
    )
    assert summarised(await averages_of(gql, student_id)) == expected


STAMP = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
MATH = Subject(id=strawberry.ID("1"), name="Математика")


def _mark(value: str, numeric: float | None, weight: float, *, counts: bool = True) -> Mark:
    return Mark(
        id=strawberry.ID(value),
        value=value,
        numeric_value=numeric,
        work_type=WorkType(id=strawberry.ID("1"), name="Ответ", short_name="Отв", weight=1.0),
        weight=weight,
        work_title=None,
        comment=None,
        date=TODAY,
        counts_in_average=counts,
        subject=MATH,
        lesson=LessonSummary(id=strawberry.ID("1"), date=TODAY, number=1, topic=None),
        created_at=STAMP,
        updated_at=STAMP,
    )


@pytest.mark.parametrize(
    ("marks", "average", "weight_sum"),
    [
        # 5·1 + 4·1 + 4·1 = 13 / 3 = 4.333…
        ([_mark("5", 5, 1), _mark("4", 4, 1), _mark("4a", 4, 1)], 4.33, 3.0),
        # 5·2 + 4·0.5 = 12 / 2.5 = 4.8; the zero-weight 2 and the teacher's 2 change nothing.
        (
            [
                _mark("5", 5, 2),
                _mark("4", 4, 0.5),
                _mark("2", 2, 0),
                _mark("2x", 2, 1, counts=False),
            ],
            4.8,
            2.5,
        ),
        # Half-way rounds up: (4.75·1 + 4·1) / 2 = 4.375 → 4.38.
        ([_mark("5-", 4.75, 1), _mark("4", 4, 1)], 4.38, 2.0),
        ([_mark("зачёт", None, 1), _mark("0w", 5, 0)], None, 0.0),
        ([], None, 0.0),
    ],
)
def test_weighted_average_arithmetic(
    marks: list[Mark], average: float | None, weight_sum: float
) -> None:
    result = subject_average(MATH, marks)
    assert result.weighted_average == average
    assert result.weight_sum == weight_sum
    assert len(result.contributions) == len(marks)


@pytest.mark.parametrize(
    ("variables", "code"),
    [
        ({"period": "1", "from": "2026-11-01", "to": "2026-11-10"}, "BAD_USER_INPUT"),
        ({"from": "2026-11-01"}, "BAD_USER_INPUT"),
        ({"period": "abc"}, "BAD_USER_INPUT"),
        ({"period": "2147483647"}, "NOT_FOUND"),
        ({"from": "2025-09-01", "to": "2026-11-27"}, "DATE_RANGE_TOO_LONG"),
        ({"from": "2026-11-27", "to": "2026-11-01"}, "DATE_RANGE_REVERSED"),
    ],
)
async def test_averages_argument_errors(
    gql: GraphQL, owner_conn: asyncpg.Connection, variables: dict[str, str], code: str
) -> None:
    (student_id, *_) = await family_student_ids(owner_conn, ACCOUNT)
    payload = await gql(AVERAGES_QUERY, {"id": str(student_id), **variables}, account=ACCOUNT)
    assert error_codes(payload) == [code]
    assert payload["data"] == {"student": None}


def _period(number: int, starts_on: date, ends_on: date) -> PeriodRecord:
    return PeriodRecord(
        id=number,
        number=number,
        title=f"{number} четверть",
        scheme=PeriodScheme.QUARTERS,
        starts_on=starts_on,
        ends_on=ends_on,
        year_title="2026/2027",
    )


QUARTERS = [
    _period(1, date(2026, 9, 1), date(2026, 10, 23)),
    _period(2, date(2026, 11, 2), date(2026, 12, 28)),
]


@pytest.mark.parametrize(
    ("today", "expected"),
    [
        (date(2026, 11, 27), 2),  # inside the second quarter
        (date(2026, 10, 28), 1),  # autumn holidays: the quarter just finished
        (date(2026, 8, 20), 1),  # before the year: the first quarter
        (date(2027, 1, 5), 2),  # winter holidays
    ],
)
def test_default_period_for_averages(today: date, expected: int) -> None:
    period = current_period(QUARTERS, today=today)
    assert period is not None and period.number == expected
    assert current_period([], today=today) is None

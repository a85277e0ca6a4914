"""Regional analytics grouped by one dimension alone (issue 9, item 14).

`attendance(groupBy: [CODE])` answered no groups while its total had thousands of
records. Every single dimension, for marks and for attendance, is checked here against
figures computed independently from the `school` tables (tests/support/analytics_support.py),
against the total, and against a finer grouping summed up.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from starlette.applications import Starlette

from gateway.core.settings import Settings
from tests.support.analytics_support import (
    KEY_FIELDS,
    MARK_FIELDS,
    AttendanceCell,
    CellKey,
    answer_key,
    ask,
    attendance_cells,
    expected_marks,
    group_key,
    mark_cells,
)

ANALYST = "regional-analyst"
MARKS = (
    "query($g: [MarkDimension!]!) { regionalAnalytics { marks(groupBy: $g) { "
    f"total {{ {MARK_FIELDS} }} groups {{ {MARK_FIELDS} }} }} }} }}"
)
ATTENDANCE = (
    "query($g: [AttendanceDimension!]!) { regionalAnalytics { attendance(groupBy: $g) { "
    "total { suppressed studentLessons records byCode { code records } } "
    f"groups {{ {KEY_FIELDS} suppressed studentLessons records rate "
    "byCode { code records } } } } }"
)
MARK_DIMENSIONS = ["SCHOOL", "MUNICIPALITY", "GRADE", "SUBJECT", "PERIOD", "WORK_TYPE"]
ATTENDANCE_DIMENSIONS = ["SCHOOL", "MUNICIPALITY", "GRADE", "SUBJECT", "PERIOD", "CODE"]


@pytest.fixture(scope="module", autouse=True)
async def _close_analytics(app: Starlette) -> AsyncIterator[None]:
    yield
    await app.state.services.close()


@pytest.fixture(scope="module")
async def year_id(owner_conn: asyncpg.Connection) -> int:
    (row,) = await owner_conn.fetch("SELECT id FROM school.academic_years")
    return int(row["id"])


@pytest.fixture(scope="module")
async def absences(owner_conn: asyncpg.Connection) -> dict[CellKey, AttendanceCell]:
    return await attendance_cells(owner_conn)


async def _answer(
    client: httpx.AsyncClient, token: str, query: str, group_by: list[str], field: str
) -> dict[str, Any]:
    body = await ask(client, token, query, {"g": group_by})
    assert "errors" not in body, body
    result: dict[str, Any] = body["data"]["regionalAnalytics"][field]
    return result


def _published_records(
    cells: dict[CellKey, AttendanceCell], dimensions: list[str], k: int
) -> dict[tuple[Any, ...], int | None]:
    """Records per group over its published cells; None for a group with none published."""
    records: dict[tuple[Any, ...], int | None] = {}
    for key, cell in cells.items():
        group = group_key(key, dimensions)
        if len(cell.students) >= k:
            records[group] = (records.get(group) or 0) + cell.records
        else:
            records.setdefault(group, None)
    return records


async def test_attendance_by_code_alone_has_a_group_per_code(
    client: httpx.AsyncClient,
    tokens: dict[str, str],
    settings: Settings,
    absences: dict[CellKey, AttendanceCell],
) -> None:
    k = settings.analytics.min_group_size
    answer = await _answer(client, tokens[ANALYST], ATTENDANCE, ["CODE"], "attendance")
    expected = _published_records(absences, ["CODE"], k)
    got = {group["key"]["code"]: group for group in answer["groups"]}
    print(f"[CODE]: {len(got)} groups {sorted(got)}, total {answer['total']['records']} records")
    assert len(got) == len(answer["groups"]) >= 3
    assert set(got) == {code for (code,) in expected}
    total = answer["total"]
    for code, group in got.items():
        assert group["suppressed"] is (expected[(code,)] is None)
        if group["suppressed"]:
            continue
        assert group["records"] == expected[(code,)]
        assert group["byCode"] == [{"code": code, "records": expected[(code,)]}]
        # No other dimension: the lessons of every code's group are the total's.
        assert group["studentLessons"] == total["studentLessons"]
        assert group["rate"] == round(group["records"] / total["studentLessons"], 4)
    published = [group["records"] for group in got.values() if not group["suppressed"]]
    assert total["records"] == sum(published) > 1000
    assert {c["code"]: c["records"] for c in total["byCode"]} == {
        code: group["records"] for code, group in got.items() if not group["suppressed"]
    }


async def test_attendance_by_code_equals_school_and_code_summed(
    client: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    by_code = await _answer(client, tokens[ANALYST], ATTENDANCE, ["CODE"], "attendance")
    finer = await _answer(client, tokens[ANALYST], ATTENDANCE, ["SCHOOL", "CODE"], "attendance")
    summed: dict[str, int] = defaultdict(int)
    for group in finer["groups"]:
        if not group["suppressed"]:
            summed[group["key"]["code"]] += group["records"]
    alone = {g["key"]["code"]: g["records"] for g in by_code["groups"] if not g["suppressed"]}
    assert alone == dict(summed)
    assert by_code["total"]["records"] == finer["total"]["records"] == sum(summed.values())


@pytest.mark.parametrize("dimension", ATTENDANCE_DIMENSIONS)
async def test_attendance_by_each_dimension_alone(
    client: httpx.AsyncClient,
    tokens: dict[str, str],
    settings: Settings,
    absences: dict[CellKey, AttendanceCell],
    year_id: int,
    dimension: str,
) -> None:
    k = settings.analytics.min_group_size
    answer = await _answer(client, tokens[ANALYST], ATTENDANCE, [dimension], "attendance")
    expected = _published_records(absences, [dimension], k)
    got = {answer_key(g, [dimension], year_id=year_id): g for g in answer["groups"]}
    print(f"attendance [{dimension}]: {len(got)} groups, {answer['total']['records']} records")
    published = {group: records for group, records in expected.items() if records is not None}
    assert published, "the data set has published attendance cells"
    assert set(published) <= set(got)
    for group, records in published.items():
        assert got[group]["suppressed"] is False
        assert got[group]["records"] == records
    assert answer["total"]["records"] == sum(published.values())


@pytest.mark.parametrize("dimension", MARK_DIMENSIONS)
async def test_marks_by_each_dimension_alone(
    client: httpx.AsyncClient,
    tokens: dict[str, str],
    settings: Settings,
    owner_conn: asyncpg.Connection,
    year_id: int,
    dimension: str,
) -> None:
    k = settings.analytics.min_group_size
    answer = await _answer(client, tokens[ANALYST], MARKS, [dimension], "marks")
    expected = expected_marks(await mark_cells(owner_conn), [dimension], k)
    got = {answer_key(g, [dimension], year_id=year_id): g for g in answer["groups"]}
    print(f"marks [{dimension}]: {len(got)} groups, {answer['total']['markCount']} marks")
    assert set(got) == set(expected) - {()}
    assert len(got) >= 2
    for key, group in got.items():
        figures = expected[key]
        assert group["suppressed"] is not figures.published
        if figures.published:
            assert group["markCount"] == figures.marks
            assert group["weightedAverage"] == figures.average()
    released = sum(g["markCount"] for g in got.values() if not g["suppressed"])
    assert answer["total"]["markCount"] == released == expected[()].marks

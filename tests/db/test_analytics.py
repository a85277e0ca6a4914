"""Regional analytics: figures against independent aggregates, small-group suppression,
the complementary attack, attendance rates and refresh freshness (real PostgreSQL,
real HTTP through the app)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import asyncpg
import httpx
import pytest
from starlette.applications import Starlette

from gateway.core.settings import Settings
from resolvers.analytics import sql as analytics_data
from resolvers.analytics.service import AnalyticsService, refresh_cells
from tests.support.analytics_support import (
    KEY_FIELDS,
    MARK_FIELDS,
    CellKey,
    MarkCell,
    analytics_client,
    answer_key,
    ask,
    attendance_cells,
    codes,
    expected_marks,
    group_key,
    mark_cells,
)

ANALYST = "regional-analyst"
MARKS = (
    "query($g: [MarkDimension!]!, $f: AnalyticsFilter) { regionalAnalytics { minGroupSize "
    "freshness { refreshedAt asOf } marks(groupBy: $g, filter: $f) { refreshedAt "
    f"minGroupSize total {{ {MARK_FIELDS} }} groups {{ {MARK_FIELDS} }} }} }} }}"
)


@pytest.fixture(scope="module", autouse=True)
async def _close_analytics(app: Starlette) -> AsyncIterator[None]:
    yield
    await app.state.services.close()


@pytest.fixture(scope="module")
async def cells(owner_conn: asyncpg.Connection) -> dict[CellKey, MarkCell]:
    return await mark_cells(owner_conn)


@pytest.fixture(scope="module")
async def year_id(owner_conn: asyncpg.Connection) -> int:
    (row,) = await owner_conn.fetch("SELECT id FROM school.academic_years")
    return int(row["id"])


async def marks(
    client: httpx.AsyncClient, token: str, group_by: list[str], flt: dict[str, Any] | None = None
) -> dict[str, Any]:
    body = await ask(client, token, MARKS, {"g": group_by, "f": flt})
    assert "errors" not in body, body
    result: dict[str, Any] = body["data"]["regionalAnalytics"]["marks"]
    return result


def check_group(answer: dict[str, Any], figures: Any) -> None:
    if not figures.published:
        assert answer["suppressed"] is True
        assert answer["markCount"] is None and answer["weightedAverage"] is None
        assert answer["distribution"] is None
        return
    assert answer["suppressed"] is False
    assert answer["markCount"] == figures.marks
    assert answer["countedMarkCount"] == figures.counted
    assert answer["weightSum"] == pytest.approx(float(figures.weight_sum))
    assert answer["weightedAverage"] == figures.average()
    assert {d["value"]: d["count"] for d in answer["distribution"]} == dict(figures.values)


@pytest.mark.parametrize(
    "group_by",
    [[], ["MUNICIPALITY"], ["SUBJECT"], ["SCHOOL", "SUBJECT"], ["GRADE", "PERIOD", "WORK_TYPE"]],
)
async def test_mark_figures_match_independent_aggregates(
    client: httpx.AsyncClient,
    tokens: dict[str, str],
    settings: Settings,
    cells: dict[CellKey, MarkCell],
    year_id: int,
    group_by: list[str],
) -> None:
    k = settings.analytics.min_group_size
    answer = await marks(client, tokens[ANALYST], group_by)
    expected = expected_marks(cells, group_by, k)
    assert answer["minGroupSize"] == k == 10
    check_group(answer["total"], expected[()])
    answered = {answer_key(g, group_by, year_id=year_id): g for g in answer["groups"]}
    if group_by:
        assert set(answered) == set(expected) - {()}
    for key, group in answered.items():
        check_group(group, expected[key])


async def test_some_cells_are_suppressed_and_totals_exclude_them(
    client: httpx.AsyncClient,
    tokens: dict[str, str],
    settings: Settings,
    cells: dict[CellKey, MarkCell],
) -> None:
    """The data has small cells: the total is below the journal's, by exactly their marks."""
    k = settings.analytics.min_group_size
    small = [cell for cell in cells.values() if len(cell.students) < k]
    assert small, "the scale-1 data set should have cells below k"
    answer = await marks(client, tokens[ANALYST], [])
    journal = sum(cell.marks for cell in cells.values())
    assert answer["total"]["markCount"] == journal - sum(cell.marks for cell in small)


def _cell_filter(key: CellKey) -> dict[str, Any]:
    return {
        "schoolIds": [str(key[0])],
        "grades": [key[2]],
        "subjectIds": [str(key[3])],
        "periodScheme": key[5].upper(),
        "periodNumbers": [key[6]],
    }


def _target(cells: dict[CellKey, MarkCell]) -> tuple[CellKey, int]:
    """A cell of n students (3 <= n <= 30) whose coarse group (all work types) has others."""
    for key, cell in sorted(cells.items(), key=lambda item: -item[1].marks):
        n = len(cell.students)
        coarse = group_key(key, ["SCHOOL", "GRADE", "SUBJECT", "PERIOD"])
        siblings = [
            other
            for other_key, other in cells.items()
            if other_key != key
            and group_key(other_key, ["SCHOOL", "GRADE", "SUBJECT", "PERIOD"]) == coarse
            and len(other.students) > n
        ]
        if 3 <= n <= 30 and siblings:
            return key, n
    raise AssertionError("no suitable cell in the data set")


async def test_group_of_k_students_is_shown_and_of_k_minus_1_suppressed(
    settings: Settings,
    pool: asyncpg.Pool,
    tokens: dict[str, str],
    cells: dict[CellKey, MarkCell],
) -> None:
    key, n = _target(cells)
    cell = cells[key]
    flt = {**_cell_filter(key), "workTypeIds": [str(key[7])]}
    dims = ["SCHOOL", "GRADE", "SUBJECT", "PERIOD", "WORK_TYPE"]
    async with analytics_client(settings, pool, min_group_size=n) as client:  # n = k
        shown = await marks(client, tokens[ANALYST], dims, flt)
    assert shown["minGroupSize"] == n
    (group,) = shown["groups"]
    assert group["suppressed"] is False and group["markCount"] == cell.marks
    assert shown["total"]["markCount"] == cell.marks
    async with analytics_client(settings, pool, min_group_size=n + 1) as client:  # n = k - 1
        hidden = await marks(client, tokens[ANALYST], dims, flt)
    (group,) = hidden["groups"]
    assert group["suppressed"] is True
    assert group["markCount"] is None and group["distribution"] is None
    assert hidden["total"]["suppressed"] is True and hidden["total"]["markCount"] is None


async def test_complementary_queries_do_not_recover_a_suppressed_group(
    settings: Settings,
    pool: asyncpg.Pool,
    tokens: dict[str, str],
    cells: dict[CellKey, MarkCell],
) -> None:
    """Total minus the other groups: zero, not the suppressed group's figures."""
    key, n = _target(cells)
    target = cells[key]
    flt = _cell_filter(key)  # the coarse group: every work type of that cell's class-subject
    async with analytics_client(settings, pool, min_group_size=n + 1) as client:
        total = (await marks(client, tokens[ANALYST], [], flt))["total"]
        by_type = await marks(client, tokens[ANALYST], ["WORK_TYPE"], flt)
        region = await marks(client, tokens[ANALYST], [])
        by_school = await marks(client, tokens[ANALYST], ["SCHOOL"])
    groups = {int(g["key"]["workType"]["id"]): g for g in by_type["groups"]}
    assert groups[key[7]]["suppressed"] is True
    others = [g for wt, g in groups.items() if wt != key[7] and not g["suppressed"]]
    assert others, "the coarse group must have published cells"
    assert total["markCount"] - sum(g["markCount"] for g in others) == 0
    for value in target.values:
        shown = sum(d["count"] for g in others for d in g["distribution"] if d["value"] == value)
        in_total = sum(d["count"] for d in total["distribution"] if d["value"] == value)
        assert in_total - shown == 0
    # Region-wide: the total minus every other school leaves the target school's
    # published figures, which do not include the suppressed cell either.
    school = next(g for g in by_school["groups"] if int(g["key"]["school"]["id"]) == key[0])
    rest = sum(
        g["markCount"] for g in by_school["groups"] if g is not school and not g["suppressed"]
    )
    assert region["total"]["markCount"] - rest == school["markCount"]
    expected = expected_marks(cells, ["SCHOOL"], n + 1)
    assert school["markCount"] == expected[(key[0],)].marks
    # With k lowered to n the same cell appears, in the totals too: it was left out.
    async with analytics_client(settings, pool, min_group_size=n) as client:
        total_n = (await marks(client, tokens[ANALYST], [], flt))["total"]
    assert total_n["markCount"] >= total["markCount"] + target.marks


ATTENDANCE = (
    "query($g: [AttendanceDimension!]!, $f: AnalyticsFilter) { regionalAnalytics { "
    f"attendance(groupBy: $g, filter: $f) {{ total {{ suppressed lessons studentLessons records "
    f"rate byCode {{ code records rate }} }} groups {{ {KEY_FIELDS} suppressed records "
    "studentLessons rate byCode { code records rate } } } } }"
)


async def test_attendance_by_code_matches_independent_counts(
    client: httpx.AsyncClient,
    tokens: dict[str, str],
    settings: Settings,
    owner_conn: asyncpg.Connection,
) -> None:
    k = settings.analytics.min_group_size
    expected_cells = await attendance_cells(owner_conn)
    body = await ask(client, tokens[ANALYST], ATTENDANCE, {"g": ["MUNICIPALITY", "CODE"]})
    assert "errors" not in body, body
    answer = body["data"]["regionalAnalytics"]["attendance"]
    expected: dict[tuple[Any, ...], int] = {}
    published: dict[tuple[Any, ...], bool] = {}
    for key, cell in expected_cells.items():
        group = (key[1], key[7])
        published.setdefault(group, False)
        expected.setdefault(group, 0)
        if len(cell.students) >= k:
            published[group] = True
            expected[group] += cell.records
    got = {(int(g["key"]["municipality"]["id"]), g["key"]["code"]): g for g in answer["groups"]}
    assert set(got) == set(expected)
    for group, figures in got.items():
        assert figures["suppressed"] is not published[group]
        if published[group]:
            assert figures["records"] == expected[group]
            assert figures["rate"] == round(expected[group] / figures["studentLessons"], 4)
    total = answer["total"]
    assert total["records"] == sum(expected.values())
    assert total["studentLessons"] == sum(
        (await _student_lessons(owner_conn, settings, k)).values()
    )


async def _student_lessons(conn: asyncpg.Connection, settings: Settings, k: int) -> dict[int, int]:
    """Per school: Σ over held lessons up to today of the class's enrolment, over lesson
    cells of >= k students."""
    rows = await conn.fetch(
        """
        WITH per_class AS (
            SELECT c.school_id, c.grade, l.subject_id, p.scheme, p.number, c.id AS class_id,
                   count(*) AS lessons,
                   (SELECT count(*) FROM school.students s WHERE s.class_id = c.id) AS enrolled
            FROM school.lessons l
            JOIN school.classes c ON c.id = l.class_id
            JOIN school.periods p ON p.school_id = c.school_id AND p.year_id = c.year_id
                 AND p.scheme = c.period_scheme AND l.date BETWEEN p.starts_on AND p.ends_on
            WHERE l.status <> 'cancelled' AND l.date <= $1
            GROUP BY 1, 2, 3, 4, 5, 6
        ), cells AS (
            SELECT school_id, sum(enrolled) AS students, sum(lessons * enrolled) AS student_lessons
            FROM per_class GROUP BY school_id, grade, subject_id, scheme, number
        )
        SELECT school_id, sum(student_lessons) AS student_lessons
        FROM cells WHERE students >= $2 GROUP BY school_id
        """,
        settings.today(),
        k,
    )
    return {row["school_id"]: int(row["student_lessons"]) for row in rows}


async def test_attendance_by_school_matches_independent_counts(
    client: httpx.AsyncClient,
    tokens: dict[str, str],
    settings: Settings,
    owner_conn: asyncpg.Connection,
) -> None:
    k = settings.analytics.min_group_size
    expected_cells = await attendance_cells(owner_conn)
    student_lessons = await _student_lessons(owner_conn, settings, k)
    body = await ask(client, tokens[ANALYST], ATTENDANCE, {"g": ["SCHOOL"]})
    assert "errors" not in body, body
    groups = body["data"]["regionalAnalytics"]["attendance"]["groups"]
    assert {int(g["key"]["school"]["id"]) for g in groups} == set(student_lessons)
    for group in groups:
        school = int(group["key"]["school"]["id"])
        by_code: dict[str, int] = {}
        for key, cell in expected_cells.items():
            if key[0] == school and len(cell.students) >= k:
                by_code[key[7]] = by_code.get(key[7], 0) + cell.records
        assert group["suppressed"] is False
        assert group["studentLessons"] == student_lessons[school]
        assert {c["code"]: c["records"] for c in group["byCode"]} == by_code
        assert group["records"] == sum(by_code.values())
        assert group["rate"] == round(sum(by_code.values()) / student_lessons[school], 4)
        for count in group["byCode"]:
            assert count["rate"] == round(count["records"] / student_lessons[school], 4)


async def test_refresh_makes_new_marks_visible_and_says_when(
    client: httpx.AsyncClient,
    tokens: dict[str, str],
    settings: Settings,
    owner_conn: asyncpg.Connection,
    database_url: str,
    cells: dict[CellKey, MarkCell],
) -> None:
    k = settings.analytics.min_group_size
    key, cell = max(cells.items(), key=lambda item: len(item[1].students))
    assert len(cell.students) >= k
    before = await ask(client, tokens[ANALYST], MARKS, {"g": [], "f": None})
    stamp = before["data"]["regionalAnalytics"]["freshness"]["refreshedAt"]
    count = before["data"]["regionalAnalytics"]["marks"]["total"]["markCount"]
    planted = await _plant_mark(owner_conn, key)
    try:
        stale = await marks(client, tokens[ANALYST], [])
        assert stale["total"]["markCount"] == count  # pre-aggregated: not yet visible
        refreshed = await refresh_cells(database_url, settings)
        after = await ask(client, tokens[ANALYST], MARKS, {"g": [], "f": None})
        analytics = after["data"]["regionalAnalytics"]
        assert analytics["marks"]["total"]["markCount"] == count + 1
        new_stamp = datetime.fromisoformat(analytics["freshness"]["refreshedAt"])
        assert new_stamp == refreshed.refreshed_at > datetime.fromisoformat(stamp)
        assert analytics["marks"]["refreshedAt"] == analytics["freshness"]["refreshedAt"]
        assert analytics["freshness"]["asOf"] == settings.today().isoformat()
    finally:
        await owner_conn.execute("DELETE FROM school.marks WHERE id = $1", planted)
        await refresh_cells(database_url, settings)
    restored = await marks(client, tokens[ANALYST], [])
    assert restored["total"]["markCount"] == count


async def _plant_mark(conn: asyncpg.Connection, key: CellKey) -> int:
    """A '5' for a student of the cell, on a lesson of the cell's subject and period."""
    row = await conn.fetchrow(
        """
        SELECT m.student_id, m.lesson_id, m.date
        FROM school.marks m
        JOIN school.lessons l ON l.id = m.lesson_id
        JOIN school.classes c ON c.id = l.class_id
        WHERE c.school_id = $1 AND c.grade = $2 AND l.subject_id = $3 AND m.work_type_id = $4
        ORDER BY m.id LIMIT 1
        """,
        key[0],
        key[2],
        key[3],
        key[7],
    )
    assert row is not None
    mark_id: int = await conn.fetchval("SELECT max(id) + 1 FROM school.marks")
    await conn.execute(
        """INSERT INTO school.marks (id, student_id, lesson_id, date, work_type_id, value,
                                     numeric_value, weight)
           VALUES ($1, $2, $3, $4, $5, '5', 5, 1)""",
        mark_id,
        row["student_id"],
        row["lesson_id"],
        row["date"],
        key[7],
    )
    return mark_id


@pytest.mark.parametrize(
    "flt",
    [
        {"codes": ["X"]},
        {"grades": [12]},
        {"grades": [40000]},
        {"periodNumbers": [0]},
        {"schoolIds": ["abc"]},
        {"subjectIds": ["0"]},
        {"schoolIds": [str(i) for i in range(1, 1002)]},
    ],
)
async def test_bad_filters_are_bad_user_input(
    client: httpx.AsyncClient, tokens: dict[str, str], flt: dict[str, Any]
) -> None:
    body = await ask(client, tokens[ANALYST], ATTENDANCE, {"g": [], "f": flt})
    assert codes(body) == ["BAD_USER_INPUT"]
    assert body["data"] == {"regionalAnalytics": None}


async def test_finest_grouping_has_a_group_per_cell_and_the_group_count_is_capped(
    client: httpx.AsyncClient,
    tokens: dict[str, str],
    cells: dict[CellKey, MarkCell],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dims = ["SCHOOL", "GRADE", "SUBJECT", "PERIOD", "WORK_TYPE"]
    body = await ask(client, tokens[ANALYST], MARKS, {"g": dims, "f": None})
    assert len(body["data"]["regionalAnalytics"]["marks"]["groups"]) == len(cells)
    monkeypatch.setattr("resolvers.analytics.queries.MAX_GROUPS", len(cells) - 1)
    body = await ask(client, tokens[ANALYST], MARKS, {"g": dims, "f": None})
    assert codes(body) == ["BAD_USER_INPUT"]
    assert f"({len(cells)}," in body["errors"][0]["message"]


async def test_attendance_group_of_k_is_shown_and_of_k_minus_1_suppressed(
    settings: Settings,
    pool: asyncpg.Pool,
    tokens: dict[str, str],
    owner_conn: asyncpg.Connection,
) -> None:
    expected_cells = await attendance_cells(owner_conn)
    key, cell = max(
        ((key, cell) for key, cell in expected_cells.items() if 2 <= len(cell.students) <= 30),
        key=lambda item: (len(item[1].students), item[1].records),
    )
    n = len(cell.students)
    flt = {**_cell_filter(key), "codes": [key[7]]}
    dims = ["SCHOOL", "GRADE", "SUBJECT", "PERIOD", "CODE"]
    async with analytics_client(settings, pool, min_group_size=n) as client:
        shown = await ask(client, tokens[ANALYST], ATTENDANCE, {"g": dims, "f": flt})
    (group,) = shown["data"]["regionalAnalytics"]["attendance"]["groups"]
    assert group["suppressed"] is False and group["records"] == cell.records
    async with analytics_client(settings, pool, min_group_size=n + 1) as client:
        hidden = await ask(client, tokens[ANALYST], ATTENDANCE, {"g": dims, "f": flt})
    (group,) = hidden["data"]["regionalAnalytics"]["attendance"]["groups"]
    assert group["suppressed"] is True
    assert group["records"] is None and group["rate"] is None and group["byCode"] is None
    total = hidden["data"]["regionalAnalytics"]["attendance"]["total"]
    assert total["records"] == 0 and total["byCode"] == []


class _WritesBetweenReads(asyncpg.Connection):  # type: ignore[misc]
    """A connection that lets another transaction commit right after it read the mark
    cells (the first view a refresh reads), before it reads the other views."""

    between: Any = None

    async def fetch(self, query: str, *args: Any, **options: Any) -> list[Any]:
        rows: list[Any] = await super().fetch(query, *args, **options)
        if "diary_api.analytics_mark_cells" in query and self.between is not None:
            await self.between()
        return rows


async def test_a_write_during_a_refresh_is_in_all_new_cells_or_in_none(
    owner_conn: asyncpg.Connection,
    database_url: str,
    settings: Settings,
    cells: dict[CellKey, MarkCell],
) -> None:
    key = next(iter(cells))
    work_type_id: int = await owner_conn.fetchval("SELECT max(id) + 1 FROM school.work_types")
    planted: list[int] = []

    async def plant() -> None:  # a mark in a cell no refresh has seen (a new work type)
        await owner_conn.execute(
            "INSERT INTO school.work_types (id, name, short_name, weight) "
            "VALUES ($1, 'Проверка снимка', 'ПС', 1)",
            work_type_id,
        )
        planted.append(await _plant_mark(owner_conn, key))
        await owner_conn.execute(
            "UPDATE school.marks SET work_type_id = $1 WHERE id = $2", work_type_id, planted[0]
        )

    conn = await asyncpg.connect(
        database_url,
        connection_class=_WritesBetweenReads,
        server_settings={"role": settings.gateway_role},
    )
    try:
        conn.between = plant
        result = await analytics_data.refresh(conn, today=settings.today(), timeout_ms=60_000)
        conn.between = None
        assert result is not None and planted, "the mark was written during the refresh"
        in_cells = await conn.fetchval(
            "SELECT count(*) FROM gateway.analytics_mark_cells WHERE work_type_id = $1",
            work_type_id,
        )
        in_values = await conn.fetchval(
            "SELECT count(*) FROM gateway.analytics_mark_values WHERE work_type_id = $1",
            work_type_id,
        )
        assert (in_cells, in_values) == (0, 0), "the refresh read one snapshot"
    finally:
        await conn.close()
        await owner_conn.execute("DELETE FROM school.marks WHERE id = ANY($1::bigint[])", planted)
        await owner_conn.execute("DELETE FROM school.work_types WHERE id = $1", work_type_id)
        await refresh_cells(database_url, settings)


async def test_a_refresh_that_may_not_wait_skips_while_another_runs(
    database_url: str, settings: Settings
) -> None:
    role = {"role": settings.gateway_role}
    holder = await asyncpg.connect(database_url, server_settings=role)
    other = await asyncpg.connect(database_url, server_settings=role)
    try:
        async with holder.transaction():  # what a running refresh holds
            await holder.execute("LOCK TABLE gateway.analytics_refresh IN EXCLUSIVE MODE")
            skipped = await analytics_data.refresh(
                other, today=settings.today(), timeout_ms=60_000, wait=False
            )
        assert skipped is None
        done = await analytics_data.refresh(
            other, today=settings.today(), timeout_ms=60_000, wait=False
        )
        assert done is not None and done.as_of == settings.today()
    finally:
        await holder.close()
        await other.close()


async def test_the_values_statement_runs_only_when_distribution_is_selected(
    client: httpx.AsyncClient, tokens: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """MarkGroup.distribution declares the part it needs (MarkPart.VALUES); a query
    without it never asks for the per-value counts, one with it (even through a fragment
    on the total only) does."""
    asked: list[bool] = []
    real_marks = AnalyticsService.marks

    async def spy(self: AnalyticsService, *args: Any, with_values: bool) -> Any:
        asked.append(with_values)
        return await real_marks(self, *args, with_values=with_values)

    monkeypatch.setattr(AnalyticsService, "marks", spy)
    without = (
        "{ regionalAnalytics { marks(groupBy: [MUNICIPALITY]) "
        "{ total { markCount } groups { markCount } } } }"
    )
    through_fragment = (
        "{ regionalAnalytics { marks(groupBy: [MUNICIPALITY]) "
        "{ total { ...D } groups { markCount } } } } "
        "fragment D on MarkGroup { distribution { value count } }"
    )
    for query in (without, through_fragment):
        body = await ask(client, tokens[ANALYST], query)
        assert "errors" not in body, body
    assert asked == [False, True]
    total = body["data"]["regionalAnalytics"]["marks"]["total"]
    assert total["distribution"] and all(d["count"] > 0 for d in total["distribution"])

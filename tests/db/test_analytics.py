"""Regional analytics: figures against an independent model of the merged units (issue 12),
small-group disclosure control, the complementary attack, attendance rates and refresh
freshness (real PostgreSQL, real HTTP through the app).

The expected figures come from tests/support/analytics_model.py: the journal's raw rows
(read over the owner connection) in base cells, merged into units of >= k students by the
spec's hierarchy, written without resolvers.analytics.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import asyncpg
import httpx
import pytest

from gateway.core.settings import Settings
from resolvers.analytics import sql as analytics_data
from resolvers.analytics.service import AnalyticsService, refresh_cells
from tests.support.analytics_model import (
    ATTENDANCE_ABSORBING,
    ATTENDANCE_LEVELS,
    LESSON_ABSORBING,
    LESSON_LEVELS,
    MARK_ABSORBING,
    MARK_LEVELS,
    assert_partition,
    cell_filter,
    merge,
)
from tests.support.analytics_support import (
    ATTENDANCE_QUERY,
    MARK_FIELDS,
    Cell,
    CellKey,
    Filter,
    Partition,
    analytics_client,
    ask,
    ask_attendance,
    attendance_cells,
    check_attendance,
    check_marks,
    codes,
    expected_marks,
    group_key,
    lesson_cells,
    mark_cells,
    unit_filter,
)

ANALYST = "regional-analyst"
pytestmark = pytest.mark.usefixtures("analytics_units_afresh")
ACCURACY = "accuracy { figure exactness errorBound relativeErrorBound } attributedShare"
MARKS = (
    "query($g: [MarkDimension!]!, $f: AnalyticsFilter) { regionalAnalytics { minGroupSize "
    "freshness { refreshedAt asOf } marks(groupBy: $g, filter: $f) { refreshedAt "
    f"minGroupSize {ACCURACY} total {{ {MARK_FIELDS} }} spanning {{ {MARK_FIELDS} }} "
    f"groups {{ {MARK_FIELDS} }} }} }} }}"
)
# The finest grouping: a group per base cell.
FINEST = ["SCHOOL", "GRADE", "SUBJECT", "PERIOD", "WORK_TYPE"]
# The API grouping matching the dimensions each marks level keeps.
MARK_LEVEL_GROUPING: tuple[list[str], ...] = (
    FINEST,
    ["SCHOOL", "SUBJECT", "PERIOD", "WORK_TYPE"],
    ["SCHOOL", "SUBJECT", "WORK_TYPE"],
    ["MUNICIPALITY", "SUBJECT", "WORK_TYPE"],
    ["MUNICIPALITY", "SUBJECT"],
    ["SUBJECT"],
    [],
)


@pytest.fixture(scope="module")
async def client(settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[httpx.AsyncClient]:
    """An app of this module's own (the default k), its per-client rate limit raised: the
    module asks more than 60 questions a minute with one analyst's token."""
    async with analytics_client(settings, pool, rate_limit=100_000) as analyst:
        yield analyst


@pytest.fixture(scope="module")
async def cells(owner_conn: asyncpg.Connection) -> dict[CellKey, Cell]:
    return await mark_cells(owner_conn)


@pytest.fixture(scope="module")
def units(cells: dict[CellKey, Cell], settings: Settings) -> Partition:
    """The mark units for the app's k."""
    return merge(cells, MARK_LEVELS, settings.analytics.min_group_size, MARK_ABSORBING)


@pytest.fixture(scope="module")
async def absences(owner_conn: asyncpg.Connection) -> dict[CellKey, Cell]:
    return await attendance_cells(owner_conn)


@pytest.fixture(scope="module")
async def held(owner_conn: asyncpg.Connection, settings: Settings) -> dict[CellKey, Cell]:
    return await lesson_cells(owner_conn, settings.today())


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


def _first(cells: dict[CellKey, Cell], index: int) -> Any:
    return min(key[index] for key in cells)


def _filters(cells: dict[CellKey, Cell]) -> dict[str, Filter]:
    school, municipality = _first(cells, 0), _first(cells, 1)
    work_type, subject = _first(cells, 7), _first(cells, 3)
    return {
        "none": Filter(),
        "municipality": Filter(municipalities=frozenset({municipality})),
        "school, quarters 1-2": Filter(
            schools=frozenset({school}), scheme="quarters", numbers=frozenset({1, 2})
        ),
        "subject, work type": Filter(
            subjects=frozenset({subject}), work_types=frozenset({work_type})
        ),
        "grades 5-6": Filter(grades=frozenset({5, 6})),
    }


@pytest.mark.parametrize(
    ("group_by", "filter_name"),
    [
        ([], "none"),
        (["MUNICIPALITY"], "none"),
        (["SUBJECT"], "none"),
        (["SCHOOL", "SUBJECT"], "none"),
        (["GRADE", "PERIOD", "WORK_TYPE"], "none"),
        (["MUNICIPALITY", "SUBJECT"], "none"),
        (["MUNICIPALITY", "WORK_TYPE"], "municipality"),
        (["GRADE", "SUBJECT"], "school, quarters 1-2"),
        (["SCHOOL", "PERIOD"], "subject, work type"),
        (["SCHOOL", "GRADE"], "grades 5-6"),
        ([], "subject, work type"),
    ],
)
async def test_mark_figures_match_the_model(
    client: httpx.AsyncClient,
    tokens: dict[str, str],
    settings: Settings,
    cells: dict[CellKey, Cell],
    units: Partition,
    year_id: int,
    group_by: list[str],
    filter_name: str,
) -> None:
    k = settings.analytics.min_group_size
    flt = _filters(cells)[filter_name]
    answer = await marks(client, tokens[ANALYST], group_by, flt.api())
    assert answer["minGroupSize"] == k == 10
    check_marks(answer, units, group_by, flt, year_id)


MARK_ACCURACY = {
    "markCount": ("EXACT", None),
    "countedMarkCount": ("EXACT", None),
    "weightSum": ("EXACT", None),
    "distribution": ("EXACT", None),
    "weightedAverage": ("ROUNDED", 0.005),
}
ATTENDANCE_ACCURACY = {
    "lessons": ("EXACT", None),
    "studentLessons": ("EXACT", None),
    "records": ("EXACT", None),
    "byCode.records": ("EXACT", None),
    "rate": ("ROUNDED", None),
    "byCode.rate": ("ROUNDED", None),
}


async def test_the_api_says_how_exact_each_figure_is(
    client: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    answer = await marks(client, tokens[ANALYST], ["MUNICIPALITY"])
    body = await ask(
        client,
        tokens[ANALYST],
        f"{{ regionalAnalytics {{ attendance(groupBy: []) {{ {ACCURACY} }} }} }}",
    )
    assert "errors" not in body, body
    for given, expected in (
        (answer["accuracy"], MARK_ACCURACY),
        (body["data"]["regionalAnalytics"]["attendance"]["accuracy"], ATTENDANCE_ACCURACY),
    ):
        got = {a["figure"]: (a["exactness"], a["errorBound"]) for a in given}
        assert len(got) == len(given)
        assert got == expected
        relative = {a["figure"]: a["relativeErrorBound"] for a in given}
        assert {f for f, bound in relative.items() if bound is not None} <= {"rate", "byCode.rate"}
    assert [
        a["relativeErrorBound"]
        for a in body["data"]["regionalAnalytics"]["attendance"]["accuracy"]
        if a["figure"] == "rate"
    ] == [0.0005]


async def test_the_total_has_every_record_but_the_final_residual(
    client: httpx.AsyncClient,
    tokens: dict[str, str],
    settings: Settings,
    cells: dict[CellKey, Cell],
    units: Partition,
) -> None:
    """Small cells exist and are merged: the region total is the journal's count minus the
    marks left over after the last level (none at scale 1: the region has >= k students),
    and the same as the model's."""
    k = settings.analytics.min_group_size
    assert_partition(units)
    assert units.shadows, "the scale-1 data set should have cells below k"
    merged = [unit for unit in units.units if unit.level > 0]
    assert merged, "small cells are merged into units"
    assert all(unit.students >= k and len(unit.cells) > 1 for unit in merged)
    answer = await marks(client, tokens[ANALYST], [])
    journal = units.journal("marks")
    shadows = set(units.shadows)
    old_rule = sum(cell.sums["marks"] for key, cell in cells.items() if key not in shadows)
    print(
        f"marks: journal {journal}, lost {units.lost('marks')} "
        f"({len(units.dropped)} cells); old rule {old_rule}; units {len(units.units)} "
        f"of which merged {len(merged)}"
    )
    assert answer["total"]["markCount"] == journal - units.lost("marks")
    assert answer["total"]["markCount"] == expected_marks(units, []).total.marks
    assert answer["total"]["markCount"] > old_rule


def _target(cells: dict[CellKey, Cell]) -> tuple[CellKey, int]:
    """A cell of n students (3 <= n <= 30) whose coarse group (all work types) has others
    larger than it, and which k = n + 1 merges into a unit (not drops)."""
    coarse = ["SCHOOL", "GRADE", "SUBJECT", "PERIOD"]
    for key, cell in sorted(cells.items(), key=lambda item: (-item[1].sums["marks"], item[0])):
        n = len(cell.members)
        siblings = [
            other_key
            for other_key, other in cells.items()
            if other_key != key
            and group_key(other_key, coarse) == group_key(key, coarse)
            and len(other.members) > n
        ]
        if (
            3 <= n <= 30
            and siblings
            and merge(cells, MARK_LEVELS, n + 1, MARK_ABSORBING).unit_of(key)
        ):
            return key, n
    raise AssertionError("no suitable cell in the data set")


async def test_a_cell_of_n_students_is_shown_with_k_n_and_merged_with_k_n_plus_1(
    settings: Settings,
    pool: asyncpg.Pool,
    owner_conn: asyncpg.Connection,
    tokens: dict[str, str],
    cells: dict[CellKey, Cell],
    year_id: int,
) -> None:
    """k = n: the cell is a unit of its own, its group shows it. k = n + 1: its group is
    suppressed, no figure of the cell's own filter is released, and its marks appear only
    inside the model's unit of >= k students, in the groups the model attributes it to."""
    key, n = _target(cells)
    cell = cells[key]
    flt = cell_filter(key, detail=True)
    async with analytics_client(settings, pool, min_group_size=n) as client:  # n = k
        shown = await marks(client, tokens[ANALYST], FINEST, flt.api())
    assert shown["minGroupSize"] == n
    built_for = "SELECT min_group_size FROM gateway.analytics_refresh"
    assert await owner_conn.fetchval(built_for) == n, "the units were rebuilt for k = n"
    (group,) = shown["groups"]
    assert group["suppressed"] is False and group["markCount"] == cell.sums["marks"]
    assert shown["total"]["markCount"] == cell.sums["marks"]
    check_marks(shown, merge(cells, MARK_LEVELS, n, MARK_ABSORBING), FINEST, flt, year_id)
    model = merge(cells, MARK_LEVELS, n + 1, MARK_ABSORBING)
    unit = model.unit_of(key)
    assert unit is not None and unit.level > 0 and unit.students >= n + 1
    print(f"cell {key}: {n} students; k = {n + 1}: level {unit.level}, {unit.students} students")
    async with analytics_client(settings, pool, min_group_size=n + 1) as client:  # n = k - 1
        hidden = await marks(client, tokens[ANALYST], FINEST, flt.api())
        (group,) = hidden["groups"]
        assert group["suppressed"] is True
        assert group["markCount"] is None and group["distribution"] is None
        assert hidden["total"]["suppressed"] is True and hidden["total"]["markCount"] is None
        assert hidden["spanning"] is None
        # The unit's own values: the answer at the unit's level shows the unit inside its
        # group, with the model's figures (every attributed unit >= k students).
        around = unit_filter(unit)
        level_grouping = MARK_LEVEL_GROUPING[unit.level]
        coarse = await marks(client, tokens[ANALYST], level_grouping, around.api())
        check_marks(coarse, model, level_grouping, around, year_id)
        expected = expected_marks(model, level_grouping, around)
        holding = [f for f in expected.groups.values() if unit in f.units]
        if level_grouping:
            (holder,) = holding
            assert holder.marks >= cell.sums["marks"]
        # Every figure that carries the cell's marks carries its whole unit.
        for figures in (*expected.groups.values(), expected.total, expected.spanning):
            if figures is not None:
                assert all(u.students >= n + 1 for u in figures.units)
                if any(key in u.cells for u in figures.units):
                    assert unit in figures.units


async def test_complementary_queries_do_not_recover_a_merged_cell(
    settings: Settings,
    pool: asyncpg.Pool,
    tokens: dict[str, str],
    cells: dict[CellKey, Cell],
    year_id: int,
) -> None:
    """Total minus the other groups is `spanning` (none here): nothing of the small cell."""
    key, n = _target(cells)
    target = cells[key]
    model = merge(cells, MARK_LEVELS, n + 1, MARK_ABSORBING)
    flt = cell_filter(key, detail=False)  # the coarse group: every work type of the cell
    async with analytics_client(settings, pool, min_group_size=n + 1) as client:
        total = (await marks(client, tokens[ANALYST], [], flt.api()))["total"]
        by_type = await marks(client, tokens[ANALYST], ["WORK_TYPE"], flt.api())
        region = await marks(client, tokens[ANALYST], [])
        by_school = await marks(client, tokens[ANALYST], ["SCHOOL"])
    check_marks(by_type, model, ["WORK_TYPE"], flt, year_id)
    check_marks(by_school, model, ["SCHOOL"], Filter(), year_id)
    groups = {int(g["key"]["workType"]["id"]): g for g in by_type["groups"]}
    assert groups[key[7]]["suppressed"] is True
    others = [g for wt, g in groups.items() if wt != key[7] and not g["suppressed"]]
    assert others, "the coarse group must have published cells"
    # A merged unit always spans a base dimension the coarse filter fixes: left out whole.
    assert by_type["spanning"] is None
    assert total["markCount"] - sum(g["markCount"] for g in others) == 0
    for value in {name.removeprefix("value:") for name in target.sums if ":" in name}:
        shown = sum(d["count"] for g in others for d in g["distribution"] if d["value"] == value)
        in_total = sum(d["count"] for d in total["distribution"] if d["value"] == value)
        assert in_total - shown == 0
    # Region-wide: the total minus every other school is the target school's figures plus
    # the spanning units (each >= k students, the model's): the cell's marks are inside a
    # whole unit there, never alone.
    school = next(g for g in by_school["groups"] if int(g["key"]["school"]["id"]) == key[0])
    rest = sum(
        g["markCount"] for g in by_school["groups"] if g is not school and not g["suppressed"]
    )
    spanning = by_school["spanning"]["markCount"] if by_school["spanning"] else 0
    assert region["total"]["markCount"] - rest == school["markCount"] + spanning
    expected = expected_marks(model, ["SCHOOL"])
    unit = model.unit_of(key)
    assert unit is not None
    if unit.single([0]):
        assert unit in expected.groups[(key[0],)].units
    else:
        assert expected.spanning is not None and unit in expected.spanning.units
    # With k lowered to n the same cell is a unit of its own, in the coarse total too.
    async with analytics_client(settings, pool, min_group_size=n) as client:
        total_n = (await marks(client, tokens[ANALYST], [], flt.api()))["total"]
    assert total_n["markCount"] >= total["markCount"] + target.sums["marks"]
    assert (
        total_n["markCount"]
        == expected_marks(merge(cells, MARK_LEVELS, n, MARK_ABSORBING), [], flt).total.marks
    )


async def test_refresh_makes_new_marks_visible_and_says_when(
    client: httpx.AsyncClient,
    tokens: dict[str, str],
    settings: Settings,
    owner_conn: asyncpg.Connection,
    database_url: str,
    cells: dict[CellKey, Cell],
) -> None:
    k = settings.analytics.min_group_size
    key, cell = max(cells.items(), key=lambda item: len(item[1].members))
    assert len(cell.members) >= k
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
        await refresh_cells(database_url, settings, restart=True)
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
    body = await ask(client, tokens[ANALYST], ATTENDANCE_QUERY, {"g": [], "f": flt})
    assert codes(body) == ["BAD_USER_INPUT"]
    assert body["data"] == {"regionalAnalytics": None}


async def test_finest_grouping_has_a_group_per_cell_and_the_group_count_is_capped(
    client: httpx.AsyncClient,
    tokens: dict[str, str],
    cells: dict[CellKey, Cell],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A group per base cell (a unit of level 0 or a shadow); merged units span some of
    the dimensions, so they are in `spanning`, not groups, and do not count toward the cap."""
    body = await ask(client, tokens[ANALYST], MARKS, {"g": FINEST, "f": None})
    assert len(body["data"]["regionalAnalytics"]["marks"]["groups"]) == len(cells)
    monkeypatch.setattr("resolvers.analytics.queries.MAX_GROUPS", len(cells))
    body = await ask(client, tokens[ANALYST], MARKS, {"g": FINEST, "f": None})
    assert "errors" not in body, body["errors"][0]["message"]
    monkeypatch.setattr("resolvers.analytics.queries.MAX_GROUPS", len(cells) - 1)
    body = await ask(client, tokens[ANALYST], MARKS, {"g": FINEST, "f": None})
    assert codes(body) == ["BAD_USER_INPUT"]
    assert f"({len(cells)}," in body["errors"][0]["message"]


async def test_attendance_cell_of_n_is_shown_with_k_n_and_merged_with_k_n_plus_1(
    settings: Settings,
    pool: asyncpg.Pool,
    tokens: dict[str, str],
    absences: dict[CellKey, Cell],
    held: dict[CellKey, Cell],
    year_id: int,
) -> None:
    key, cell = max(
        ((key, cell) for key, cell in absences.items() if 2 <= len(cell.members) <= 30),
        key=lambda item: (len(item[1].members), item[1].sums["records"], item[0]),
    )
    n = len(cell.members)
    flt = cell_filter(key, detail=True)
    dims = ["SCHOOL", "GRADE", "SUBJECT", "PERIOD", "CODE"]
    async with analytics_client(settings, pool, min_group_size=n) as client:
        shown = await ask_attendance(client, tokens[ANALYST], dims, flt)
    (group,) = shown["groups"]
    assert group["suppressed"] is False and group["records"] == cell.sums["records"]
    lessons = merge(held, LESSON_LEVELS, n, LESSON_ABSORBING)
    check_attendance(
        shown,
        merge(absences, ATTENDANCE_LEVELS, n, ATTENDANCE_ABSORBING),
        lessons,
        dims,
        flt,
        year_id,
    )
    records = merge(absences, ATTENDANCE_LEVELS, n + 1, ATTENDANCE_ABSORBING)
    lessons = merge(held, LESSON_LEVELS, n + 1, LESSON_ABSORBING)
    async with analytics_client(settings, pool, min_group_size=n + 1) as client:
        hidden = await ask_attendance(client, tokens[ANALYST], dims, flt)
        (group,) = hidden["groups"]
        assert group["suppressed"] is True
        assert group["records"] is None and group["rate"] is None and group["byCode"] is None
        assert not (hidden["total"]["byCode"] or []) and not hidden["total"]["records"]
        check_attendance(hidden, records, lessons, dims, flt, year_id)
        unit = records.unit_of(key)
        print(f"cell {key}: {n} students; k = {n + 1}: {unit and (unit.level, unit.students)}")
        if unit is None:  # dropped: in no figure at all
            return
        assert unit.level > 0 and unit.students >= n + 1
        # Its records are released inside the unit, e.g. region-wide by code.
        by_code = await ask_attendance(client, tokens[ANALYST], ["CODE"])
        check_attendance(by_code, records, lessons, ["CODE"], Filter(), year_id)


class _WritesBetweenReads(asyncpg.Connection):  # type: ignore[misc]
    """A connection that lets another transaction commit right after the first read of a
    diary_api view (a refresh reads the marks first), before it reads the others."""

    between: Any = None

    async def fetch(self, query: str, *args: Any, **options: Any) -> list[Any]:
        rows: list[Any] = await super().fetch(query, *args, **options)
        if "diary_api." in query and self.between is not None:
            between, self.between = self.between, None
            await between()
        return rows


async def test_a_write_during_a_refresh_is_in_all_new_units_or_in_none(
    owner_conn: asyncpg.Connection,
    database_url: str,
    settings: Settings,
    cells: dict[CellKey, Cell],
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
        result = await analytics_data.refresh(
            conn,
            today=settings.today(),
            min_group_size=settings.analytics.min_group_size,
            timeout_ms=60_000,
        )
        assert result is not None and planted, "the mark was written during the refresh"
        # Its cell (a new work type, one student) would be a shadow and part of a unit.
        in_units = await conn.fetchval(
            "SELECT count(*) FROM gateway.analytics_mark_units WHERE $1 = ANY(work_type_ids)",
            work_type_id,
        )
        assert in_units == 0, "the refresh read one snapshot"
    finally:
        await conn.close()
        await owner_conn.execute("DELETE FROM school.marks WHERE id = ANY($1::bigint[])", planted)
        await owner_conn.execute("DELETE FROM school.work_types WHERE id = $1", work_type_id)
        await refresh_cells(database_url, settings, restart=True)


async def test_a_refresh_that_may_not_wait_skips_while_another_runs(
    database_url: str, settings: Settings
) -> None:
    role = {"role": settings.gateway_role}
    k = settings.analytics.min_group_size
    holder = await asyncpg.connect(database_url, server_settings=role)
    other = await asyncpg.connect(database_url, server_settings=role)
    try:
        async with holder.transaction():  # what a running refresh holds
            await holder.execute("LOCK TABLE gateway.analytics_refresh IN EXCLUSIVE MODE")
            skipped = await analytics_data.refresh(
                other, today=settings.today(), min_group_size=k, timeout_ms=60_000, wait=False
            )
        assert skipped is None
        done = await analytics_data.refresh(
            other, today=settings.today(), min_group_size=k, timeout_ms=60_000, wait=False
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

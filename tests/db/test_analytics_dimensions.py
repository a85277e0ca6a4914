"""Regional analytics by each dimension alone (issue 9, item 14) and attendance against the
model of the merged units (issue 12).

`attendance(groupBy: [CODE])` once answered no groups while its total had thousands of
records. Every single dimension, for marks and for attendance, is checked here against
figures computed independently from the `school` tables (tests/support/analytics_model.py:
base cells merged into units of >= k students), against the total (= groups + spanning),
and against a finer grouping summed up; attendance also for groupings by several
dimensions and a filter, and the merge's gain over the old rule (small cells dropped).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from gateway.core.settings import Settings
from tests.support.analytics_model import (
    ATTENDANCE_ABSORBING,
    ATTENDANCE_LEVELS,
    LESSON_ABSORBING,
    LESSON_LEVELS,
    MARK_ABSORBING,
    MARK_LEVELS,
    assert_partition,
    merge,
)
from tests.support.analytics_support import (
    MARK_FIELDS,
    Cell,
    CellKey,
    Filter,
    Partition,
    analytics_client,
    answer_key,
    ask,
    ask_attendance,
    attendance_cells,
    check_attendance,
    check_attendance_group,
    check_marks,
    expected_attendance,
    lesson_cells,
    mark_cells,
)

ANALYST = "regional-analyst"
pytestmark = pytest.mark.usefixtures("analytics_units_afresh")
MARKS = (
    "query($g: [MarkDimension!]!) { regionalAnalytics { marks(groupBy: $g) { "
    f"total {{ {MARK_FIELDS} }} spanning {{ {MARK_FIELDS} }} groups {{ {MARK_FIELDS} }} }} }} }}"
)
MARK_DIMENSIONS = ["SCHOOL", "MUNICIPALITY", "GRADE", "SUBJECT", "PERIOD", "WORK_TYPE"]
ATTENDANCE_DIMENSIONS = ["SCHOOL", "MUNICIPALITY", "GRADE", "SUBJECT", "PERIOD", "CODE"]


@pytest.fixture(scope="module")
async def client(settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[httpx.AsyncClient]:
    """An app of this module's own (the default k), its per-client rate limit raised: the
    module asks more than 60 questions a minute with one analyst's token."""
    async with analytics_client(settings, pool, rate_limit=100_000) as analyst:
        yield analyst


@pytest.fixture(scope="module")
async def year_id(owner_conn: asyncpg.Connection) -> int:
    (row,) = await owner_conn.fetch("SELECT id FROM school.academic_years")
    return int(row["id"])


@pytest.fixture(scope="module")
async def absences(owner_conn: asyncpg.Connection) -> dict[CellKey, Cell]:
    return await attendance_cells(owner_conn)


@pytest.fixture(scope="module")
def records(absences: dict[CellKey, Cell], settings: Settings) -> Partition:
    return merge(
        absences, ATTENDANCE_LEVELS, settings.analytics.min_group_size, ATTENDANCE_ABSORBING
    )


@pytest.fixture(scope="module")
async def lessons(owner_conn: asyncpg.Connection, settings: Settings) -> Partition:
    held = await lesson_cells(owner_conn, settings.today())
    return merge(held, LESSON_LEVELS, settings.analytics.min_group_size, LESSON_ABSORBING)


async def test_attendance_by_code_alone_has_a_group_per_code(
    client: httpx.AsyncClient,
    tokens: dict[str, str],
    records: Partition,
    lessons: Partition,
    year_id: int,
) -> None:
    answer = await ask_attendance(client, tokens[ANALYST], ["CODE"])
    check_attendance(answer, records, lessons, ["CODE"], Filter(), year_id)
    got = {group["key"]["code"]: group for group in answer["groups"]}
    print(f"[CODE]: {len(got)} groups {sorted(got)}, total {answer['total']['records']} records")
    assert len(got) == len(answer["groups"]) >= 3
    # No other dimension: every unit is single-valued on it, nothing spans.
    assert answer["spanning"] is None
    total = answer["total"]
    for code, group in got.items():
        if group["suppressed"]:
            continue
        assert group["byCode"] == [
            {"code": code, "records": group["records"], "rate": group["rate"]}
        ]
        # The lessons of every code's group are the total's.
        assert group["studentLessons"] == total["studentLessons"]
        assert group["rate"] == float(f"{group['records'] / total['studentLessons']:.4g}")
    published = [group["records"] for group in got.values() if not group["suppressed"]]
    assert total["records"] == sum(published) > 1000


async def test_attendance_by_code_is_school_and_code_summed_plus_spanning(
    client: httpx.AsyncClient,
    tokens: dict[str, str],
    records: Partition,
    lessons: Partition,
    year_id: int,
) -> None:
    by_code = await ask_attendance(client, tokens[ANALYST], ["CODE"])
    finer = await ask_attendance(client, tokens[ANALYST], ["SCHOOL", "CODE"])
    check_attendance(finer, records, lessons, ["SCHOOL", "CODE"], Filter(), year_id)
    summed: dict[str, int] = defaultdict(int)
    for group in finer["groups"]:
        if not group["suppressed"]:
            summed[group["key"]["code"]] += group["records"]
    spanning = finer["spanning"]
    assert spanning is not None, "units above the school level span schools"
    assert spanning["rate"] is None and all(c["rate"] is None for c in spanning["byCode"])
    for count in spanning["byCode"]:
        summed[count["code"]] += count["records"]
    alone = {g["key"]["code"]: g["records"] for g in by_code["groups"] if not g["suppressed"]}
    assert alone == dict(summed)
    assert by_code["total"]["records"] == finer["total"]["records"] == sum(summed.values())


@pytest.mark.parametrize("dimension", ATTENDANCE_DIMENSIONS)
async def test_attendance_by_each_dimension_alone(
    client: httpx.AsyncClient,
    tokens: dict[str, str],
    records: Partition,
    lessons: Partition,
    year_id: int,
    dimension: str,
) -> None:
    answer = await ask_attendance(client, tokens[ANALYST], [dimension])
    check_attendance(answer, records, lessons, [dimension], Filter(), year_id)
    shown = [g for g in answer["groups"] if not g["suppressed"]]
    print(
        f"attendance [{dimension}]: {len(answer['groups'])} groups ({len(shown)} shown), "
        f"{answer['total']['records']} records, spanning "
        f"{answer['spanning']['records'] if answer['spanning'] else None}"
    )
    assert shown, "the data set has published attendance units"


@pytest.mark.parametrize("dimension", MARK_DIMENSIONS)
async def test_marks_by_each_dimension_alone(
    client: httpx.AsyncClient,
    tokens: dict[str, str],
    settings: Settings,
    owner_conn: asyncpg.Connection,
    year_id: int,
    dimension: str,
) -> None:
    units = merge(
        await mark_cells(owner_conn), MARK_LEVELS, settings.analytics.min_group_size, MARK_ABSORBING
    )
    body = await ask(client, tokens[ANALYST], MARKS, {"g": [dimension]})
    assert "errors" not in body, body
    answer: dict[str, Any] = body["data"]["regionalAnalytics"]["marks"]
    check_marks(answer, units, [dimension], Filter(), year_id)
    got = {answer_key(g, [dimension], year_id=year_id): g for g in answer["groups"]}
    spanning = answer["spanning"]["markCount"] if answer["spanning"] else None
    print(
        f"marks [{dimension}]: {len(got)} groups, {answer['total']['markCount']} marks, "
        f"spanning {spanning}"
    )
    assert len(got) >= 2


@pytest.mark.parametrize(
    "group_by",
    [["MUNICIPALITY", "CODE"], ["SCHOOL"], ["SCHOOL", "GRADE"], ["MUNICIPALITY", "PERIOD", "CODE"]],
)
async def test_attendance_matches_the_model(
    client: httpx.AsyncClient,
    tokens: dict[str, str],
    absences: dict[CellKey, Cell],
    records: Partition,
    lessons: Partition,
    year_id: int,
    group_by: list[str],
) -> None:
    answer = await ask_attendance(client, tokens[ANALYST], group_by)
    check_attendance(answer, records, lessons, group_by, Filter(), year_id)
    if group_by == ["SCHOOL"]:  # every school has held lessons of >= k students
        assert all(not g["suppressed"] and g["studentLessons"] for g in answer["groups"])
    municipality = min(key[1] for key in absences)
    flt = Filter(municipalities=frozenset({municipality}), codes=frozenset({"Н", "О"}))
    answer = await ask_attendance(client, tokens[ANALYST], group_by, flt)
    check_attendance(answer, records, lessons, group_by, flt, year_id)


async def test_the_merge_brings_rare_codes_into_the_region_total(
    client: httpx.AsyncClient,
    tokens: dict[str, str],
    settings: Settings,
    absences: dict[CellKey, Cell],
    records: Partition,
    lessons: Partition,
) -> None:
    """Per code, the share of the journal's records in the region total: higher than under
    the old rule (base cells of >= k students only) wherever that rule lost records, and
    the same in the app as in the model."""
    k = settings.analytics.min_group_size
    assert_partition(records)
    assert_partition(lessons)
    answer = await ask_attendance(client, tokens[ANALYST], [])
    expected = expected_attendance(records, lessons, [])
    check_attendance_group(answer["total"], expected.total)
    published = {c["code"]: c["records"] for c in answer["total"]["byCode"]}
    journal: dict[str, int] = {}
    old_rule: dict[str, int] = {}
    for key, cell in absences.items():
        journal[key[7]] = journal.get(key[7], 0) + int(cell.sums["records"])
        if len(cell.members) >= k:
            old_rule[key[7]] = old_rule.get(key[7], 0) + int(cell.sums["records"])
    print("code  journal  old rule  merged")
    for code in sorted(journal):
        old, new = old_rule.get(code, 0), published.get(code, 0)
        print(f"{code:4} {journal[code]:8} {old / journal[code]:8.1%} {new / journal[code]:7.1%}")
    lost_before = [code for code in journal if old_rule.get(code, 0) < journal[code]]
    assert lost_before, "the old rule loses records of some code at scale 1"
    for code in journal:
        assert published.get(code, 0) >= old_rule.get(code, 0)
    for code in lost_before:
        assert published.get(code, 0) > old_rule.get(code, 0), code

"""The attack suite of the regional analytics (issue 12): a differencing attacker that
talks to the real app over HTTP as the analyst (tests/support/analytics_attacker.py)
recovers no figure about fewer than k students, and does recover such figures from
deliberately weakened builds of the units, so the suite can fail: units built for k = 2
but claimed for k = 10; a small cell's figures in a unit every grouping calls spanning
(totals from all data); merged units whose students are summed over their cells
instead of counted distinct. Each test leaves the units rebuilt normally.

Targets are picked with the oracle's knowledge (the smallest cells, the (school, code)
and (school, work type) pairs with the fewest students) to keep the number of queries
small; every attack kind runs for marks and for attendance.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import pytest

from gateway.core.db import connect_as_gateway
from gateway.core.settings import Settings
from resolvers.analytics import merge
from resolvers.analytics import sql as analytics_sql
from resolvers.analytics.service import refresh_cells
from tests.support.analytics_attacker import (
    Attacker,
    Cell,
    CellKey,
    Journal,
    Kind,
    Scope,
    Verdict,
    load_journal,
)
from tests.support.analytics_support import analytics_client

ANALYST = "regional-analyst"
FINEST = {
    "marks": ["SCHOOL", "GRADE", "SUBJECT", "PERIOD", "WORK_TYPE"],
    "attendance": ["SCHOOL", "GRADE", "SUBJECT", "PERIOD", "CODE"],
}
DIMENSIONS = {
    kind: ["MUNICIPALITY", "SCHOOL", "GRADE", "SUBJECT", "PERIOD", finest[-1]]
    for kind, finest in FINEST.items()
}
# The merge hierarchy's levels as groupings of the API (docs/analytics.md; merge.py).
LEVELS = {
    "marks": [
        FINEST["marks"],
        ["SCHOOL", "SUBJECT", "PERIOD", "WORK_TYPE"],
        ["SCHOOL", "SUBJECT", "WORK_TYPE"],
        ["MUNICIPALITY", "SUBJECT", "WORK_TYPE"],
        ["MUNICIPALITY", "SUBJECT"],
        ["SUBJECT"],
        [],
    ],
    "attendance": [
        FINEST["attendance"],
        ["SCHOOL", "GRADE", "PERIOD", "CODE"],
        ["SCHOOL", "GRADE", "CODE"],
        ["SCHOOL", "PERIOD", "CODE"],
        ["SCHOOL", "CODE"],
        ["MUNICIPALITY", "CODE"],
        ["CODE"],
    ],
}
ATTACKS = {"direct", "total−groups", "total−groups−spanning", "pair", "repeat"} | {
    f"±{dim}" for dim in ("MUNICIPALITY", "SCHOOL", "GRADE", "SUBJECT", "NUMBER")
}


@pytest.fixture(scope="module")
async def journals(owner_conn: asyncpg.Connection) -> dict[Kind, Journal]:
    return {
        "marks": await load_journal(owner_conn, "marks"),
        "attendance": await load_journal(owner_conn, "attendance"),
    }


@asynccontextmanager
async def attacker_client(
    settings: Settings, pool: asyncpg.Pool
) -> AsyncIterator[httpx.AsyncClient]:
    """An app of its own: no rate limit in the way, no background refresh."""
    async with analytics_client(
        settings, pool, rate_limit=100_000, refresh_seconds=0, cpu_share_percent=100
    ) as client:
        yield client


# --- target selection ----------------------------------------------------------------


def small_cells(journal: Journal, k: int, count: int = 2) -> list[CellKey]:
    """Base cells of 2..k-1 students: the one with the most records, then the one with
    the fewest students in another school."""
    small = [c for c in journal.cells.values() if 2 <= len(c.students) < k]
    assert small, f"the data set should have {journal.kind} cells below k"
    chosen = [max(small, key=lambda c: (c.counts["count"], c.key)).key]
    for cell in sorted(small, key=lambda c: (len(c.students), -c.counts["count"], c.key)):
        if len(chosen) < count and cell.key[0] not in {key[0] for key in chosen}:
            chosen.append(cell.key)
    return chosen


def smallest_pair(journal: Journal) -> tuple[int, Any]:
    """The (school, work type | code) with the fewest students (at least 2)."""
    students: dict[tuple[int, Any], set[int]] = defaultdict(set)
    for cell in journal.cells.values():
        students[(cell.key[0], cell.key[6])] |= cell.students
    sizes = {pair: len(found) for pair, found in students.items() if len(found) >= 2}
    return min(sizes, key=lambda pair: (sizes[pair], pair))


# --- campaigns -----------------------------------------------------------------------


async def cell_attacks(attacker: Attacker, journal: Journal, key: CellKey) -> None:
    """Every attack kind aimed at one base cell."""
    school, municipality, grade, subject, scheme, number, detail = key
    detail_dim = FINEST[journal.kind][-1]
    coarse = Scope(
        schools=frozenset({school}),
        grades=frozenset({grade}),
        subjects=frozenset({subject}),
        scheme=scheme,
        numbers=frozenset({number}),
    )
    finest = FINEST[journal.kind]
    await attacker.totals_minus_groups([detail_dim], coarse)
    await attacker.totals_minus_groups(finest, coarse)
    every_detail = coarse.with_values(detail_dim, journal.values(detail_dim))
    await attacker.filter_difference([detail_dim], every_detail, detail_dim, detail)
    cell = coarse.with_values(detail_dim, {detail})
    ranges: dict[str, Iterable[Any]] = {
        "SCHOOL": journal.schools_of(municipality),
        "GRADE": journal.values("GRADE"),
        "SUBJECT": journal.values("SUBJECT"),
        "NUMBER": journal.values("NUMBER"),
    }
    for dim, values in ranges.items():
        await attacker.filter_difference(
            [], cell.with_values(dim, values), dim, cell_value(key, dim)
        )
    await attacker.grouping_pair(finest[:-1], finest, Scope(schools=frozenset({school})))
    await level_attacks(attacker, journal, school)
    assert await attacker.repeat(finest, cell), "the same question gave another answer"


def cell_value(key: CellKey, dim: str) -> Any:
    return {"SCHOOL": key[0], "GRADE": key[2], "SUBJECT": key[3], "NUMBER": key[5]}[dim]


async def pair_attacks(attacker: Attacker, journal: Journal) -> None:
    """The (school, work type | code) with the fewest students."""
    school, detail = smallest_pair(journal)
    detail_dim = FINEST[journal.kind][-1]
    municipality = journal.municipality[school]
    schools = journal.schools_of(municipality)
    one_detail = Scope(schools=schools, types=frozenset({detail}))
    await attacker.filter_difference([detail_dim], one_detail, "SCHOOL", school)
    every_detail = Scope(schools=frozenset({school}), types=frozenset(journal.values(detail_dim)))
    await attacker.filter_difference(["SCHOOL"], every_detail, detail_dim, detail)
    await attacker.totals_minus_groups(["SCHOOL", detail_dim], Scope(schools=schools))
    await attacker.grouping_pair(
        ["SCHOOL", detail_dim], ["SCHOOL", "GRADE", detail_dim], Scope(schools=frozenset({school}))
    )
    every_municipality = Scope(
        municipalities=frozenset(journal.municipality.values()), types=frozenset({detail})
    )
    await attacker.filter_difference(["SCHOOL"], every_municipality, "MUNICIPALITY", municipality)
    by_municipality = Scope(municipalities=frozenset({municipality}))
    assert await attacker.repeat(["SCHOOL", detail_dim], by_municipality)


async def level_attacks(attacker: Attacker, journal: Journal, school: int) -> None:
    """Each merge level's grouping minus the finer one it merges (around one school):
    what is left are that level's units, which an attacker who knows the hierarchy
    would compare with the suppressed finer groups."""
    levels = LEVELS[journal.kind]
    municipality = journal.municipality[school]
    for index, coarse in enumerate(levels[1:], start=1):
        finer = next(
            level
            for level in reversed(levels[:index])
            if set(level) >= set(coarse) - {"MUNICIPALITY"}
        )
        fine = finer if set(coarse) <= set(finer) else ["MUNICIPALITY", *finer]
        scope = Scope()
        if "SCHOOL" in coarse:
            scope = Scope(schools=frozenset({school}))
        elif "MUNICIPALITY" in coarse:
            scope = Scope(municipalities=frozenset({municipality}))
        await attacker.grouping_pair(coarse, fine, scope)


async def region_attacks(attacker: Attacker, journal: Journal) -> None:
    """Totals minus groups for every dimension alone; pairs of region-wide groupings."""
    detail_dim = FINEST[journal.kind][-1]
    for dim in DIMENSIONS[journal.kind]:
        await attacker.totals_minus_groups([dim], Scope())
    await attacker.grouping_pair([], ["GRADE"], Scope())
    await attacker.grouping_pair(["MUNICIPALITY"], ["MUNICIPALITY", "SCHOOL"], Scope())
    await attacker.grouping_pair([detail_dim], ["SCHOOL", detail_dim], Scope())
    await attacker.grouping_pair(
        ["MUNICIPALITY", detail_dim], ["MUNICIPALITY", "SCHOOL", detail_dim], Scope()
    )
    await attacker.grouping_pair(["SUBJECT"], ["SUBJECT", detail_dim], Scope())


async def campaign(
    client: httpx.AsyncClient, token: str, journal: Journal, k: int
) -> tuple[Attacker, Verdict]:
    """Every attack against one kind of figures: the attacker and the oracle's verdict."""
    attacker = Attacker(client, token, journal.kind)
    targets = small_cells(journal, k)
    print(
        f"\n{journal.kind} targets: cells of "
        + ", ".join(str(len(journal.cells[key].students)) for key in targets)
        + f" students; (school, detail) {smallest_pair(journal)}"
    )
    for key in targets:
        await cell_attacks(attacker, journal, key)
    await pair_attacks(attacker, journal)
    await region_attacks(attacker, journal)
    verdict = journal.judge(attacker.derived, k)
    leaks = verdict.leaks
    print(
        f"\n{journal.kind}: {attacker.queries} queries, {len(attacker.derived)} derived "
        f"answers, {verdict.checked} figures checked, {verdict.exact} equal to their "
        f"target's truth, {len(leaks)} leaks; derived answers by attack: "
        + ", ".join(f"{name} {n}" for name, n in sorted(attacker.attacks.items()))
    )
    if leaks:
        by_attack = Counter(leak.derived.attack for leak in leaks)
        print("  leaks by attack: " + ", ".join(f"{a} {n}" for a, n in sorted(by_attack.items())))
    for leak in leaks[:3]:
        print(f"  leak: {leak}")
    return attacker, verdict


# --- the real implementation ---------------------------------------------------------


@pytest.mark.parametrize("kind", ["marks", "attendance"])
async def test_the_attacker_recovers_nothing_below_k(
    settings: Settings,
    pool: asyncpg.Pool,
    tokens: dict[str, str],
    journals: dict[Kind, Journal],
    kind: Kind,
) -> None:
    k = settings.analytics.min_group_size
    async with attacker_client(settings, pool) as client:
        attacker, verdict = await campaign(client, tokens[ANALYST], journals[kind], k)
    assert attacker.min_group_size == k == 10
    required = ATTACKS | {f"±{FINEST[kind][-1]}"}
    assert {name.split(" ")[0] for name in attacker.attacks} >= required, attacker.attacks
    assert verdict.checked > 1000 and verdict.exact > 100  # the oracle does see the figures
    assert verdict.leaks == [], "\n".join(str(leak) for leak in verdict.leaks[:20])


# --- weakened builds -----------------------------------------------------------------


@asynccontextmanager
async def restored_units(settings: Settings, database_url: str) -> AsyncIterator[None]:
    """Whatever a test does to the units, they are rebuilt normally afterwards, every cell
    placed afresh (other modules of the run read them; units are sticky otherwise)."""
    try:
        yield
    finally:
        await refresh_cells(database_url, settings, restart=True)


async def build_units(settings: Settings, database_url: str, k: int) -> None:
    conn = await connect_as_gateway(database_url, settings)
    try:
        await analytics_sql.refresh(
            conn,
            today=settings.today(),
            min_group_size=k,
            timeout_ms=settings.analytics.refresh_timeout_ms,
            restart=True,  # every cell placed by the (possibly weakened) rules of the test
        )
    finally:
        await conn.close()


@pytest.mark.parametrize("kind", ["marks", "attendance"])
async def test_units_built_for_a_smaller_k_are_caught(
    settings: Settings,
    pool: asyncpg.Pool,
    tokens: dict[str, str],
    owner_conn: asyncpg.Connection,
    database_url: str,
    journals: dict[Kind, Journal],
    kind: Kind,
) -> None:
    """Weakened: units built with k = 2 but claimed to be for k = 10."""
    k = settings.analytics.min_group_size
    async with restored_units(settings, database_url):
        await build_units(settings, database_url, 2)
        await owner_conn.execute("UPDATE gateway.analytics_refresh SET min_group_size = $1", k)
        async with attacker_client(settings, pool) as client:
            attacker, verdict = await campaign(client, tokens[ANALYST], journals[kind], k)
    assert attacker.min_group_size == k
    assert verdict.leaks, "the attacker missed units of fewer than k students"
    found = {leak.derived.attack for leak in verdict.leaks}
    assert "direct" in found and found - {"direct"}, found


def students_per_cell(cells: Iterable[merge.Cell]) -> int:
    """The weakened count: a student in two merged cells taken for two students."""
    return sum(cell.students for cell in cells)


async def test_students_counted_per_cell_in_merged_units_are_caught(
    settings: Settings,
    pool: asyncpg.Pool,
    tokens: dict[str, str],
    database_url: str,
    journals: dict[Kind, Journal],
) -> None:
    """Weakened: a merged unit's students summed over its cells instead of counted
    distinct, so units of fewer than k children (the same few absent in several
    subjects) are published. Attendance only: in the scale-1 data no merged marks unit
    changes (the small marks cells merged together hold different students)."""
    k = settings.analytics.min_group_size
    kind: Kind = "attendance"
    async with restored_units(settings, database_url):
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(merge, "_distinct", students_per_cell)
            patch.setattr(merge.Unit, "students", property(lambda u: students_per_cell(u.cells)))
            await build_units(settings, database_url, k)
        async with attacker_client(settings, pool) as client:
            _attacker, verdict = await campaign(client, tokens[ANALYST], journals[kind], k)
    assert verdict.leaks, "the attacker missed merged units of fewer than k students"
    assert {leak.derived.attack for leak in verdict.leaks} - {"direct"}


@pytest.mark.parametrize("kind", ["marks", "attendance"])
async def test_a_small_cell_counted_in_totals_only_is_caught(
    settings: Settings,
    pool: asyncpg.Pool,
    tokens: dict[str, str],
    owner_conn: asyncpg.Connection,
    database_url: str,
    journals: dict[Kind, Journal],
    kind: Kind,
) -> None:
    """Weakened ("totals from all data"): a small cell's figures in a published unit
    that groupings call spanning (key columns NULL; an attendance unit keeps its code)
    but filters include (its values in the arrays): it reaches totals, and total −
    groups is that cell."""
    k = settings.analytics.min_group_size
    journal = journals[kind]
    key = small_cells(journal, k)[0]
    cell = journal.cells[key]
    async with restored_units(settings, database_url):
        await refresh_cells(database_url, settings)
        await plant_spanning_unit(owner_conn, kind, cell)
        async with attacker_client(settings, pool) as client:
            attacker = Attacker(client, tokens[ANALYST], kind)
            await cell_attacks(attacker, journal, key)
    leaks = journal.judge(attacker.derived, k).leaks
    by_attack = Counter(leak.derived.attack for leak in leaks)
    print(f"\n{kind}, planted spanning unit: {len(leaks)} leaks, by attack {dict(by_attack)}")
    recovered = [
        leak
        for leak in leaks
        if leak.derived.attack == "total−groups"
        and leak.figure == "count"
        and leak.value == cell.counts["count"]
    ]
    assert recovered, "total − groups did not recover the small cell"


_PLANT_SQL = {
    "marks": """
        INSERT INTO gateway.analytics_mark_units (
            unit_id, published, level, year_id, school_ids, municipality_ids, grades,
            subject_ids, period_schemes, period_numbers, work_type_ids, students, marks,
            counted_marks, weight_sum, weighted_sum)
        SELECT coalesce(max(unit_id), 0) + 1, true, 0, min(year_id), $1, $2, $3, $4, $5, $6,
               $7, $8, $9, $10, $11, 0
        FROM gateway.analytics_mark_units
        RETURNING unit_id
        """,
    "attendance": """
        INSERT INTO gateway.analytics_attendance_units (
            unit_id, published, level, year_id, school_ids, municipality_ids, grades,
            subject_ids, period_schemes, period_numbers, code, students, records)
        SELECT coalesce(max(unit_id), 0) + 1, true, 0, min(year_id), $1, $2, $3, $4, $5, $6,
               $7, $8, $9
        FROM gateway.analytics_attendance_units
        RETURNING unit_id
        """,
}


async def plant_spanning_unit(conn: asyncpg.Connection, kind: Kind, cell: Cell) -> None:
    """A published unit holding one base cell's figures, every key column NULL (but the
    code of an attendance unit)."""
    arrays: list[Any] = [[value] for value in cell.key[:6]]
    detail = [cell.key[6]] if kind == "marks" else cell.key[6]  # work type ids | the code
    figures: list[Any] = [len(cell.students), cell.counts["count"]]
    if kind == "marks":
        figures += [cell.counts["counted"], Decimal(cell.counts["weight"]) / 100]
    unit_id: int = await conn.fetchval(_PLANT_SQL[kind], *arrays, detail, *figures)
    if kind == "marks":
        values = [
            (unit_id, name.removeprefix("value:"), count)
            for name, count in cell.counts.items()
            if name.startswith("value:")
        ]
        await conn.executemany(
            "INSERT INTO gateway.analytics_mark_unit_values (unit_id, value, marks) "
            "VALUES ($1, $2, $3)",
            values,
        )

"""School dashboard, parent registry quality: findings match rows the test plants.

The test plants, in the demo admin's school: a parent without SNILS, one with a wrong
SNILS checksum, one without a phone, a student without any parent, and a parent whose
SNILS is also in another school's registry with a different birth date. Every planted
row is removed afterwards. Whole-school counts are checked against SQL over the tables
and a checksum written here independently of gateway.core.identifiers.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date
from typing import Any

import asyncpg
import pytest
from starlette.applications import Starlette

from gateway.core import identifiers as snils
from tests.support.dashboard_support import admin_school_id, ask, dashboard_query, other_school_id
from tests.support.environment import GraphQL
from tests.support.planted import error_codes

REGISTRY = """registry {
  parentRecords parentsWithoutSnils parentsWithInvalidSnils parentsWithoutPhone
  mergedParentsWithDifferences studentsWithoutParents
  parentFindings(first: $first, issue: $issue) {
    id fullName maskedSnils maskedPhone childrenCount issues otherSchoolIds differingFields
  }
  unlinkedStudents(first: $first) { id fullName schoolClass { id name } }
}"""
QUERY = dashboard_query(REGISTRY).replace(
    "$to: Date)", "$to: Date, $first: Int! = 100, $issue: RegistryIssue)"
)
COUNTS = (
    "parentRecords",
    "parentsWithoutSnils",
    "parentsWithInvalidSnils",
    "parentsWithoutPhone",
    "mergedParentsWithDifferences",
    "studentsWithoutParents",
)
MERGED_SNILS = snils.make("777000333")
BAD_SNILS = snils.make("777000111")[:9] + ("00" if snils.make("777000111")[9:] != "00" else "01")
NO_PHONE_SNILS = snils.make("777000222")
PHONES = {"no_snils": "+79990000001", "bad_snils": "+79990000002", "merged": "+79990000004"}


@dataclass(frozen=True, slots=True)
class Planted:
    school_id: int
    other_school_id: int
    parent_ids: dict[str, int]  # no_snils, bad_snils, no_phone, merged, merged_elsewhere
    student_id: int
    class_id: int


def independent_snils_ok(value: str) -> bool:
    """The SNILS rule written again: 11 digits; above 001-001-998 a mod-101 checksum."""
    digits = value.replace("-", "").replace(" ", "")
    if len(digits) != 11 or not digits.isdigit():
        return False
    if int(digits[:9]) <= 1_001_998:
        return True
    total = sum(int(d) * (9 - i) for i, d in enumerate(digits[:9]))
    check = total % 101 if total > 101 else total
    return digits[9:] == ("00" if check in (100, 101) else f"{check:02d}")


async def _parent(
    conn: asyncpg.Connection,
    parent_id: int,
    school_id: int,
    *,
    snils_value: str | None,
    phone: str | None,
    birth: date = date(1985, 1, 1),
) -> None:
    await conn.execute(
        """INSERT INTO school.parents
               (id, school_id, last_name, first_name, patronymic, birth_date, phone, snils)
           VALUES ($1, $2, 'Реестрова', 'Проверка', 'Тестовна', $3, $4, $5)""",
        parent_id,
        school_id,
        birth,
        phone,
        snils_value,
    )


@asynccontextmanager
async def plant(owner_conn: asyncpg.Connection) -> AsyncIterator[Planted]:
    """The planted rows (see the module docstring); removed on exit."""
    school_id = await admin_school_id(owner_conn)
    other = await other_school_id(owner_conn, school_id)
    first = await owner_conn.fetchval("SELECT max(id) + 100 FROM school.parents")
    ids = {
        name: first + offset
        for offset, name in enumerate(
            ("no_snils", "bad_snils", "no_phone", "merged", "merged_elsewhere")
        )
    }
    class_id = await owner_conn.fetchval(
        "SELECT min(id) FROM school.classes WHERE school_id = $1 AND grade = 3", school_id
    )
    student_id = await owner_conn.fetchval("SELECT max(id) + 100 FROM school.students")
    await _parent(
        owner_conn, ids["no_snils"], school_id, snils_value=None, phone=PHONES["no_snils"]
    )
    await _parent(
        owner_conn, ids["bad_snils"], school_id, snils_value=BAD_SNILS, phone=PHONES["bad_snils"]
    )
    await _parent(owner_conn, ids["no_phone"], school_id, snils_value=NO_PHONE_SNILS, phone=None)
    await _parent(
        owner_conn, ids["merged"], school_id, snils_value=MERGED_SNILS, phone=PHONES["merged"]
    )
    await _parent(
        owner_conn,
        ids["merged_elsewhere"],
        other,
        snils_value=MERGED_SNILS,
        phone=PHONES["merged"],
        birth=date(1986, 2, 2),
    )
    await owner_conn.execute(
        """INSERT INTO school.students
               (id, school_id, class_id, last_name, first_name, patronymic, birth_date, gender)
           VALUES ($1, $2, $3, 'Аааев', 'Без', 'Родителей', '2018-03-03', 'M')""",
        student_id,
        school_id,
        class_id,
    )
    try:
        yield Planted(school_id, other, ids, student_id, class_id)
    finally:
        await owner_conn.execute("DELETE FROM school.students WHERE id = $1", student_id)
        await owner_conn.execute(
            "DELETE FROM school.parents WHERE id = ANY($1::int[])", list(ids.values())
        )


@pytest.fixture
async def planted(owner_conn: asyncpg.Connection) -> AsyncIterator[Planted]:
    async with plant(owner_conn) as rows:
        yield rows


async def registry(
    gql: GraphQL, school_id: int, *, first: int = 500, issue: str | None = None
) -> dict[str, Any]:
    payload = await ask(gql, QUERY, school_id, first=first, issue=issue)
    assert "errors" not in payload, payload
    result: dict[str, Any] = payload["data"]["schoolDashboard"]["registry"]
    return result


async def expected_counts(conn: asyncpg.Connection, school_id: int) -> dict[str, int]:
    """Whole-school counts straight from the tables."""
    parents = await conn.fetch(
        "SELECT snils, phone FROM school.parents WHERE school_id = $1", school_id
    )
    merged = await conn.fetchval(
        """SELECT count(*) FROM school.parents p
           WHERE p.school_id = $1 AND p.snils ~ '^[0-9]{11}$' AND EXISTS (
               SELECT 1 FROM school.parents q
               WHERE q.snils = p.snils AND q.school_id <> p.school_id
                 AND (q.last_name, q.first_name, q.patronymic, q.birth_date, q.phone)
                     IS DISTINCT FROM
                     (p.last_name, p.first_name, p.patronymic, p.birth_date, p.phone))""",
        school_id,
    )
    unlinked = await conn.fetchval(
        """SELECT count(*) FROM school.students s WHERE s.school_id = $1
           AND NOT EXISTS (SELECT 1 FROM school.parent_students ps WHERE ps.student_id = s.id)""",
        school_id,
    )
    present = [row["snils"] for row in parents if (row["snils"] or "").strip()]
    return {
        "parentRecords": len(parents),
        "parentsWithoutSnils": len(parents) - len(present),
        "parentsWithInvalidSnils": sum(not independent_snils_ok(value) for value in present),
        "parentsWithoutPhone": sum(not (row["phone"] or "").strip() for row in parents),
        "mergedParentsWithDifferences": merged,
        "studentsWithoutParents": unlinked,
    }


async def test_counts_match_the_tables(gql: GraphQL, owner_conn: asyncpg.Connection) -> None:
    school_id = await admin_school_id(owner_conn)
    shown = await registry(gql, school_id)
    expected = await expected_counts(owner_conn, school_id)
    assert {name: shown[name] for name in COUNTS} == expected
    # The generator plants dirt of every kind (at least in the data set's first school).
    assert all(expected[name] > 0 for name in COUNTS)
    assert len(shown["unlinkedStudents"]) == expected["studentsWithoutParents"]
    with_issue = [f for f in shown["parentFindings"] if f["issues"]]
    assert len(with_issue) == len(shown["parentFindings"]) > 0


async def test_planted_rows_are_found(
    gql: GraphQL, owner_conn: asyncpg.Connection, app: Starlette, planted: Planted
) -> None:
    shown = await registry(gql, planted.school_id)
    assert {name: shown[name] for name in COUNTS} == await expected_counts(
        owner_conn, planted.school_id
    )
    findings: dict[str, dict[str, Any]] = {f["id"]: f for f in shown["parentFindings"]}
    ids = planted.parent_ids

    def finding(name: str) -> dict[str, Any]:
        return findings[str(ids[name])]

    base = {"fullName": "Реестрова Проверка Тестовна", "childrenCount": 0}
    assert finding("no_snils") == {
        **base,
        "id": str(ids["no_snils"]),
        "maskedSnils": None,
        "maskedPhone": "+7999***01",
        "issues": ["NO_SNILS"],
        "otherSchoolIds": [],
        "differingFields": [],
    }
    assert finding("bad_snils")["issues"] == ["INVALID_SNILS"]
    assert finding("bad_snils")["maskedSnils"] == snils.masked(BAD_SNILS)
    assert finding("no_phone")["issues"] == ["NO_PHONE"]
    assert finding("no_phone")["maskedPhone"] is None
    assert finding("merged") == {
        **base,
        "id": str(ids["merged"]),
        "maskedSnils": "***-***-333 " + MERGED_SNILS[9:],
        "maskedPhone": "+7999***04",
        "issues": ["MERGED_DATA_DIFFERS"],
        "otherSchoolIds": [str(planted.other_school_id)],
        "differingFields": ["BIRTH_DATE"],
    }
    assert str(ids["merged_elsewhere"]) not in findings  # another school's record
    unlinked = {s["id"]: s for s in shown["unlinkedStudents"]}
    assert unlinked[str(planted.student_id)]["fullName"] == "Аааев Без Родителей"
    assert unlinked[str(planted.student_id)]["schoolClass"]["id"] == str(planted.class_id)
    # Identifiers only masked; no birth dates, no other school's values.
    text = json.dumps(shown, ensure_ascii=False)
    for raw in (MERGED_SNILS, BAD_SNILS, NO_PHONE_SNILS, *PHONES.values(), "1985-01-01", "1986"):
        assert raw not in text
    # The listed students are in the access audit of the admin's request.
    await app.state.auth.recorder.flush()
    audited = await owner_conn.fetchval(
        """SELECT count(*) FROM gateway.access_audit
           WHERE role = 'SCHOOL_ADMIN' AND student_ids @> ARRAY[$1::int]""",
        planted.student_id,
    )
    assert audited >= 1


async def test_planted_rows_change_the_counts(gql: GraphQL, owner_conn: asyncpg.Connection) -> None:
    """Each planted row adds exactly one to its count."""
    school_id = await admin_school_id(owner_conn)
    before = await registry(gql, school_id)
    async with plant(owner_conn):
        after = await registry(gql, school_id)
    assert {name: after[name] - before[name] for name in COUNTS} == {
        "parentRecords": 4,
        "parentsWithoutSnils": 1,
        "parentsWithInvalidSnils": 1,
        "parentsWithoutPhone": 1,
        "mergedParentsWithDifferences": 1,
        "studentsWithoutParents": 1,
    }
    restored = await registry(gql, school_id)
    assert restored == before


async def test_issue_filter_and_limits(
    gql: GraphQL, owner_conn: asyncpg.Connection, planted: Planted
) -> None:
    everything = await registry(gql, planted.school_id)
    only = await registry(gql, planted.school_id, issue="INVALID_SNILS")
    assert only["parentFindings"] == [
        f for f in everything["parentFindings"] if "INVALID_SNILS" in f["issues"]
    ]
    assert len(only["parentFindings"]) == everything["parentsWithInvalidSnils"]
    one = await registry(gql, planted.school_id, first=1)
    assert one["parentFindings"] == everything["parentFindings"][:1]
    assert one["unlinkedStudents"] == everything["unlinkedStudents"][:1]
    assert {name: one[name] for name in COUNTS} == {name: everything[name] for name in COUNTS}
    payload = await ask(gql, QUERY, planted.school_id, first=0)
    assert error_codes(payload) == ["LIMIT_OUT_OF_RANGE"]

"""The generated school database: the load, determinism, people, registries with their
planted dirt, and the demo accounts (the journal itself: test_generator_journal.py).

Tests read the session's scale-1 data set (`seeded`); determinism seeds a second
database on the same server and compares table dumps.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from urllib.parse import urlsplit

import asyncpg
import pytest
from argon2 import PasswordHasher

from fixtures.demo import DEMO_ACCOUNTS, demo_account
from fixtures.demo_listing import demo_account_rows
from fixtures.generate import SeedSummary, seed
from gateway.core import identifiers as snils

SECOND_DATABASE = "school_generator_determinism"
PHONE_PATTERN = r"^\+79[0-9]{9}$"


# -- the load ----------------------------------------------------------------------------


async def test_summary_matches_the_tables(
    seeded: SeedSummary, owner_conn: asyncpg.Connection
) -> None:
    for table, rows in seeded.rows.items():
        assert await owner_conn.fetchval(f"SELECT count(*) FROM school.{table}") == rows, table
    assert seeded.rows["marks"] > 50_000
    assert seeded.seconds < 15
    described = seeded.describe()
    assert "rows/s" in described
    assert all(table in described for table in seeded.rows)
    info = await owner_conn.fetchrow("SELECT scale, seed, today FROM gateway.seed_info")
    assert (info["scale"], info["seed"], info["today"]) == (seeded.scale, seeded.seed, seeded.today)


async def test_scale_one_shape(owner_conn: asyncpg.Connection) -> None:
    assert await owner_conn.fetchval("SELECT count(*) FROM school.schools") == 3
    assert await owner_conn.fetchval("SELECT count(*) FROM school.municipalities") == 2
    classes = await owner_conn.fetch(
        """SELECT c.school_id, c.grade, count(DISTINCT c.id) AS letters,
                  min(size) AS smallest, max(size) AS largest
           FROM school.classes c
           JOIN (SELECT class_id, count(*) AS size FROM school.students GROUP BY 1) s
             ON s.class_id = c.id
           GROUP BY 1, 2"""
    )
    assert len(classes) == 3 * 11
    assert all(1 <= row["letters"] <= 2 for row in classes)
    assert all(row["smallest"] >= 18 and row["largest"] <= 26 for row in classes)


async def test_foreign_keys_hold(owner_conn: asyncpg.Connection) -> None:
    """The loader skips FK triggers for speed, so check every foreign key here."""
    keys = await owner_conn.fetch(
        """SELECT c.conrelid::regclass::text AS child, a.attname AS column,
                  c.confrelid::regclass::text AS parent, b.attname AS referenced
           FROM pg_constraint c
           JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
           JOIN pg_attribute b ON b.attrelid = c.confrelid AND b.attnum = c.confkey[1]
           WHERE c.contype = 'f' AND c.connamespace = 'school'::regnamespace"""
    )
    assert len(keys) > 20
    for key in keys:
        orphans = await owner_conn.fetchval(
            f"""SELECT count(*) FROM {key["child"]} c
                WHERE c.{key["column"]} IS NOT NULL AND NOT EXISTS (
                    SELECT 1 FROM {key["parent"]} p
                    WHERE p.{key["referenced"]} = c.{key["column"]})"""
        )
        assert orphans == 0, dict(key)


@pytest.fixture
async def second_database(owner_url: str) -> AsyncIterator[str]:
    """A fresh database on the test server, dropped afterwards."""
    admin = await asyncpg.connect(owner_url)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {SECOND_DATABASE} WITH (FORCE)")
        await admin.execute(f"CREATE DATABASE {SECOND_DATABASE}")
        yield urlsplit(owner_url)._replace(path=f"/{SECOND_DATABASE}").geturl()
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {SECOND_DATABASE} WITH (FORCE)")
        await admin.close()


async def _digest(url: str) -> dict[str, str]:
    """sha256 of every table of schema `school`, dumped in key order."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("SET TimeZone = 'UTC'")
        tables = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'school' ORDER BY 1"
        )
        digests: dict[str, str] = {}
        for table in tables:
            digest = hashlib.sha256()

            async def feed(chunk: bytes, digest: hashlib._Hash = digest) -> None:
                digest.update(chunk)

            name = table["tablename"]
            await conn.copy_from_query(f"SELECT * FROM school.{name} ORDER BY 1, 2", output=feed)
            digests[name] = digest.hexdigest()
        return digests
    finally:
        await conn.close()


async def test_same_seed_gives_identical_tables(
    owner_url: str, seeded: SeedSummary, second_database: str
) -> None:
    again = await seed(second_database, scale=seeded.scale, seed=seeded.seed, today=seeded.today)
    assert again.rows == seeded.rows
    first, second = await _digest(owner_url), await _digest(second_database)
    assert len(first) >= 20
    assert first == second


# -- people and registries ---------------------------------------------------------------


async def test_snils_of_students_and_staff_are_valid(owner_conn: asyncpg.Connection) -> None:
    for table in ("students", "staff"):
        values = await owner_conn.fetch(f"SELECT snils FROM school.{table} WHERE snils IS NOT NULL")
        assert values
        assert all(snils.is_valid(row["snils"]) for row in values), table


async def test_parent_registry_has_planted_dirt(owner_conn: asyncpg.Connection) -> None:
    rows = await owner_conn.fetch("SELECT snils, phone FROM school.parents")
    total = len(rows)
    invalid = [
        r["snils"] for r in rows if r["snils"] is not None and not snils.is_valid(r["snils"])
    ]
    missing_snils = sum(1 for r in rows if r["snils"] is None)
    missing_phone = sum(1 for r in rows if r["phone"] is None)
    assert 0 < len(invalid) <= 0.03 * total
    assert all(len(value) == 11 and value.isdigit() for value in invalid)
    assert 0.01 * total <= missing_snils <= 0.06 * total
    assert 0.01 * total <= missing_phone <= 0.06 * total
    orphans = await owner_conn.fetchval(
        """SELECT count(*) FROM school.students s WHERE NOT EXISTS
               (SELECT 1 FROM school.parent_students ps WHERE ps.student_id = s.id)"""
    )
    students = await owner_conn.fetchval("SELECT count(*) FROM school.students")
    assert 0.005 * students <= orphans <= 0.04 * students


async def test_phones_are_russian_mobiles(owner_conn: asyncpg.Connection) -> None:
    for table in ("students", "parents", "staff"):
        wrong = await owner_conn.fetchval(
            f"SELECT count(*) FROM school.{table} WHERE phone !~ $1", PHONE_PATTERN
        )
        assert wrong == 0, table


async def test_students_sign_in_by_age(owner_conn: asyncpg.Connection, seeded: SeedSummary) -> None:
    """Under 14.5: school login and argon2 hash; over 14.5: SNILS and phone."""
    wrong = await owner_conn.fetchval(
        """SELECT count(*) FROM school.students
           WHERE CASE WHEN birth_date + interval '14 years 6 months' <= $1
                      THEN snils IS NULL OR phone IS NULL OR login IS NOT NULL
                      ELSE login IS NULL OR snils IS NOT NULL
                           OR password_hash NOT LIKE '$argon2id$%'
                 END""",
        seeded.today,
    )
    assert wrong == 0


async def test_patronymics_match_gender(owner_conn: asyncpg.Connection) -> None:
    students = await owner_conn.fetch("SELECT gender, patronymic FROM school.students")
    for row in students:
        assert row["patronymic"].endswith("на" if row["gender"] == "F" else "ич"), dict(row)
    parents = await owner_conn.fetch(
        """SELECT DISTINCT ps.relation, p.patronymic FROM school.parents p
           JOIN school.parent_students ps ON ps.parent_id = p.id"""
    )
    for row in parents:
        assert row["patronymic"].endswith("на" if row["relation"] == "mother" else "ич")


async def test_some_generated_families_span_two_schools(owner_conn: asyncpg.Connection) -> None:
    demo_snils = [a.snils for a in DEMO_ACCOUNTS if a.snils]
    merged = await owner_conn.fetch(
        """SELECT snils, count(DISTINCT school_id) AS schools,
                  count(DISTINCT (last_name, first_name, patronymic)) AS names,
                  count(DISTINCT phone) AS phones, count(DISTINCT birth_date) AS births
           FROM school.parents WHERE snils IS NOT NULL AND NOT snils = ANY($1::text[])
           GROUP BY snils HAVING count(*) > 1""",
        demo_snils,
    )
    assert merged
    assert all(row["schools"] == 2 and row["names"] == 1 for row in merged)
    assert any(row["phones"] > 1 or row["births"] > 1 for row in merged)


# -- demo accounts -----------------------------------------------------------------------


async def _rows_holding(conn: asyncpg.Connection, column: str, value: str) -> list[str]:
    found: list[str] = []
    for table in ("students",) if column == "login" else ("students", "parents", "staff"):
        count = await conn.fetchval(
            f"SELECT count(*) FROM school.{table} WHERE {column} = $1", value
        )
        found += [table] * count
    return found


async def test_demo_identities_are_not_reused(owner_conn: asyncpg.Connection) -> None:
    expected = {
        "parent-one-school": ["parents"],
        "parent-two-schools": ["parents", "parents"],
        "student-older": ["students"],
        "parent-unregistered": [],
        "school-admin": ["staff"],
        "regional-analyst": ["staff"],
    }
    for key, tables in expected.items():
        account = demo_account(key)
        assert account.snils and account.phone
        assert await _rows_holding(owner_conn, "snils", account.snils) == tables, key
        assert await _rows_holding(owner_conn, "phone", account.phone) == tables, key
    for account in DEMO_ACCOUNTS:
        for child in account.children:
            if child.login:
                assert await _rows_holding(owner_conn, "login", child.login) == ["students"]


async def test_demo_children_are_planted(
    owner_conn: asyncpg.Connection, seeded: SeedSummary
) -> None:
    hasher = PasswordHasher()
    for account in DEMO_ACCOUNTS:
        for child in account.children:
            row = await owner_conn.fetchrow(
                """SELECT s.*, c.grade, c.letter FROM school.students s
                   JOIN school.classes c ON c.id = s.class_id
                   WHERE s.last_name = $1 AND s.first_name = $2 AND s.patronymic = $3
                     AND (s.login = $4 OR s.snils = $5)""",
                child.last_name, child.first_name, child.patronymic, child.login, child.snils,
            )  # fmt: skip
            assert row is not None, child
            assert (row["school_id"], row["grade"], row["letter"]) == (
                child.school + 1, child.grade, child.letter,
            )  # fmt: skip
            birth = seeded.today.replace(year=seeded.today.year - child.age_years)
            assert row["birth_date"] == birth - timedelta(days=child.age_days)
            over_14_5 = await owner_conn.fetchval(
                "SELECT $1::date + interval '14 years 6 months' <= $2::date",
                row["birth_date"], seeded.today,
            )  # fmt: skip
            assert over_14_5 == (child.age_years >= 15) == (child.snils is not None)
            if child.password:
                assert hasher.verify(row["password_hash"], child.password)
            else:
                assert (row["snils"], row["phone"], row["login"]) == (
                    child.snils,
                    child.phone,
                    None,
                )


async def test_demo_parents_are_in_their_registries(owner_conn: asyncpg.Connection) -> None:
    for account in DEMO_ACCOUNTS:
        if account.role != "PARENT" or not account.snils or not account.snils_in_registry:
            continue
        records = await owner_conn.fetch(
            """SELECT p.school_id, array_agg(s.first_name ORDER BY s.id) AS children
               FROM school.parents p
               JOIN school.parent_students ps ON ps.parent_id = p.id
               JOIN school.students s ON s.id = ps.student_id
               WHERE p.snils = $1 GROUP BY 1 ORDER BY 1""",
            account.snils,
        )
        assert [r["school_id"] - 1 for r in records] == list(account.registry_schools), account.key
        by_school = {r["school_id"] - 1: r["children"] for r in records}
        for child in account.children:
            assert child.first_name in by_school[child.school]
    two_schools = demo_account("parent-two-schools")
    assert two_schools.registry_schools == (0, 1)


async def test_demo_staff(owner_conn: asyncpg.Connection) -> None:
    admin, analyst = demo_account("school-admin"), demo_account("regional-analyst")
    staff = await owner_conn.fetch("SELECT * FROM school.staff ORDER BY id")
    admins = [row for row in staff if row["role"] == "it_admin"]
    assert len(admins) == 3 and {row["school_id"] for row in admins} == {1, 2, 3}
    school_admin = next(row for row in admins if row["school_id"] == admin.school + 1)  # type: ignore[operator]
    assert (school_admin["snils"], school_admin["last_name"]) == (admin.snils, admin.last_name)
    regional = [row for row in staff if row["role"] == "regional_analyst"]
    assert len(regional) == 1 and regional[0]["school_id"] is None
    assert regional[0]["snils"] == analyst.snils


async def test_demo_children_have_a_full_diary(
    owner_conn: asyncpg.Connection, seeded: SeedSummary
) -> None:
    for account in DEMO_ACCOUNTS:
        for child in account.children:
            student_id = await owner_conn.fetchval(
                "SELECT id FROM school.students WHERE login = $1 OR snils = $2",
                child.login, child.snils,
            )  # fmt: skip
            counts = await owner_conn.fetchrow(
                """SELECT
                     (SELECT count(*) FROM school.marks WHERE student_id = $1) AS marks,
                     (SELECT count(*) FROM school.lessons l JOIN school.students s
                        ON s.class_id = l.class_id WHERE s.id = $1) AS lessons,
                     (SELECT count(*) FROM school.homework h JOIN school.students s
                        ON s.class_id = h.class_id WHERE s.id = $1) AS homework,
                     (SELECT count(*) FROM school.final_marks WHERE student_id = $1) AS finals""",
                student_id,
            )
            assert counts["marks"] > 30 and counts["lessons"] > 200 and counts["homework"] > 100
            assert (counts["finals"] > 0) == (child.grade <= 9), child


async def test_demo_account_rows(owner_conn: asyncpg.Connection) -> None:
    rows = await demo_account_rows(owner_conn)
    assert [row.key for row in rows] == [a.key for a in DEMO_ACCOUNTS]
    by_key = {row.key: row for row in rows}
    school_names = dict(await owner_conn.fetch("SELECT id, short_name FROM school.schools"))

    one = by_key["parent-one-school"]
    assert one.full_name == "Смирнова Елена Викторовна"
    assert one.snils == snils.formatted(str(demo_account("parent-one-school").snils))
    assert [(c.full_name, c.class_name, c.school) for c in one.children] == [
        ("Смирнов Пётр Алексеевич", "4А", school_names[1]),
        ("Смирнова Анна Алексеевна", "7А", school_names[1]),
    ]
    two = by_key["parent-two-schools"]
    assert [(c.class_name, c.school) for c in two.children] == [
        ("5Б", school_names[1]),
        ("10А", school_names[2]),
    ]
    young, older = by_key["student-young"], by_key["student-older"]
    assert young.login == "smirnov.petr" and young.password == "Dnevnik-2026"
    assert [c.student_id for c in young.children] == [one.children[0].student_id]
    assert [c.student_id for c in older.children] == [two.children[1].student_id]
    assert by_key["parent-unregistered"].children == ()
    assert by_key["school-admin"].school == school_names[1]
    assert by_key["regional-analyst"].school is None and by_key["regional-analyst"].children == ()
    payload = json.loads(json.dumps([row.as_dict() for row in rows]))
    assert payload[0]["children"][0]["class_name"] == "4А"

"""The generated school database: determinism, realism, planted dirt and demo accounts.

Most tests read the session's scale-1 data set (`seeded`); determinism seeds a second
database on the same server; the mid-week and year-end cases run the generator in
memory for one school.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
from collections.abc import AsyncIterator
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from urllib.parse import urlsplit

import asyncpg
import pytest
from argon2 import PasswordHasher

from fixtures import snils
from fixtures.demo import DEMO_ACCOUNTS, demo_account
from fixtures.demo_listing import demo_account_rows
from fixtures.generate import YEAR_ID, SeedSummary, plan_region, populate_registry, seed
from fixtures.generator_calendar import TZ, at, build_calendar
from fixtures.generator_journal import JournalContext, JournalRows, school_journal
from fixtures.generator_load import COLUMNS
from fixtures.generator_model import IdCounters, SchoolPlan
from fixtures.generator_texts import WEIGHT_CHANGED_COMMENT

SECOND_DATABASE = "school_generator_determinism"
PHONE_PATTERN = r"^\+79[0-9]{9}$"


def _evening(day: date) -> datetime:
    return datetime.combine(day, time(20, 0), tzinfo=TZ)


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
async def second_database(database_url: str) -> AsyncIterator[str]:
    """A fresh database on the test server, dropped afterwards."""
    admin = await asyncpg.connect(database_url)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {SECOND_DATABASE} WITH (FORCE)")
        await admin.execute(f"CREATE DATABASE {SECOND_DATABASE}")
        yield urlsplit(database_url)._replace(path=f"/{SECOND_DATABASE}").geturl()
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
    database_url: str, seeded: SeedSummary, second_database: str
) -> None:
    again = await seed(second_database, scale=seeded.scale, seed=seeded.seed, today=seeded.today)
    assert again.rows == seeded.rows
    first, second = await _digest(database_url), await _digest(second_database)
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
    for table in ("students", "parents", "staff"):
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
            adult = row["birth_date"] + timedelta(days=int(14.5 * 365.25)) <= seeded.today
            assert adult == (child.age_years >= 15)
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
        if account.role != "PARENT" or not account.snils:
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


# -- lessons -------------------------------------------------------------------------------


async def test_lessons_follow_the_calendar(
    owner_conn: asyncpg.Connection, seeded: SeedSummary
) -> None:
    calendar = build_calendar(seeded.today)
    days = await owner_conn.fetch("SELECT DISTINCT date FROM school.lessons ORDER BY 1")
    study_days = set(calendar.study_days(2, calendar.window_end))
    assert days[0]["date"] == date(2026, 9, 1)
    assert days[-1]["date"] == calendar.window_end - timedelta(days=2)  # Friday of today's week
    for row in days:
        assert row["date"].weekday() < 5 and row["date"] in study_days, row["date"]
    outside = await owner_conn.fetchval(
        """SELECT count(*) FROM school.lessons l JOIN school.classes c ON c.id = l.class_id
           WHERE NOT EXISTS (SELECT 1 FROM school.periods p WHERE p.school_id = c.school_id
                             AND p.scheme = 'quarters'
                             AND l.date BETWEEN p.starts_on AND p.ends_on)"""
    )
    assert outside == 0
    assert date(2026, 11, 4) not in {row["date"] for row in days}  # a public holiday


async def test_no_teacher_is_in_two_classes_at_once(owner_conn: asyncpg.Connection) -> None:
    clashes = await owner_conn.fetchval(
        """SELECT count(*) FROM (SELECT 1 FROM school.lessons
           GROUP BY teacher_id, date, number HAVING count(*) > 1) t"""
    )
    assert clashes == 0


async def test_cancellations_and_replacements(owner_conn: asyncpg.Connection) -> None:
    stats = await owner_conn.fetchrow(
        """SELECT count(*) AS total,
                  count(*) FILTER (WHERE status = 'cancelled') AS cancelled,
                  count(*) FILTER (WHERE status = 'replaced') AS replaced,
                  count(*) FILTER (WHERE replacement_subject_id IS NOT NULL) AS other_subject,
                  count(*) FILTER (WHERE status <> 'held' AND status_comment IS NULL) AS silent,
                  count(*) FILTER (WHERE status = 'replaced' AND replacement_teacher_id IS NULL
                                   AND replacement_subject_id IS NULL) AS empty
           FROM school.lessons"""
    )
    assert 0.01 < stats["cancelled"] / stats["total"] < 0.03
    assert 0.02 < stats["replaced"] / stats["total"] < 0.04
    assert 0 < stats["other_subject"] < stats["replaced"]
    assert stats["silent"] == 0 and stats["empty"] == 0
    for table in ("lesson_topics", "marks", "attendance", "homework"):
        column = "lesson_id"
        on_cancelled = await owner_conn.fetchval(
            f"""SELECT count(*) FROM school.{table} t JOIN school.lessons l ON l.id = t.{column}
                WHERE l.status = 'cancelled'"""
        )
        assert on_cancelled == 0, table


async def test_topics_are_mostly_filled(owner_conn: asyncpg.Connection) -> None:
    share = await owner_conn.fetchval(
        """SELECT avg((t.lesson_id IS NOT NULL)::int) FROM school.lessons l
           LEFT JOIN school.lesson_topics t ON t.lesson_id = l.id WHERE l.status <> 'cancelled'"""
    )
    assert Decimal("0.92") < share < Decimal("0.98")


async def test_homework_is_due_at_the_next_lesson(owner_conn: asyncpg.Connection) -> None:
    wrong = await owner_conn.fetchval(
        """SELECT count(*) FROM school.homework h JOIN school.lessons l ON l.id = h.lesson_id
           WHERE h.assigned_on <> l.date OR h.subject_id <> l.subject_id OR h.due_on <= l.date
              OR (h.due_on <= (SELECT max(date) FROM school.lessons) AND h.due_on <> (
                   SELECT min(n.date) FROM school.lessons n WHERE n.class_id = l.class_id
                   AND n.subject_id = l.subject_id AND n.date > l.date))"""
    )
    assert wrong == 0
    attachments = await owner_conn.fetch("SELECT url FROM school.homework_attachments")
    assert attachments and all(row["url"].startswith("https://") for row in attachments)


async def test_nothing_is_stamped_after_today(
    owner_conn: asyncpg.Connection, seeded: SeedSummary
) -> None:
    for table in ("students", "parents", "lessons", "lesson_topics", "homework", "marks",
                  "final_marks", "attendance"):  # fmt: skip
        latest = await owner_conn.fetchval(f"SELECT max(updated_at) FROM school.{table}")
        assert latest <= _evening(seeded.today), table
    assert (
        await owner_conn.fetchval(
            "SELECT count(*) FROM school.marks WHERE created_at > updated_at OR date > $1",
            seeded.today,
        )
        == 0
    )


# -- marks and attendance ------------------------------------------------------------------


async def test_first_grade_has_no_marks(owner_conn: asyncpg.Connection) -> None:
    for table in ("marks", "final_marks"):
        count = await owner_conn.fetchval(
            f"""SELECT count(*) FROM school.{table} m JOIN school.students s ON s.id = m.student_id
                JOIN school.classes c ON c.id = s.class_id WHERE c.grade = 1"""
        )
        assert count == 0, table


async def test_mark_values(owner_conn: asyncpg.Connection) -> None:
    values = dict(
        await owner_conn.fetch(
            "SELECT value, count(*) FROM school.marks GROUP BY 1 ORDER BY 2 DESC"
        )
    )
    total = sum(values.values())
    main = sum(values.get(v, 0) for v in ("2", "3", "4", "5"))
    assert main / total > 0.8
    for text in ("4-", "5+", "зачёт", "незачёт", "осв"):
        assert values.get(text, 0) > 0, text
    wrong = await owner_conn.fetchval(
        """SELECT count(*) FROM school.marks WHERE
             (value ~ '^[1-5][+-]?$') <> (numeric_value IS NOT NULL)
             OR (value ~ '^[1-5]-$'
                 AND numeric_value <> greatest(left(value, 1)::numeric - 0.25, 1))
             OR (value ~ '^[1-5]\\+$'
                 AND numeric_value <> least(left(value, 1)::numeric + 0.25, 5))
             OR (value ~ '^[1-5]$' AND numeric_value <> value::numeric)"""
    )
    assert wrong == 0
    physical_only = await owner_conn.fetchval(
        """SELECT count(*) FROM school.marks m JOIN school.lessons l ON l.id = m.lesson_id
           WHERE m.value IN ('зачёт', 'незачёт') AND l.subject_id <>
                 (SELECT id FROM school.subjects WHERE name = 'Физическая культура')"""
    )
    assert physical_only == 0
    described = await owner_conn.fetchval(
        "SELECT count(*) FROM school.marks WHERE work_title IS NULL OR work_title = ''"
    )
    assert described == 0


async def test_mark_weights_are_work_type_weights(owner_conn: asyncpg.Connection) -> None:
    stats = await owner_conn.fetchrow(
        """SELECT count(*) FILTER (WHERE m.weight <> w.weight) AS changed,
                  count(*) FILTER (WHERE m.weight <> w.weight AND m.comment IS DISTINCT FROM $1)
                      AS unexplained,
                  count(*) FILTER (WHERE NOT m.counts_in_average) AS not_counted,
                  count(*) FILTER (WHERE m.comment IS NOT NULL) AS comments,
                  count(*) AS total
           FROM school.marks m JOIN school.work_types w ON w.id = m.work_type_id""",
        WEIGHT_CHANGED_COMMENT,
    )
    assert 0 < stats["changed"] < 0.02 * stats["total"]
    assert stats["unexplained"] == 0
    assert 0 < stats["not_counted"] < 0.02 * stats["total"]
    assert stats["comments"] > stats["not_counted"]
    dictations = await owner_conn.fetch(
        """SELECT m.work_title FROM school.marks m JOIN school.work_types w ON w.id = m.work_type_id
           WHERE w.name = 'Диктант' GROUP BY 1"""
    )
    assert {row["work_title"] for row in dictations} == {
        "Диктант: орфография",
        "Диктант: грамматика",
    }


async def test_attendance(owner_conn: asyncpg.Connection, seeded: SeedSummary) -> None:
    student_lessons = await owner_conn.fetchval(
        """SELECT count(*) FROM school.lessons l JOIN school.students s ON s.class_id = l.class_id
           WHERE l.date <= $1 AND l.status <> 'cancelled'""",
        seeded.today,
    )
    codes = dict(await owner_conn.fetch("SELECT code, count(*) FROM school.attendance GROUP BY 1"))
    assert set(codes) == {"Н", "Б", "У", "П", "О", "ОП"}
    assert 0.025 < sum(codes.values()) / student_lessons < 0.06
    late = await owner_conn.fetchrow(
        """SELECT min(minutes_late) AS low, max(minutes_late) AS high,
                  count(comment) AS comments FROM school.attendance"""
    )
    assert late["low"] >= 1 and late["high"] <= 20 and late["comments"] > 0
    marked_absent = await owner_conn.fetchval(
        """SELECT count(*) FROM school.attendance a JOIN school.marks m
           ON m.student_id = a.student_id AND m.lesson_id = a.lesson_id
           WHERE a.code IN ('Н', 'Б', 'У', 'П')"""
    )
    assert marked_absent == 0


async def test_period_marks_for_finished_periods(
    owner_conn: asyncpg.Connection, seeded: SeedSummary
) -> None:
    periods = await owner_conn.fetch(
        """SELECT DISTINCT p.scheme, p.number, p.ends_on FROM school.final_marks f
           JOIN school.periods p ON p.id = f.period_id"""
    )
    assert [(p["scheme"], p["number"]) for p in periods] == [("quarters", 1)]
    assert all(p["ends_on"] < seeded.today for p in periods)
    assert (
        await owner_conn.fetchval("SELECT count(*) FROM school.final_marks WHERE kind <> 'period'")
        == 0
    )
    missing = await owner_conn.fetchval(
        """SELECT count(*) FROM school.students s JOIN school.classes c ON c.id = s.class_id
           JOIN (SELECT DISTINCT class_id, subject_id FROM school.lessons) cs
             ON cs.class_id = s.class_id
           JOIN school.subjects sub ON sub.id = cs.subject_id
           WHERE c.grade BETWEEN 2 AND 9 AND sub.short_name <> 'ОРКСЭ' AND NOT EXISTS (
               SELECT 1 FROM school.final_marks f WHERE f.student_id = s.id
               AND f.subject_id = cs.subject_id AND f.kind = 'period')"""
    )
    assert missing == 0
    rows = await owner_conn.fetch(
        """WITH sums AS (
             SELECT m.student_id, l.subject_id, p.id AS period_id,
                    sum(m.weight * m.numeric_value) AS weighted, sum(m.weight) AS weights
             FROM school.marks m
             JOIN school.lessons l ON l.id = m.lesson_id
             JOIN school.classes c ON c.id = l.class_id
             JOIN school.periods p ON p.school_id = c.school_id AND p.scheme = c.period_scheme
                                  AND m.date BETWEEN p.starts_on AND p.ends_on
             WHERE m.counts_in_average AND m.numeric_value IS NOT NULL AND m.weight > 0
             GROUP BY 1, 2, 3)
           SELECT f.value, f.numeric_value, s.weighted, s.weights
           FROM school.final_marks f
           LEFT JOIN sums s USING (student_id, subject_id, period_id)"""
    )
    for row in rows:
        if row["weights"] is None:
            assert row["value"] in ("н/а", "осв") and row["numeric_value"] is None
            continue
        average = row["weighted"] / row["weights"]
        expected = 5 if average >= 4.5 else 4 if average >= 3.5 else 3 if average >= 2.5 else 2
        assert row["value"] == str(expected), dict(row)


# -- the generator in memory: a mid-week today and a finished year -------------------------


def _one_school(
    today: date, grades: tuple[int, ...] | None = None
) -> tuple[SchoolPlan, JournalRows]:
    region = plan_region(1, 7, today)
    populate_registry(region)
    school = region.schools[0]
    if grades is not None:
        school = dataclasses.replace(
            school, classes=[c for c in school.classes if c.grade in grades]
        )
    rows = school_journal(
        school, JournalContext(region.calendar, YEAR_ID), IdCounters(), random.Random(1)
    )
    return school, rows


def _field(row: tuple[object, ...], column: str, table: str) -> object:
    return row[COLUMNS[table].index(column)]


def test_future_lessons_of_this_week_are_empty() -> None:
    wednesday = date(2026, 11, 25)
    _school, rows = _one_school(wednesday)
    future = {
        _field(row, "id", "lessons"): _field(row, "date", "lessons")
        for row in rows.lessons
        if str(_field(row, "date", "lessons")) > wednesday.isoformat()
    }
    assert set(future.values()) == {date(2026, 11, 26), date(2026, 11, 27)}
    for table in ("lesson_topics", "homework", "marks", "attendance"):
        lesson_ids = {_field(row, "lesson_id", table) for row in rows.tables()[table]}
        assert lesson_ids and not lesson_ids & set(future), table
    latest = max(int(str(_field(row, "updated_at", "marks"))) for row in rows.marks)
    assert latest <= at(wednesday, time(20, 0))


def test_a_finished_year_has_year_and_exam_marks() -> None:
    after_exams = date(2027, 6, 28)
    school, rows = _one_school(after_exams, grades=(9, 11))
    by_kind: dict[object, set[object]] = {}
    periods: set[object] = set()
    for row in rows.final_marks:
        by_kind.setdefault(_field(row, "kind", "final_marks"), set()).add(
            _field(row, "student_id", "final_marks")
        )
        periods.add(_field(row, "period_id", "final_marks"))
    students = {s for plan in school.classes for s in plan.student_ids}
    assert by_kind["year"] == students
    assert by_kind["exam"] == students
    assert len(periods - {None}) == 4 + 2  # quarters of grade 9, half-years of grade 11

"""The generated journal: lessons, topics, homework, marks, attendance, period marks.

Most tests read the session's scale-1 data set; the mid-week and year-end cases run the
generator in memory for one school.
"""

from __future__ import annotations

import dataclasses
import random
from datetime import date, datetime, time, timedelta
from decimal import Decimal

import asyncpg

from fixtures.generate import YEAR_ID, SeedSummary, plan_region, populate_registry
from fixtures.generator_calendar import TZ, at, build_calendar
from fixtures.generator_journal import JournalContext, JournalRows, school_journal
from fixtures.generator_load import COLUMNS
from fixtures.generator_model import IdCounters, SchoolPlan
from fixtures.generator_texts import WEIGHT_CHANGED_COMMENT


def _evening(day: date) -> datetime:
    return datetime.combine(day, time(20, 0), tzinfo=TZ)


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
        on_cancelled = await owner_conn.fetchval(
            f"""SELECT count(*) FROM school.{table} t JOIN school.lessons l ON l.id = t.lesson_id
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
    disordered = await owner_conn.fetchval(
        "SELECT count(*) FROM school.marks WHERE created_at > updated_at OR date > $1",
        seeded.today,
    )
    assert disordered == 0


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
    final = await owner_conn.fetchval(
        "SELECT count(*) FROM school.final_marks WHERE kind <> 'period'"
    )
    assert final == 0  # no year or exam marks before the year ends
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

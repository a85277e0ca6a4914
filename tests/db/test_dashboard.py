"""School dashboard, journal completeness: figures against counts computed from the tables.

The expected values come straight from schema `school` (not the diary_api views), lesson
by lesson in Python: held = not cancelled and not after today; per (teacher, class,
subject) of whoever actually taught (the replacement for a replaced lesson).
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from tests.support.dashboard_support import admin_school_id, ask, dashboard_query
from tests.support.environment import TODAY, GraphQL
from tests.support.planted import error_codes

FIGURES = """lessonsHeld lessonsWithTopic lessonsWithAttendance lessonsWithHomework
             lessonsWithMarks pastLessonsEmpty lastEntryAt"""
JOURNAL = f"""journal(sortBy: $sortBy, direction: $direction) {{
  rows {{ teacher {{ id name }} schoolClass {{ id name }} subject {{ id name }} {FIGURES} }}
  totals {{ rows {FIGURES} }}
}}"""
QUERY = dashboard_query(JOURNAL).replace(
    "$to: Date)",
    "$to: Date, $sortBy: JournalSortField! = PAST_LESSONS_EMPTY, "
    "$direction: SortDirection! = DESC)",
)
WINDOW = (date(2026, 11, 2), date(2026, 11, 29))  # four weeks up to the data set's today


@dataclass(slots=True)
class Group:
    held: int = 0
    topic: int = 0
    attendance: int = 0
    homework: int = 0
    marks: int = 0
    past_empty: int = 0
    entries: list[datetime] = field(default_factory=list)

    def figures(self) -> dict[str, Any]:
        last = max(self.entries, default=None)
        return {
            "lessonsHeld": self.held,
            "lessonsWithTopic": self.topic,
            "lessonsWithAttendance": self.attendance,
            "lessonsWithHomework": self.homework,
            "lessonsWithMarks": self.marks,
            "pastLessonsEmpty": self.past_empty,
            "lastEntryAt": None if last is None else last.isoformat(),
        }


async def _entries(conn: asyncpg.Connection, table: str, ids: list[int]) -> dict[int, list[Any]]:
    rows = await conn.fetch(
        f"SELECT lesson_id, updated_at FROM school.{table} WHERE lesson_id = ANY($1::bigint[])",
        ids,
    )
    found: dict[int, list[Any]] = defaultdict(list)
    for row in rows:
        found[row["lesson_id"]].append(row["updated_at"])
    return found


async def expected_journal(
    conn: asyncpg.Connection, school_id: int, date_from: date, date_to: date
) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Figures per (teacher id, class id, subject id), computed lesson by lesson."""
    lessons = await conn.fetch(
        """SELECT l.id, l.date, l.class_id,
                  coalesce(l.replacement_teacher_id, l.teacher_id) AS teacher_id,
                  coalesce(l.replacement_subject_id, l.subject_id) AS subject_id
           FROM school.lessons l JOIN school.classes c ON c.id = l.class_id
           WHERE c.school_id = $1 AND l.date BETWEEN $2 AND $3 AND l.date <= $4
             AND l.status <> 'cancelled'""",
        school_id,
        date_from,
        date_to,
        TODAY,
    )
    ids = [row["id"] for row in lessons]
    topics = {
        row["lesson_id"]: row
        for row in await conn.fetch(
            "SELECT lesson_id, topic, updated_at FROM school.lesson_topics "
            "WHERE lesson_id = ANY($1::bigint[]) AND btrim(topic) <> ''",
            ids,
        )
    }
    attendance = await _entries(conn, "attendance", ids)
    homework = await _entries(conn, "homework", ids)
    marks = await _entries(conn, "marks", ids)
    groups: dict[tuple[str, str, str], Group] = defaultdict(Group)
    for lesson in lessons:
        lesson_id = lesson["id"]
        key = (str(lesson["teacher_id"]), str(lesson["class_id"]), str(lesson["subject_id"]))
        group = groups[key]
        group.held += 1
        group.topic += lesson_id in topics
        group.attendance += lesson_id in attendance
        group.homework += lesson_id in homework
        group.marks += lesson_id in marks
        group.past_empty += lesson["date"] < TODAY and not (
            lesson_id in topics or lesson_id in attendance or lesson_id in marks
        )
        if lesson_id in topics:
            group.entries.append(topics[lesson_id]["updated_at"])
        for found in (attendance, homework, marks):
            group.entries.extend(found.get(lesson_id, []))
    return {key: group.figures() for key, group in groups.items()}


def _key(row: dict[str, Any]) -> tuple[str, str, str]:
    return (row["teacher"]["id"], row["schoolClass"]["id"], row["subject"]["id"])


def _figures(row: dict[str, Any]) -> dict[str, Any]:
    figures = {name: row[name] for name in FIGURES.split()}
    if figures["lastEntryAt"] is not None:
        figures["lastEntryAt"] = datetime.fromisoformat(figures["lastEntryAt"]).isoformat()
    return figures


async def journal(gql: GraphQL, school_id: int, **variables: Any) -> dict[str, Any]:
    payload = await ask(gql, QUERY, school_id, **variables)
    assert "errors" not in payload, payload
    result: dict[str, Any] = payload["data"]["schoolDashboard"]
    return result


async def test_completeness_matches_the_tables(
    gql: GraphQL, owner_conn: asyncpg.Connection
) -> None:
    school_id = await admin_school_id(owner_conn)
    dashboard = await journal(
        gql, school_id, date_from=WINDOW[0].isoformat(), date_to=WINDOW[1].isoformat()
    )
    assert (dashboard["from"], dashboard["to"]) == (WINDOW[0].isoformat(), WINDOW[1].isoformat())
    assert dashboard["school"]["id"] == str(school_id)
    rows = dashboard["journal"]["rows"]
    expected = await expected_journal(owner_conn, school_id, *WINDOW)
    assert len(expected) > 20  # many teachers, classes and subjects
    assert {_key(row): _figures(row) for row in rows} == expected
    assert len(rows) == len(expected)  # one row per group
    # The data set has gaps: some topics, attendance and marks are missing.
    totals = dashboard["journal"]["totals"]
    assert totals["lessonsWithTopic"] < totals["lessonsHeld"]
    assert totals["lessonsWithAttendance"] < totals["lessonsHeld"]
    assert 0 < totals["lessonsWithMarks"] < totals["lessonsHeld"]
    summed = {
        name: sum(figures[name] for figures in expected.values())
        for name in FIGURES.split()
        if name != "lastEntryAt"
    }
    assert {name: totals[name] for name in summed} == summed
    assert totals["rows"] == len(expected)
    latest = max(figures["lastEntryAt"] for figures in expected.values() if figures["lastEntryAt"])
    assert datetime.fromisoformat(totals["lastEntryAt"]).isoformat() == latest


async def test_an_emptied_lesson_counts_as_past_and_empty(
    gql: GraphQL, owner_conn: asyncpg.Connection
) -> None:
    """A lesson whose topic, attendance and marks are removed shows up in its group."""
    school_id = await admin_school_id(owner_conn)
    day = TODAY - timedelta(days=3)
    lesson = await owner_conn.fetchrow(
        """SELECT l.id, coalesce(l.replacement_teacher_id, l.teacher_id) AS teacher_id,
                  l.class_id, coalesce(l.replacement_subject_id, l.subject_id) AS subject_id
           FROM school.lessons l JOIN school.classes c ON c.id = l.class_id
           JOIN school.lesson_topics t ON t.lesson_id = l.id
           WHERE c.school_id = $1 AND l.date = $2 AND l.status = 'held'
             AND EXISTS (SELECT 1 FROM school.marks m WHERE m.lesson_id = l.id)
           ORDER BY l.id LIMIT 1""",
        school_id,
        day,
    )
    assert lesson is not None
    key = (str(lesson["teacher_id"]), str(lesson["class_id"]), str(lesson["subject_id"]))
    variables = {"date_from": day.isoformat(), "date_to": day.isoformat()}
    before = {
        _key(row): row for row in (await journal(gql, school_id, **variables))["journal"]["rows"]
    }
    async with owner_conn.transaction():
        saved = {
            table: await owner_conn.fetch(
                f"DELETE FROM school.{table} WHERE lesson_id = $1 RETURNING *", lesson["id"]
            )
            for table in ("lesson_topics", "attendance", "marks")
        }
    try:
        after_rows = (await journal(gql, school_id, **variables))["journal"]["rows"]
        after = {_key(row): row for row in after_rows}
        assert after[key]["pastLessonsEmpty"] == before[key]["pastLessonsEmpty"] + 1
        assert after[key]["lessonsWithTopic"] == before[key]["lessonsWithTopic"] - 1
        assert after[key]["lessonsWithMarks"] == before[key]["lessonsWithMarks"] - 1
        assert after[key]["lessonsHeld"] == before[key]["lessonsHeld"]
        # Sorted by PAST_LESSONS_EMPTY, descending, by default: the group comes first.
        assert after_rows[0]["pastLessonsEmpty"] >= after[key]["pastLessonsEmpty"] >= 1
        expected = await expected_journal(owner_conn, school_id, day, day)
        assert {key: _figures(row) for key, row in after.items()} == expected
    finally:
        async with owner_conn.transaction():
            for table, rows in saved.items():
                if rows:
                    columns = list(rows[0].keys())
                    await owner_conn.copy_records_to_table(
                        table,
                        schema_name="school",
                        columns=columns,
                        records=[tuple(row.values()) for row in rows],
                    )
    restored = {
        _key(row): row for row in (await journal(gql, school_id, **variables))["journal"]["rows"]
    }
    assert restored == before


Json = dict[str, Any]
SORT_VALUES: dict[str, Callable[[Json], Any]] = {
    "TEACHER": lambda row: (row["teacher"]["name"], int(row["teacher"]["id"])),
    "CLASS": lambda row: (
        int(row["schoolClass"]["name"][:-1]),
        row["schoolClass"]["name"][-1],
    ),
    "SUBJECT": lambda row: (row["subject"]["name"], int(row["subject"]["id"])),
    "LESSONS_HELD": lambda row: row["lessonsHeld"],
    "LESSONS_WITH_TOPIC": lambda row: row["lessonsWithTopic"],
    "LESSONS_WITH_ATTENDANCE": lambda row: row["lessonsWithAttendance"],
    "LESSONS_WITH_HOMEWORK": lambda row: row["lessonsWithHomework"],
    "LESSONS_WITH_MARKS": lambda row: row["lessonsWithMarks"],
    "PAST_LESSONS_EMPTY": lambda row: row["pastLessonsEmpty"],
    "LAST_ENTRY_AT": lambda row: (
        row["lastEntryAt"] is not None,
        datetime.fromisoformat(row["lastEntryAt"]) if row["lastEntryAt"] else datetime.min,
    ),
}


def _tie(row: dict[str, Any]) -> tuple[Any, ...]:
    return (
        row["teacher"]["name"],
        int(row["teacher"]["id"]),
        int(row["schoolClass"]["name"][:-1]),
        row["schoolClass"]["name"][-1],
        row["subject"]["name"],
        int(row["subject"]["id"]),
    )


@pytest.mark.parametrize("sort_by", sorted(SORT_VALUES))
async def test_sorting(gql: GraphQL, owner_conn: asyncpg.Connection, sort_by: str) -> None:
    school_id = await admin_school_id(owner_conn)
    window = {"date_from": WINDOW[0].isoformat(), "date_to": WINDOW[1].isoformat()}
    shown: dict[str, list[dict[str, Any]]] = {}
    for direction in ("ASC", "DESC"):
        dashboard = await journal(gql, school_id, sortBy=sort_by, direction=direction, **window)
        shown[direction] = dashboard["journal"]["rows"]
    value = SORT_VALUES[sort_by]
    for direction, rows in shown.items():
        # Ordered by the key in the direction; ties by teacher, class, subject ascending.
        keys = [value(row) for row in rows]
        assert keys == sorted(keys, reverse=direction == "DESC")
        for before, after in itertools.pairwise(rows):
            if value(before) == value(after):
                assert _tie(before) < _tie(after)
    assert {_key(row) for row in shown["ASC"]} == {_key(row) for row in shown["DESC"]}
    if sort_by in ("LESSONS_HELD", "LESSONS_WITH_MARKS", "TEACHER"):
        assert [value(row) for row in shown["ASC"]] != [value(row) for row in shown["DESC"]]


async def test_default_window_is_the_current_week(
    gql: GraphQL, owner_conn: asyncpg.Connection
) -> None:
    school_id = await admin_school_id(owner_conn)
    monday = TODAY - timedelta(days=TODAY.weekday())
    payload = await ask(gql, dashboard_query(""), school_id)
    dashboard = payload["data"]["schoolDashboard"]
    assert (dashboard["from"], dashboard["to"]) == (
        monday.isoformat(),
        (monday + timedelta(days=6)).isoformat(),
    )
    assert dashboard["today"] == TODAY.isoformat()
    one_bound = await ask(gql, dashboard_query(""), school_id, date_from="2026-10-01")
    assert one_bound["data"]["schoolDashboard"]["to"] == "2026-10-07"
    whole_year = await ask(
        gql, dashboard_query(""), school_id, date_from="2026-09-01", date_to="2027-08-31"
    )
    assert "errors" not in whole_year


@pytest.mark.parametrize(
    ("date_from", "date_to", "code"),
    [
        ("2026-11-20", "2026-11-10", "DATE_RANGE_REVERSED"),
        ("2026-01-01", "2027-01-02", "DATE_RANGE_TOO_LONG"),
        ("1999-12-31", "2000-01-02", "DATE_OUT_OF_RANGE"),
    ],
)
async def test_bad_windows(
    gql: GraphQL, owner_conn: asyncpg.Connection, date_from: str, date_to: str, code: str
) -> None:
    school_id = await admin_school_id(owner_conn)
    payload = await ask(
        gql,
        dashboard_query(JOURNAL.replace("(sortBy: $sortBy, direction: $direction)", "")),
        school_id,
        date_from=date_from,
        date_to=date_to,
    )
    assert error_codes(payload) == [code]
    assert payload["data"] is None

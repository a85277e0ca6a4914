"""The diary's content, checked against the generated journal read directly from `school.*`.

Expected values are computed with SQL over the school tables through the owner's
connection, independently of the `diary_api` views and of the gateway's code.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from fixtures.demo import demo_account
from gateway.core.settings import Settings
from tests.support.environment import TODAY, GraphQL
from tests.support.journal import (
    expected_attendance,
    expected_homework,
    expected_lessons,
    expected_marks,
    family_student_ids,
    flat_attachments,
    number,
    stamp,
    with_stamps,
)
from tests.support.planted import error_codes, planted_parent, post_graphql

WEEK_FROM = date(2026, 11, 23)
WEEK_TO = date(2026, 11, 29)
# Two school weeks up to the end of the data (lessons exist until the end of today's week).
RANGE_FROM = date(2026, 11, 16)
RANGE_TO = date(2026, 11, 29)

Json = dict[str, Any]

LESSON_FIELDS = """
  id date number startsAt endsAt room status statusComment topic updatedAt
  subject { id name } teacher { id name }
  replacement { subject { id name } teacher { id name } }
"""
MARK_FIELDS = """
  id value numericValue weight workTitle comment date countsInAverage createdAt updatedAt
  workType { id name shortName weight } subject { id name }
  lesson { id date number topic }
"""
HOMEWORK_FIELDS = (
    "id text assignedOn dueOn lessonId updatedAt subject { id name } attachments { title url }"
)
ATTENDANCE_FIELDS = (
    "id date lessonId lessonNumber code kind minutesLate comment subject { id name }"
)

DIARY_QUERY = f"""
query Diary($id: ID!, $from: Date, $to: Date) {{
  student(id: $id) {{
    id
    diary(from: $from, to: $to) {{
      from to lastUpdatedAt
      days {{ date lessons {{ id }} homeworkDue {{ id }} }}
      lessons {{
        {LESSON_FIELDS}
        homework {{ id }}
        marks {{ id }}
        attendance {{ id code }}
      }}
      homework {{ {HOMEWORK_FIELDS} }}
      marks {{ {MARK_FIELDS} }}
      attendance {{ {ATTENDANCE_FIELDS} }}
    }}
  }}
}}
"""


async def diary_of(gql: GraphQL, account: str, student_id: int, **window: str) -> Json:
    payload = await gql(DIARY_QUERY, {"id": str(student_id), **window}, account=account)
    assert "errors" not in payload, payload
    diary: Json = payload["data"]["student"]["diary"]
    return diary


# --- who sees which children ------------------------------------------------------------


async def test_parent_with_two_children_in_one_school(
    gql: GraphQL, owner_conn: asyncpg.Connection
) -> None:
    payload = await gql(
        "{ myChildren { id lastName firstName patronymic fullName "
        "school { id name shortName municipality } schoolClass { id name grade letter } } }",
        account="parent-one-school",
    )
    assert "errors" not in payload, payload
    children = payload["data"]["myChildren"]
    expected_ids = await family_student_ids(owner_conn, "parent-one-school")
    assert sorted(int(child["id"]) for child in children) == expected_ids
    assert [(c["fullName"], c["schoolClass"]["name"]) for c in children] == [
        ("Смирнов Пётр Алексеевич", "4А"),
        ("Смирнова Анна Алексеевна", "7А"),
    ]
    rows = await owner_conn.fetch(
        """SELECT st.id, sc.id AS school_id, sc.name, sc.short_name, m.name AS municipality,
                  c.id AS class_id, c.grade, c.letter
           FROM school.students st JOIN school.schools sc ON sc.id = st.school_id
           JOIN school.municipalities m ON m.id = sc.municipality_id
           JOIN school.classes c ON c.id = st.class_id WHERE st.id = ANY($1::int[])""",
        expected_ids,
    )
    by_id = {row["id"]: row for row in rows}
    for child in children:
        row = by_id[int(child["id"])]
        assert child["school"] == {
            "id": str(row["school_id"]),
            "name": row["name"],
            "shortName": row["short_name"],
            "municipality": row["municipality"],
        }
        assert child["schoolClass"] == {
            "id": str(row["class_id"]),
            "name": f"{row['grade']}{row['letter']}",
            "grade": row["grade"],
            "letter": row["letter"],
        }


async def test_merged_parent_sees_children_of_both_schools(
    gql: GraphQL, owner_conn: asyncpg.Connection
) -> None:
    payload = await gql(
        "{ myChildren { id fullName school { id } schoolClass { name } "
        "diary { from to lessons { id } } } }",
        account="parent-two-schools",
    )
    assert "errors" not in payload, payload
    children = payload["data"]["myChildren"]
    expected_ids = await family_student_ids(owner_conn, "parent-two-schools")
    assert sorted(int(child["id"]) for child in children) == expected_ids
    assert [(c["fullName"], c["schoolClass"]["name"]) for c in children] == [
        ("Кузнецов Иван Андреевич", "5Б"),
        ("Кузнецова Мария Андреевна", "10А"),
    ]
    # Two registry records in two schools, one SNILS: the account merges them.
    registries = await owner_conn.fetch(
        "SELECT DISTINCT school_id FROM school.parents WHERE snils = $1",
        demo_account("parent-two-schools").snils,
    )
    assert len(registries) == 2
    assert len({child["school"]["id"] for child in children}) == 2
    schools = await owner_conn.fetch("SELECT id FROM school.schools ORDER BY id LIMIT 2")
    assert {child["school"]["id"] for child in children} == {str(r["id"]) for r in schools}
    for child in children:
        assert child["diary"]["lessons"], "both children have lessons this week"


@pytest.mark.parametrize(
    ("account", "full_name"),
    [("student-young", "Смирнов Пётр Алексеевич"), ("student-older", "Кузнецова Мария Андреевна")],
)
async def test_student_sees_only_themself(gql: GraphQL, account: str, full_name: str) -> None:
    payload = await gql("{ viewer { role } myChildren { fullName } }", account=account)
    assert payload["data"] == {
        "viewer": {"role": "STUDENT"},
        "myChildren": [{"fullName": full_name}],
    }


async def test_unregistered_parent_has_no_children(gql: GraphQL) -> None:
    payload = await gql(
        "{ viewer { role displayName } myChildren { id } }", account="parent-unregistered"
    )
    assert payload["data"] == {
        "viewer": {"role": "PARENT", "displayName": "Волкова Ольга Игоревна"},
        "myChildren": [],
    }


# --- the diary ------------------------------------------------------------------------------


async def test_default_diary_is_the_current_week(gql: GraphQL) -> None:
    payload = await gql(
        "{ myChildren { diary { from to days { date } } } }", account="parent-one-school"
    )
    for child in payload["data"]["myChildren"]:
        diary = child["diary"]
        assert (diary["from"], diary["to"]) == (WEEK_FROM.isoformat(), WEEK_TO.isoformat())
        assert [day["date"] for day in diary["days"]] == [
            (WEEK_FROM + timedelta(days=n)).isoformat() for n in range(7)
        ]
    assert TODAY.weekday() == 4 and WEEK_FROM <= TODAY <= WEEK_TO


@pytest.mark.parametrize("account", ["parent-one-school", "parent-two-schools"])
async def test_schedule_topics_and_lesson_parts_match_the_journal(
    gql: GraphQL, owner_conn: asyncpg.Connection, account: str
) -> None:
    for student_id in await family_student_ids(owner_conn, account):
        diary = await diary_of(
            gql, account, student_id, **{"from": RANGE_FROM.isoformat(), "to": RANGE_TO.isoformat()}
        )
        expected = await expected_lessons(owner_conn, student_id, RANGE_FROM, RANGE_TO)
        assert expected, "the generated journal has lessons in these two weeks"
        shown = [
            {k: v for k, v in lesson.items() if k not in ("homework", "marks", "attendance")}
            for lesson in diary["lessons"]
        ]
        assert with_stamps(shown, "updatedAt") == expected
        assert sum(1 for lesson in expected if lesson["topic"]) > 0
        assert all(lesson["startsAt"] for lesson in expected)
        # Lessons carry this student's marks, the homework given at them and attendance.
        marks = await expected_marks(owner_conn, student_id, RANGE_FROM, RANGE_TO)
        given = await expected_homework(
            owner_conn, student_id, "l.date BETWEEN $2 AND $3", RANGE_FROM, RANGE_TO
        )
        absences = await expected_attendance(owner_conn, student_id, RANGE_FROM, RANGE_TO)
        for lesson in diary["lessons"]:
            assert [m["id"] for m in lesson["marks"]] == [
                m["id"] for m in marks if m["lesson"]["id"] == lesson["id"]
            ]
            assert sorted(h["id"] for h in lesson["homework"]) == sorted(
                h["id"] for h in given if h["lessonId"] == lesson["id"]
            )
            record = [a for a in absences if a["lessonId"] == lesson["id"]]
            assert lesson["attendance"] == (
                {"id": record[0]["id"], "code": record[0]["code"]} if record else None
            )
        # Days group the lessons by date.
        for day in diary["days"]:
            assert [lesson["id"] for lesson in day["lessons"]] == [
                lesson["id"] for lesson in expected if lesson["date"] == day["date"]
            ]


async def test_marks_with_work_type_weight_and_what_for(
    gql: GraphQL, owner_conn: asyncpg.Connection
) -> None:
    total = 0
    for student_id in await family_student_ids(owner_conn, "parent-one-school"):
        diary = await diary_of(
            gql, "parent-one-school", student_id,
            **{"from": RANGE_FROM.isoformat(), "to": RANGE_TO.isoformat()},
        )  # fmt: skip
        expected = await expected_marks(owner_conn, student_id, RANGE_FROM, RANGE_TO)
        assert with_stamps(diary["marks"], "createdAt", "updatedAt") == expected
        total += len(expected)
    assert total > 0


async def test_homework_due_in_range_with_attachments(
    gql: GraphQL, owner_conn: asyncpg.Connection
) -> None:
    attachments = 0
    for student_id in await family_student_ids(owner_conn, "parent-two-schools"):
        diary = await diary_of(
            gql, "parent-two-schools", student_id,
            **{"from": RANGE_FROM.isoformat(), "to": RANGE_TO.isoformat()},
        )  # fmt: skip
        expected = await expected_homework(
            owner_conn, student_id, "h.due_on BETWEEN $2 AND $3", RANGE_FROM, RANGE_TO
        )
        assert expected
        assert flat_attachments(with_stamps(diary["homework"], "updatedAt")) == expected
        attachments += sum(len(item["attachments"]) for item in expected)
        for day in diary["days"]:
            assert [h["id"] for h in day["homeworkDue"]] == [
                h["id"] for h in expected if h["dueOn"] == day["date"]
            ]
    assert attachments > 0, "some homework in the data set has links attached"


async def test_attendance_codes_and_minutes_late(
    gql: GraphQL,
    owner_conn: asyncpg.Connection,
    client: httpx.AsyncClient,
    pool: asyncpg.Pool,
    settings: Settings,
) -> None:
    # Students of a demo family may happen to have a clean record; plant a parent for
    # students who were late and absent in the last month, so every code path is seen.
    month_from = RANGE_TO - timedelta(days=30)
    rows = await owner_conn.fetch(
        """SELECT DISTINCT ON (code IN ('О', 'ОП')) student_id FROM school.attendance
           WHERE date BETWEEN $1 AND $2 ORDER BY code IN ('О', 'ОП'), student_id""",
        month_from,
        RANGE_TO,
    )
    assert len(rows) == 2, "the data set has both absences and lateness"
    student_ids = sorted({row["student_id"] for row in rows})
    kinds: set[str] = set()
    async with planted_parent(owner_conn, pool, settings, student_ids, tag=1) as token:
        for student_id in student_ids:
            payload = await post_graphql(
                client,
                token,
                DIARY_QUERY,
                {"id": str(student_id), "from": month_from.isoformat(), "to": RANGE_TO.isoformat()},
            )
            assert "errors" not in payload, payload
            shown = payload["data"]["student"]["diary"]["attendance"]
            assert shown == await expected_attendance(owner_conn, student_id, month_from, RANGE_TO)
            kinds |= {item["kind"] for item in shown}
            assert all(
                (item["kind"] == "LATE") == (item["minutesLate"] is not None) for item in shown
            )
    assert "LATE" in kinds and kinds - {"LATE"}


async def test_cancelled_and_replaced_lessons(
    owner_conn: asyncpg.Connection,
    client: httpx.AsyncClient,
    pool: asyncpg.Pool,
    settings: Settings,
) -> None:
    lessons = await owner_conn.fetch(
        """SELECT DISTINCT ON (l.status) l.id, l.date, l.status,
                  (SELECT min(st.id) FROM school.students st WHERE st.class_id = l.class_id)
                      AS student_id
           FROM school.lessons l
           WHERE l.status IN ('cancelled', 'replaced')
             AND EXISTS (SELECT 1 FROM school.students st WHERE st.class_id = l.class_id)
           ORDER BY l.status, l.date DESC, l.id"""
    )
    assert {row["status"] for row in lessons} == {"cancelled", "replaced"}
    student_ids = sorted({row["student_id"] for row in lessons})
    async with planted_parent(owner_conn, pool, settings, student_ids, tag=2) as token:
        for row in lessons:
            payload = await post_graphql(
                client,
                token,
                DIARY_QUERY,
                {
                    "id": str(row["student_id"]),
                    "from": row["date"].isoformat(),
                    "to": row["date"].isoformat(),
                },
            )
            assert "errors" not in payload, payload
            shown = {
                lesson["id"]: lesson for lesson in payload["data"]["student"]["diary"]["lessons"]
            }
            lesson = shown[str(row["id"])]
            expected = await expected_lessons(
                owner_conn, row["student_id"], row["date"], row["date"]
            )
            (expected_lesson,) = [item for item in expected if item["id"] == str(row["id"])]
            assert lesson["status"] == row["status"].upper()
            assert lesson["replacement"] == expected_lesson["replacement"]
            assert lesson["statusComment"] == expected_lesson["statusComment"]
            if row["status"] == "replaced":
                replacement = lesson["replacement"]
                assert replacement is not None
                assert (replacement["subject"], replacement["teacher"]) != (
                    lesson["subject"],
                    lesson["teacher"],
                )
            else:
                assert lesson["replacement"] is None


async def test_periods_and_final_marks(gql: GraphQL, owner_conn: asyncpg.Connection) -> None:
    payload = await gql(
        """{ myChildren { id schoolClass { grade }
              periods { id number title scheme startsOn endsOn yearTitle isCurrent }
              finalMarks { id kind value numericValue yearTitle subject { id name }
                           period { id title } }
              periodMarks: finalMarks(kind: PERIOD) { id } } }""",
        account="parent-two-schools",
    )
    assert "errors" not in payload, payload
    for child in payload["data"]["myChildren"]:
        student_id = int(child["id"])
        periods = await owner_conn.fetch(
            """SELECT p.*, y.title AS year_title FROM school.students st
               JOIN school.classes c ON c.id = st.class_id
               JOIN school.periods p ON p.school_id = st.school_id AND p.year_id = c.year_id
                                    AND p.scheme = c.period_scheme
               JOIN school.academic_years y ON y.id = p.year_id
               WHERE st.id = $1 ORDER BY p.number""",
            student_id,
        )
        assert child["periods"] == [
            {
                "id": str(p["id"]),
                "number": p["number"],
                "title": p["title"],
                "scheme": p["scheme"].upper(),
                "startsOn": p["starts_on"].isoformat(),
                "endsOn": p["ends_on"].isoformat(),
                "yearTitle": p["year_title"],
                "isCurrent": p["starts_on"] <= TODAY <= p["ends_on"],
            }
            for p in periods
        ]
        expected_scheme = "HALF_YEARS" if child["schoolClass"]["grade"] >= 10 else "QUARTERS"
        assert {p["scheme"] for p in child["periods"]} == {expected_scheme}
        assert sum(p["isCurrent"] for p in child["periods"]) == 1
        finals = await owner_conn.fetch(
            """SELECT f.*, s.name AS subject_name, y.title AS year_title, p.title AS period_title
               FROM school.final_marks f JOIN school.subjects s ON s.id = f.subject_id
               JOIN school.academic_years y ON y.id = f.year_id
               LEFT JOIN school.periods p ON p.id = f.period_id
               WHERE f.student_id = $1""",
            student_id,
        )
        expected = {
            str(f["id"]): {
                "id": str(f["id"]),
                "kind": f["kind"].upper(),
                "value": f["value"],
                "numericValue": number(f["numeric_value"]),
                "yearTitle": f["year_title"],
                "subject": {"id": str(f["subject_id"]), "name": f["subject_name"]},
                "period": None
                if f["period_id"] is None
                else {"id": str(f["period_id"]), "title": f["period_title"]},
            }
            for f in finals
        }
        assert {mark["id"]: mark for mark in child["finalMarks"]} == expected
        assert [m["id"] for m in child["periodMarks"]] == [
            m["id"] for m in child["finalMarks"] if m["kind"] == "PERIOD"
        ]
    # The first period of both schemes has ended by late November only for quarters.
    quarters_child = payload["data"]["myChildren"][0]
    assert any(m["kind"] == "PERIOD" for m in quarters_child["finalMarks"])


async def test_last_updated_at(gql: GraphQL, owner_conn: asyncpg.Connection) -> None:
    payload = await gql(
        "{ myChildren { id lastUpdatedAt diary { lastUpdatedAt } } }", account="parent-one-school"
    )
    assert "errors" not in payload, payload
    for child in payload["data"]["myChildren"]:
        student_id = int(child["id"])
        expected = await owner_conn.fetchval(
            """
            SELECT greatest(
                (SELECT max(updated_at) FROM school.marks WHERE student_id = st.id),
                (SELECT max(updated_at) FROM school.attendance WHERE student_id = st.id),
                (SELECT max(updated_at) FROM school.final_marks WHERE student_id = st.id),
                (SELECT max(l.updated_at) FROM school.lessons l WHERE l.class_id = st.class_id),
                (SELECT max(t.updated_at) FROM school.lesson_topics t
                   JOIN school.lessons l ON l.id = t.lesson_id WHERE l.class_id = st.class_id),
                (SELECT max(updated_at) FROM school.homework WHERE class_id = st.class_id))
            FROM school.students st WHERE st.id = $1
            """,
            student_id,
        )
        assert expected is not None
        assert stamp(child["lastUpdatedAt"]) == expected
        week = await owner_conn.fetchval(
            """
            SELECT greatest(
                (SELECT max(updated_at) FROM school.marks
                  WHERE student_id = st.id AND date BETWEEN $2 AND $3),
                (SELECT max(updated_at) FROM school.attendance
                  WHERE student_id = st.id AND date BETWEEN $2 AND $3),
                (SELECT max(greatest(l.updated_at, t.updated_at)) FROM school.lessons l
                   LEFT JOIN school.lesson_topics t ON t.lesson_id = l.id
                  WHERE l.class_id = st.class_id AND l.date BETWEEN $2 AND $3),
                (SELECT max(h.updated_at) FROM school.homework h
                   JOIN school.lessons l ON l.id = h.lesson_id
                  WHERE h.class_id = st.class_id
                    AND (h.due_on BETWEEN $2 AND $3 OR l.date BETWEEN $2 AND $3)))
            FROM school.students st WHERE st.id = $1
            """,
            student_id,
            WEEK_FROM,
            WEEK_TO,
        )
        assert stamp(child["diary"]["lastUpdatedAt"]) == week
        assert week <= expected


async def test_marks_list_is_bounded_and_filtered(
    gql: GraphQL, owner_conn: asyncpg.Connection
) -> None:
    (student_id, *_) = await family_student_ids(owner_conn, "parent-one-school")
    subject_id = await owner_conn.fetchval(
        """SELECT l.subject_id FROM school.marks m JOIN school.lessons l ON l.id = m.lesson_id
           WHERE m.student_id = $1 GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1""",
        student_id,
    )
    payload = await gql(
        """query($id: ID!, $subject: ID!) { student(id: $id) {
             latest: marks(first: 5) { id date }
             bySubject: marks(subjectId: $subject, from: "2026-09-01", to: "2026-11-29", first: 500)
               { id subject { id } }
           } }""",
        {"id": str(student_id), "subject": str(subject_id)},
        account="parent-one-school",
    )
    assert "errors" not in payload, payload
    student = payload["data"]["student"]
    newest = await owner_conn.fetch(
        "SELECT id FROM school.marks WHERE student_id = $1 ORDER BY date DESC, id DESC LIMIT 5",
        student_id,
    )
    assert [m["id"] for m in student["latest"]] == [str(r["id"]) for r in newest]
    of_subject = await owner_conn.fetch(
        """SELECT m.id FROM school.marks m JOIN school.lessons l ON l.id = m.lesson_id
           WHERE m.student_id = $1 AND l.subject_id = $2
             AND m.date BETWEEN '2026-09-01' AND '2026-11-29'
           ORDER BY m.date DESC, m.id DESC LIMIT 500""",
        student_id,
        subject_id,
    )
    assert [m["id"] for m in student["bySubject"]] == [str(r["id"]) for r in of_subject]
    assert {m["subject"]["id"] for m in student["bySubject"]} == {str(subject_id)}


@pytest.mark.parametrize(
    ("arguments", "code", "fragment"),
    [
        ('from: "2026-10-01", to: "2026-11-29"', "DATE_RANGE_TOO_LONG", "31"),
        ('from: "2026-11-29", to: "2026-11-23"', "DATE_RANGE_REVERSED", "from"),
        ('from: "1999-12-31", to: "2000-01-02"', "DATE_OUT_OF_RANGE", "2000-01-01"),
        ('from: "2101-01-01"', "DATE_OUT_OF_RANGE", "2100-12-31"),
    ],
)
async def test_diary_window_errors(
    gql: GraphQL, owner_conn: asyncpg.Connection, arguments: str, code: str, fragment: str
) -> None:
    (student_id, *_) = await family_student_ids(owner_conn, "parent-one-school")
    payload = await gql(
        f'{{ student(id: "{student_id}") {{ id diary({arguments}) {{ from }} }} }}',
        account="parent-one-school",
    )
    assert error_codes(payload) == [code]
    assert fragment in payload["errors"][0]["message"]
    assert payload["data"] == {"student": None}


async def test_longest_allowed_diary_and_single_date_windows(
    gql: GraphQL, owner_conn: asyncpg.Connection, settings: Settings
) -> None:
    (student_id, *_) = await family_student_ids(owner_conn, "parent-one-school")
    last = RANGE_TO
    first = last - timedelta(days=settings.max_diary_days - 1)
    payload = await gql(
        """query($id: ID!, $from: Date!, $to: Date!) { student(id: $id) {
             full: diary(from: $from, to: $to) { from to days { date } }
             fromOnly: diary(from: $from) { from to }
             toOnly: diary(to: $to) { from to } } }""",
        {"id": str(student_id), "from": first.isoformat(), "to": last.isoformat()},
        account="parent-one-school",
    )
    assert "errors" not in payload, payload
    student = payload["data"]["student"]
    assert len(student["full"]["days"]) == settings.max_diary_days
    assert student["fromOnly"] == {
        "from": first.isoformat(),
        "to": (first + timedelta(days=6)).isoformat(),
    }
    assert student["toOnly"] == {
        "from": (last - timedelta(days=6)).isoformat(),
        "to": last.isoformat(),
    }


@pytest.mark.parametrize("first", [0, -1, 501])
async def test_marks_page_size_is_bounded(
    gql: GraphQL, owner_conn: asyncpg.Connection, first: int
) -> None:
    (student_id, *_) = await family_student_ids(owner_conn, "parent-one-school")
    payload = await gql(
        f'{{ student(id: "{student_id}") {{ marks(first: {first}) {{ id }} }} }}',
        account="parent-one-school",
    )
    assert error_codes(payload) == ["LIMIT_OUT_OF_RANGE"]
    assert "500" in payload["errors"][0]["message"]


async def test_parts_requested_through_fragments_and_repeated_fields(
    gql: GraphQL, owner_conn: asyncpg.Connection
) -> None:
    student_id = (await family_student_ids(owner_conn, "parent-one-school"))[-1]
    payload = await gql(
        """query($id: ID!) { student(id: $id) {
             diary(from: "2026-11-16", to: "2026-11-29") { lessons { id } }
             diary(from: "2026-11-16", to: "2026-11-29") { ...Parts }
           } }
           fragment Parts on Diary { days { lessons { ... on Lesson { marks { id } } } } }""",
        {"id": str(student_id)},
        account="parent-one-school",
    )
    assert "errors" not in payload, payload
    diary = payload["data"]["student"]["diary"]
    marks = await expected_marks(owner_conn, student_id, RANGE_FROM, RANGE_TO)
    assert marks
    shown = [m["id"] for day in diary["days"] for lesson in day["lessons"] for m in lesson["marks"]]
    assert sorted(shown) == sorted(m["id"] for m in marks)
    assert len(diary["lessons"]) == sum(len(day["lessons"]) for day in diary["days"])

"""Expected diary content computed straight from the school tables (schema `school`).

Independent of the `diary_api` views and of the gateway's code: the tests compare what
GraphQL shows with these.
"""

from __future__ import annotations

from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

import asyncpg

from fixtures.demo import demo_account

Json = dict[str, Any]


async def family_student_ids(owner_conn: asyncpg.Connection, account_key: str) -> list[int]:
    """Students a demo parent is linked to in any school's registry (by SNILS), or the student."""
    account = demo_account(account_key)
    if account.role == "PARENT":
        rows = await owner_conn.fetch(
            """SELECT DISTINCT ps.student_id FROM school.parents p
               JOIN school.parent_students ps ON ps.parent_id = p.id
               WHERE p.snils = $1 ORDER BY 1""",
            account.snils,
        )
        return [row["student_id"] for row in rows]
    row = await owner_conn.fetchrow(
        """SELECT id FROM school.students
           WHERE last_name = $1 AND first_name = $2 AND patronymic = $3""",
        account.last_name,
        account.first_name,
        account.patronymic,
    )
    assert row is not None
    return [row["id"]]


def stamp(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def number(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


def clock(value: time | None) -> str | None:
    return None if value is None else value.isoformat()


# --- expected values, straight from the school tables --------------------------------


async def expected_lessons(
    conn: asyncpg.Connection, student_id: int, date_from: date, date_to: date
) -> list[Json]:
    rows = await conn.fetch(
        """
        SELECT l.id, l.date, l.number, b.starts_at, b.ends_at, l.room, l.status,
               l.status_comment, lt.topic,
               greatest(l.updated_at, lt.updated_at) AS updated_at,
               sub.id AS subject_id, sub.name AS subject_name,
               t.id AS teacher_id,
               concat_ws(' ', t.last_name, t.first_name, t.patronymic) AS teacher,
               rs.id AS r_subject_id, rs.name AS r_subject_name,
               rt.id AS r_teacher_id,
               concat_ws(' ', rt.last_name, rt.first_name, rt.patronymic) AS r_teacher
        FROM school.students st
        JOIN school.lessons l ON l.class_id = st.class_id
        JOIN school.subjects sub ON sub.id = l.subject_id
        JOIN school.teachers t ON t.id = l.teacher_id
        LEFT JOIN school.bell_schedule b
               ON b.school_id = st.school_id AND b.lesson_number = l.number
        LEFT JOIN school.lesson_topics lt ON lt.lesson_id = l.id
        LEFT JOIN school.subjects rs ON rs.id = l.replacement_subject_id
        LEFT JOIN school.teachers rt ON rt.id = l.replacement_teacher_id
        WHERE st.id = $1 AND l.date BETWEEN $2 AND $3
        ORDER BY l.date, l.number
        """,
        student_id,
        date_from,
        date_to,
    )
    result = []
    for row in rows:
        subject = {"id": str(row["subject_id"]), "name": row["subject_name"]}
        teacher = {"id": str(row["teacher_id"]), "name": row["teacher"]}
        replacement = None
        if row["status"] == "replaced":
            replacement = {
                "subject": {"id": str(row["r_subject_id"]), "name": row["r_subject_name"]}
                if row["r_subject_id"] is not None
                else subject,
                "teacher": {"id": str(row["r_teacher_id"]), "name": row["r_teacher"]}
                if row["r_teacher_id"] is not None
                else teacher,
            }
        result.append(
            {
                "id": str(row["id"]),
                "date": row["date"].isoformat(),
                "number": row["number"],
                "startsAt": clock(row["starts_at"]),
                "endsAt": clock(row["ends_at"]),
                "room": row["room"],
                "status": row["status"].upper(),
                "statusComment": row["status_comment"],
                "topic": row["topic"],
                "updatedAt": row["updated_at"],
                "subject": subject,
                "teacher": teacher,
                "replacement": replacement,
            }
        )
    return result


async def expected_marks(
    conn: asyncpg.Connection, student_id: int, date_from: date, date_to: date
) -> list[Json]:
    rows = await conn.fetch(
        """
        SELECT m.*, l.number AS lesson_number, lt.topic, sub.id AS subject_id,
               sub.name AS subject_name, wt.name AS wt_name, wt.short_name AS wt_short,
               wt.weight AS wt_weight
        FROM school.marks m
        JOIN school.lessons l ON l.id = m.lesson_id
        JOIN school.subjects sub ON sub.id = l.subject_id
        JOIN school.work_types wt ON wt.id = m.work_type_id
        LEFT JOIN school.lesson_topics lt ON lt.lesson_id = l.id
        WHERE m.student_id = $1 AND m.date BETWEEN $2 AND $3
        ORDER BY m.date, l.number, m.id
        """,
        student_id,
        date_from,
        date_to,
    )
    return [
        {
            "id": str(row["id"]),
            "value": row["value"],
            "numericValue": number(row["numeric_value"]),
            "weight": float(row["weight"]),
            "workTitle": row["work_title"],
            "comment": row["comment"],
            "date": row["date"].isoformat(),
            "countsInAverage": row["counts_in_average"],
            "createdAt": row["created_at"],
            "updatedAt": row["updated_at"],
            "workType": {
                "id": str(row["work_type_id"]),
                "name": row["wt_name"],
                "shortName": row["wt_short"],
                "weight": float(row["wt_weight"]),
            },
            "subject": {"id": str(row["subject_id"]), "name": row["subject_name"]},
            "lesson": {
                "id": str(row["lesson_id"]),
                "date": row["date"].isoformat(),
                "number": row["lesson_number"],
                "topic": row["topic"],
            },
        }
        for row in rows
    ]


ATTENDANCE_KINDS = {
    "Н": "ABSENT",
    "Б": "ILL",
    "У": "EXCUSED",
    "П": "EXCUSED",
    "О": "LATE",
    "ОП": "LATE",
}


async def expected_attendance(
    conn: asyncpg.Connection, student_id: int, date_from: date, date_to: date
) -> list[Json]:
    rows = await conn.fetch(
        """
        SELECT a.*, l.number AS lesson_number, sub.id AS subject_id, sub.name AS subject_name
        FROM school.attendance a
        JOIN school.lessons l ON l.id = a.lesson_id
        JOIN school.subjects sub ON sub.id = l.subject_id
        WHERE a.student_id = $1 AND a.date BETWEEN $2 AND $3
        ORDER BY a.date, l.number, a.id
        """,
        student_id,
        date_from,
        date_to,
    )
    return [
        {
            "id": str(row["id"]),
            "date": row["date"].isoformat(),
            "lessonId": str(row["lesson_id"]),
            "lessonNumber": row["lesson_number"],
            "code": row["code"],
            "kind": ATTENDANCE_KINDS[row["code"]],
            "minutesLate": row["minutes_late"],
            "comment": row["comment"],
            "subject": {"id": str(row["subject_id"]), "name": row["subject_name"]},
        }
        for row in rows
    ]


async def expected_homework(
    conn: asyncpg.Connection, student_id: int, condition: str, *args: Any
) -> list[Json]:
    rows = await conn.fetch(
        f"""
        SELECT h.*, sub.name AS subject_name, l.date AS lesson_date,
               coalesce((SELECT array_agg(a.title || ' ' || a.url ORDER BY a.id)
                         FROM school.homework_attachments a WHERE a.homework_id = h.id),
                        '{{}}') AS attachments
        FROM school.students st
        JOIN school.homework h ON h.class_id = st.class_id
        JOIN school.subjects sub ON sub.id = h.subject_id
        JOIN school.lessons l ON l.id = h.lesson_id
        WHERE st.id = $1 AND {condition}
        ORDER BY h.due_on, sub.name, h.id
        """,
        student_id,
        *args,
    )
    return [
        {
            "id": str(row["id"]),
            "text": row["text"],
            "assignedOn": row["assigned_on"].isoformat(),
            "dueOn": row["due_on"].isoformat(),
            "lessonId": str(row["lesson_id"]),
            "updatedAt": row["updated_at"],
            "subject": {"id": str(row["subject_id"]), "name": row["subject_name"]},
            "attachments": list(row["attachments"]),
        }
        for row in rows
    ]


def with_stamps(items: list[Json], *keys: str) -> list[Json]:
    """Items with their timestamp strings parsed, to compare with database values."""
    return [{**item, **{key: stamp(item[key]) for key in keys}} for item in items]


def flat_attachments(items: list[Json]) -> list[Json]:
    return [
        {**item, "attachments": [f"{a['title']} {a['url']}" for a in item["attachments"]]}
        for item in items
    ]

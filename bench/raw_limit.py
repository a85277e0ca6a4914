"""The raw limit: what Python could do at best with the gateway's own SQL and no GraphQL.

A minimal Starlette + asyncpg + orjson endpoint (uvicorn, one worker). For each canonical
operation it calls the same `resolvers.diary.sql` functions the gateway's loaders call (no SQL
of its own) and answers with the same JSON as the gateway. No GraphQL, no tokens: the
student ids come in the request body.

    DATABASE_URL=postgresql://school_gateway:...@... .venv/bin/python -m bench.raw_limit --port 8300

DATABASE_URL is the gateway's login role's DSN, as for `school-gateway serve`.

POST /parent-week      {"studentIds": [..], "from": "YYYY-MM-DD", "to": "YYYY-MM-DD"}
POST /student-quarter  {"studentId": "..", "periodId": ".."}
POST /student-year     {"studentId": "..", "from": "YYYY-MM-DD", "to": "YYYY-MM-DD"}
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bench.averages import MarkValue, subject_results
from gateway.core.db_roles import login_identity, role_to_set
from resolvers.common.types import Subject, Teacher
from resolvers.diary import sql as data
from resolvers.diary.reference import ReferenceCache, ReferenceData, RequestReference
from resolvers.diary.sql import MarksFilter, StudentRange

Row = Any
Json = dict[str, Any]
POOL_MIN = int(os.environ.get("SCHOOL_GATEWAY_POOL_MIN", "2"))
POOL_MAX = int(os.environ.get("SCHOOL_GATEWAY_POOL_MAX", "10"))


async def _keep_session(conn: asyncpg.Connection) -> None:
    """No RESET ALL on release (as the gateway's pool)."""


async def _role_settings(url: str) -> dict[str, str]:
    """As the gateway's pool: nothing to switch when `url` logs in as its role."""
    conn = await asyncpg.connect(url)
    try:
        identity = await login_identity(conn)
    finally:
        await conn.close()
    role = role_to_set(identity, os.environ.get("SCHOOL_GATEWAY_DB_ROLE", "school_gateway"))
    return {} if role is None else {"role": role}


async def open_pool(url: str) -> asyncpg.Pool:
    """A pool with the gateway's session settings: its read-only role, no JIT, a timeout."""
    pool = await asyncpg.create_pool(
        url,
        min_size=POOL_MIN,
        max_size=POOL_MAX,
        reset=_keep_session,
        server_settings={
            "jit": "off",
            **await _role_settings(url),
            "statement_timeout": os.environ.get("SCHOOL_GATEWAY_STATEMENT_TIMEOUT_MS", "5000"),
            "application_name": "bench-raw-limit",
        },
    )
    assert pool is not None
    return pool


def _float(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


# The reference data (names of subjects, teachers, work types), kept as the gateway keeps it.
_REFERENCE = ReferenceCache()


def _name(names: Mapping[int, Subject] | Mapping[int, Teacher], key: int | None) -> Json | None:
    found = None if key is None else names.get(key)
    return None if found is None else {"name": found.name}


def _lesson(
    row: Row,
    reference: ReferenceData,
    homework: list[Json],
    marks: list[Json],
    attendance: Json | None,
) -> Json:
    subject = {"name": reference.subjects[row["subject_id"]].name}
    teacher = {"name": reference.teachers[row["teacher_id"]].name}
    replacement = None
    if row["status"] == "replaced":
        replacement = {
            "subject": _name(reference.subjects, row["replacement_subject_id"]) or subject,
            "teacher": _name(reference.teachers, row["replacement_teacher_id"]) or teacher,
        }
    return {
        "id": str(row["id"]),
        "number": row["number"],
        "subject": subject,
        "teacher": teacher,
        "room": row["room"],
        "status": row["status"].upper(),
        "replacement": replacement,
        "topic": row["topic"],
        "homework": homework,
        "marks": marks,
        "attendance": attendance,
    }


async def _named(
    pool: asyncpg.Pool,
    reference: RequestReference,
    rows: list[Row],
    *,
    subjects: tuple[str, ...] = (),
    teachers: tuple[str, ...] = (),
    work_types: tuple[str, ...] = (),
) -> ReferenceData:
    """The request's copy with every id the rows name (as the gateway's loaders do it)."""
    read_names = functools.partial(data.list_names_by_ids, pool)
    return await reference.naming(
        rows, read_names, subjects=subjects, teachers=teachers, work_types=work_types
    )


def _lessons_by_day(
    reference: ReferenceData,
    lessons: list[Row],
    marks: list[Row],
    attendance: list[Row],
    homework: list[Row],
) -> dict[date, list[Json]]:
    """One child's lessons by day, each with its homework, marks and attendance."""
    marks_by_lesson: dict[int, list[Json]] = {}
    for mark in marks:
        marks_by_lesson.setdefault(mark["lesson_id"], []).append(
            {
                "id": str(mark["id"]),
                "value": mark["value"],
                "weight": float(mark["weight"]),
                "workType": {"name": reference.work_types[mark["work_type_id"]].name},
            }
        )
    attendance_by_lesson = {
        item["lesson_id"]: {"code": item["code"], "minutesLate": item["minutes_late"]}
        for item in attendance
    }
    homework_by_lesson: dict[int, list[Json]] = {}
    for item in homework:
        homework_by_lesson.setdefault(item["lesson_id"], []).append(
            {
                "text": item["text"],
                "dueOn": item["due_on"],
                "attachments": json.loads(item["attachments"]),
            }
        )
    days: dict[date, list[Json]] = {}
    for row in lessons:
        lesson_id = row["id"]
        days.setdefault(row["date"], []).append(
            _lesson(
                row,
                reference,
                homework_by_lesson.get(lesson_id, []),
                marks_by_lesson.get(lesson_id, []),
                attendance_by_lesson.get(lesson_id),
            )
        )
    return days


async def parent_week(pool: asyncpg.Pool, body: Json) -> Json:
    """The parent's children with their diary for the window (the gateway's parent-week)."""
    student_ids = [int(item) for item in body["studentIds"]]
    date_from, date_to = date.fromisoformat(body["from"]), date.fromisoformat(body["to"])
    keys = [StudentRange(student_id, date_from, date_to) for student_id in student_ids]
    request_reference = RequestReference(_REFERENCE)
    sent = request_reference.data
    students, lessons, marks, attendance, homework = await asyncio.gather(
        data.get_students_by_ids(pool, student_ids=student_ids, reference_version=sent.version),
        data.list_lessons_by_student_ranges(pool, keys=keys),
        data.list_marks_by_student_ranges(pool, keys=keys),
        data.list_attendance_by_student_ranges(pool, keys=keys),
        data.list_homework_by_student_ranges(pool, keys=keys),
    )
    if students:
        payload = next((row["reference"] for row in students if row["reference"]), None)
        request_reference.received(sent, students[0]["reference_version"], payload)
    await _named(
        pool,
        request_reference,
        [row for group in lessons for row in group],
        subjects=("subject_id", "replacement_subject_id"),
        teachers=("teacher_id", "replacement_teacher_id"),
    )
    reference = await _named(
        pool,
        request_reference,
        [row for group in marks for row in group],
        work_types=("work_type_id",),
    )
    by_id = {row["id"]: row for row in students}
    calendar = [date_from + timedelta(days=n) for n in range((date_to - date_from).days + 1)]
    children = []
    for index, student_id in enumerate(student_ids):
        row = by_id.get(student_id)
        if row is None:
            continue
        days = _lessons_by_day(
            reference, lessons[index], marks[index], attendance[index], homework[index]
        )
        names = (row["last_name"], row["first_name"], row["patronymic"])
        children.append(
            (
                (row["last_name"], row["first_name"], student_id),
                {
                    "id": str(student_id),
                    "fullName": " ".join(name for name in names if name),
                    "school": {"name": row["school_name"]},
                    "schoolClass": {"name": row["class_name"]},
                    "diary": {
                        "days": [{"date": day, "lessons": days.get(day, [])} for day in calendar]
                    },
                },
            )
        )
    children.sort(key=lambda item: item[0])
    return {"myChildren": [child for _key, child in children]}


async def student_quarter(pool: asyncpg.Pool, body: Json) -> Json:
    """Weighted averages of the student's marks in a period, with every contribution."""
    student_id, period_id = int(body["studentId"]), int(body["periodId"])
    periods = await data.list_periods_by_student_ids(pool, student_ids=[student_id])
    period = next(row for row in periods if row["id"] == period_id)
    key = StudentRange(student_id, period["starts_on"], period["ends_on"])
    (marks,) = await data.list_marks_by_student_ranges(pool, keys=[key])
    reference = await _named(
        pool,
        RequestReference(_REFERENCE),
        marks,
        subjects=("subject_id",),
        work_types=("work_type_id",),
    )
    values = [
        MarkValue(
            subject_id=str(row["subject_id"]),
            subject_name=reference.subjects[row["subject_id"]].name,
            numeric_value=row["numeric_value"],
            weight=row["weight"],
            counts_in_average=row["counts_in_average"],
        )
        for row in marks
    ]
    rows_by_subject: dict[str, list[Row]] = {}
    for row in marks:
        rows_by_subject.setdefault(str(row["subject_id"]), []).append(row)
    averages = []
    for result in subject_results(values):
        contributions = [
            {
                "counted": why == "COUNTED",
                "weight": float(row["weight"]),
                "reason": why,
                "mark": {
                    "id": str(row["id"]),
                    "value": row["value"],
                    "date": row["date"],
                    "numericValue": _float(row["numeric_value"]),
                    "countsInAverage": row["counts_in_average"],
                    "workType": {"name": reference.work_types[row["work_type_id"]].name},
                },
            }
            for row, why in zip(rows_by_subject[result.subject_id], result.reasons, strict=True)
        ]
        averages.append(
            {
                "subject": {"name": result.subject_name},
                "weightedAverage": result.weighted_average,
                "weightSum": result.weight_sum,
                "marksCounted": result.marks_counted,
                "contributions": contributions,
            }
        )
    return {"student": {"averages": averages}}


async def student_year(pool: asyncpg.Pool, body: Json) -> Json:
    """Every mark of the student's window, newest first (at most 500)."""
    key = MarksFilter(
        int(body["studentId"]),
        date.fromisoformat(body["from"]),
        date.fromisoformat(body["to"]),
        None,
        500,
    )
    (rows,) = await data.list_mark_pages(pool, keys=[key])
    reference = await _named(
        pool,
        RequestReference(_REFERENCE),
        rows,
        subjects=("subject_id",),
        work_types=("work_type_id",),
    )
    marks = [
        {
            "id": str(row["id"]),
            "value": row["value"],
            "numericValue": _float(row["numeric_value"]),
            "weight": float(row["weight"]),
            "date": row["date"],
            "workTitle": row["work_title"],
            "comment": row["comment"],
            "countsInAverage": row["counts_in_average"],
            "workType": {
                "name": reference.work_types[row["work_type_id"]].name,
                "weight": reference.work_types[row["work_type_id"]].weight,
            },
            "subject": {"name": reference.subjects[row["subject_id"]].name},
            "lesson": {
                "id": str(row["lesson_id"]),
                "number": row["lesson_number"],
                "topic": row["lesson_topic"],
            },
        }
        for row in rows
    ]
    return {"student": {"marks": marks}}


Handler = Callable[[asyncpg.Pool, Json], Awaitable[Json]]
OPERATIONS: dict[str, Handler] = {
    "parent-week": parent_week,
    "student-quarter": student_quarter,
    "student-year": student_year,
}


def create_app(url: str) -> Starlette:
    """The raw-limit application over the database at `url`."""
    state: dict[str, asyncpg.Pool] = {}

    def endpoint(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def handle(request: Request) -> Response:
            body = orjson.loads(await request.body())
            result = await handler(state["pool"], body)
            return Response(orjson.dumps({"data": result}), media_type="application/json")

        return handle

    async def healthz(request: Request) -> Response:
        await state["pool"].fetchval("SELECT 1")
        return Response(b'{"status":"ok"}', media_type="application/json")

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        state["pool"] = await open_pool(url)
        try:
            yield
        finally:
            await state["pool"].close()

    routes = [Route(f"/{name}", endpoint(fn), methods=["POST"]) for name, fn in OPERATIONS.items()]
    routes.append(Route("/healthz", healthz, methods=["GET"]))
    return Starlette(routes=routes, lifespan=lifespan)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8300)
    args = parser.parse_args()
    app = create_app(os.environ["DATABASE_URL"])
    uvicorn.run(
        app, host=args.host, port=args.port, workers=1, log_level="warning", access_log=False
    )


if __name__ == "__main__":
    main()

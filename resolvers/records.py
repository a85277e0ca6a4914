"""Rows of `gateway.data` turned into plain typed objects (what loaders return)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

import strawberry

from resolvers.types import (
    Attachment,
    Attendance,
    AttendanceKind,
    FinalMark,
    FinalMarkKind,
    Homework,
    LessonStatus,
    LessonSummary,
    Mark,
    Period,
    PeriodRef,
    PeriodScheme,
    School,
    SchoolClass,
    Subject,
    Teacher,
    WorkType,
)

Row = Any

ATTENDANCE_KINDS: dict[str, AttendanceKind] = {
    "Н": AttendanceKind.ABSENT,
    "Б": AttendanceKind.ILL,
    "У": AttendanceKind.EXCUSED,
    "П": AttendanceKind.EXCUSED,
    "О": AttendanceKind.LATE,
    "ОП": AttendanceKind.LATE,
}


def _id(value: int) -> strawberry.ID:
    return strawberry.ID(str(value))


def _float(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


@dataclass(frozen=True, slots=True)
class StudentRecord:
    """A student as loaded: names, school and class."""

    id: int
    last_name: str
    first_name: str
    patronymic: str | None
    school: School
    school_class: SchoolClass


@dataclass(frozen=True, slots=True)
class LessonRecord:
    """A lesson of a class as loaded; the diary adds one student's marks and attendance."""

    id: int
    date: date
    number: int
    starts_at: time | None
    ends_at: time | None
    subject: Subject
    teacher: Teacher
    room: str | None
    status: LessonStatus
    status_comment: str | None
    replacement_subject: Subject | None
    replacement_teacher: Teacher | None
    topic: str | None
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class PeriodRecord:
    """A study period as loaded (whether it is current depends on the request's today)."""

    id: int
    number: int
    title: str
    scheme: PeriodScheme
    starts_on: date
    ends_on: date
    year_title: str

    def contains(self, day: date) -> bool:
        """True when `day` falls inside the period."""
        return self.starts_on <= day <= self.ends_on

    def to_period(self, *, today: date) -> Period:
        """The GraphQL object, with `isCurrent` relative to `today`."""
        return Period(
            id=_id(self.id),
            number=self.number,
            title=self.title,
            scheme=self.scheme,
            starts_on=self.starts_on,
            ends_on=self.ends_on,
            year_title=self.year_title,
            is_current=self.contains(today),
        )


def student_from_row(row: Row) -> StudentRecord:
    """A student row (with school and class columns)."""
    return StudentRecord(
        id=row["id"],
        last_name=row["last_name"],
        first_name=row["first_name"],
        patronymic=row["patronymic"],
        school=School(
            id=_id(row["school_id"]),
            name=row["school_name"],
            short_name=row["school_short_name"],
            municipality=row["municipality"],
        ),
        school_class=SchoolClass(
            id=_id(row["class_id"]),
            name=row["class_name"],
            grade=row["grade"],
            letter=row["letter"],
        ),
    )


def _optional_subject(subject_id: int | None, name: str | None) -> Subject | None:
    if subject_id is None or name is None:
        return None
    return Subject(id=_id(subject_id), name=name)


def _optional_teacher(teacher_id: int | None, name: str | None) -> Teacher | None:
    if teacher_id is None or name is None:
        return None
    return Teacher(id=_id(teacher_id), name=name)


def lesson_from_row(row: Row) -> LessonRecord:
    """A lesson row of `diary_api.lessons`."""
    return LessonRecord(
        id=row["id"],
        date=row["date"],
        number=row["number"],
        starts_at=row["starts_at"],
        ends_at=row["ends_at"],
        subject=Subject(id=_id(row["subject_id"]), name=row["subject_name"]),
        teacher=Teacher(id=_id(row["teacher_id"]), name=row["teacher_name"]),
        room=row["room"],
        status=LessonStatus(row["status"]),
        status_comment=row["status_comment"],
        replacement_subject=_optional_subject(
            row["replacement_subject_id"], row["replacement_subject_name"]
        ),
        replacement_teacher=_optional_teacher(
            row["replacement_teacher_id"], row["replacement_teacher_name"]
        ),
        topic=row["topic"],
        updated_at=row["updated_at"],
    )


def mark_from_row(row: Row) -> Mark:
    """A mark row of `diary_api.marks`."""
    return Mark(
        id=_id(row["id"]),
        value=row["value"],
        numeric_value=_float(row["numeric_value"]),
        work_type=WorkType(
            id=_id(row["work_type_id"]),
            name=row["work_type_name"],
            short_name=row["work_type_short_name"],
            weight=float(row["work_type_weight"]),
        ),
        weight=float(row["weight"]),
        work_title=row["work_title"],
        comment=row["comment"],
        date=row["date"],
        counts_in_average=row["counts_in_average"],
        subject=Subject(id=_id(row["subject_id"]), name=row["subject_name"]),
        lesson=LessonSummary(
            id=_id(row["lesson_id"]),
            date=row["date"],
            number=row["lesson_number"],
            topic=row["lesson_topic"],
        ),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def attendance_from_row(row: Row) -> Attendance:
    """An attendance row of `diary_api.attendance`."""
    return Attendance(
        id=_id(row["id"]),
        date=row["date"],
        lesson_id=_id(row["lesson_id"]),
        lesson_number=row["lesson_number"],
        subject=Subject(id=_id(row["subject_id"]), name=row["subject_name"]),
        code=row["code"],
        kind=ATTENDANCE_KINDS[row["code"]],
        minutes_late=row["minutes_late"],
        comment=row["comment"],
        updated_at=row["updated_at"],
    )


@dataclass(frozen=True, slots=True)
class HomeworkRecord:
    """Homework plus the lesson it was given at (to attach it to that lesson)."""

    homework: Homework
    lesson_id: int


def homework_from_row(row: Row) -> HomeworkRecord:
    """A homework row of `diary_api.homework` (attachments as JSON text)."""
    attachments = [
        Attachment(title=item["title"], url=item["url"]) for item in json.loads(row["attachments"])
    ]
    homework = Homework(
        id=_id(row["id"]),
        text=row["text"],
        assigned_on=row["assigned_on"],
        due_on=row["due_on"],
        subject=Subject(id=_id(row["subject_id"]), name=row["subject_name"]),
        attachments=attachments,
        lesson_id=_id(row["lesson_id"]),
        updated_at=row["updated_at"],
    )
    return HomeworkRecord(homework=homework, lesson_id=row["lesson_id"])


def period_from_row(row: Row) -> PeriodRecord:
    """A period row of `diary_api.periods`."""
    return PeriodRecord(
        id=row["id"],
        number=row["number"],
        title=row["title"],
        scheme=PeriodScheme(row["scheme"]),
        starts_on=row["starts_on"],
        ends_on=row["ends_on"],
        year_title=row["year_title"],
    )


def final_mark_from_row(row: Row) -> FinalMark:
    """A row of `diary_api.final_marks`."""
    period = None
    if row["period_id"] is not None:
        period = PeriodRef(id=_id(row["period_id"]), title=row["period_title"])
    return FinalMark(
        id=_id(row["id"]),
        kind=FinalMarkKind(row["kind"]),
        subject=Subject(id=_id(row["subject_id"]), name=row["subject_name"]),
        period=period,
        year_title=row["year_title"],
        value=row["value"],
        numeric_value=_float(row["numeric_value"]),
        updated_at=row["updated_at"],
    )

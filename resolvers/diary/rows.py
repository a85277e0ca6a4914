"""Rows of `resolvers.diary.sql` turned into plain typed objects (what loaders return)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any, NamedTuple, cast

import orjson
import strawberry

from resolvers.common.types import PeriodScheme, School, SchoolClass, Subject, Teacher
from resolvers.diary.reference import ReferenceData
from resolvers.diary.types import (
    Attachment,
    Attendance,
    AttendanceKind,
    FinalMark,
    FinalMarkKind,
    Homework,
    LessonReplacement,
    LessonStatus,
    LessonSummary,
    Mark,
    Period,
    PeriodRef,
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


# A GraphQL ID from a database id: `str` itself (strawberry.ID is a NewType of str, and
# calling the NewType costs a Python call per id; a diary converts hundreds per request).
_id = cast(Callable[[int], strawberry.ID], str)


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


class LessonRecord(NamedTuple):
    """A lesson of a class as loaded; the diary adds one student's marks and attendance.

    A named tuple: built positionally in C, the cheapest immutable record there is
    (a diary request loads every lesson of the week for each child).
    """

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

    def replacement(self) -> LessonReplacement | None:
        """What is taught instead, for a replaced lesson (its own subject or teacher where
        the replacement names none)."""
        if self.status is not LessonStatus.REPLACED:
            return None
        return LessonReplacement(
            subject=self.replacement_subject or self.subject,
            teacher=self.replacement_teacher or self.teacher,
        )


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
        school_class=school_class_from_row(row),
    )


def school_class_from_row(row: Any) -> SchoolClass:
    """A class from a row's `class_id`, `class_name`, `grade` and `letter`."""
    return SchoolClass(
        id=_id(row["class_id"]), name=row["class_name"], grade=row["grade"], letter=row["letter"]
    )


class ReferenceInterner:
    """One object per distinct subject within a batch of rows that name their subject
    (final marks; lessons, marks, attendance and homework take theirs from the reference
    data). Sharing the (never mutated) objects saves most of a conversion's allocations.
    """

    __slots__ = ("_subjects",)

    def __init__(self) -> None:
        self._subjects: dict[tuple[int, str], Subject] = {}

    def subject(self, subject_id: int, name: str) -> Subject:
        key = (subject_id, name)
        subject = self._subjects.get(key)
        if subject is None:
            subject = self._subjects[key] = Subject(id=_id(subject_id), name=name)
        return subject


def lesson_from_row(row: Row, reference: ReferenceData) -> LessonRecord:
    """A lesson row of the lessons statement (`diary_api.lesson_facts`), its subjects,
    teachers and bells named from the reference data, which has the row's subject and
    teacher (`ReferenceCache.add_names`, `has_names`); a replacement or bell it does
    not have is None (as a LEFT JOIN would give)."""
    replacement_subject = reference.subjects.get(row["replacement_subject_id"])
    replacement_teacher = reference.teachers.get(row["replacement_teacher_id"])
    starts_at, ends_at = reference.bells.get((row["school_id"], row["number"]), _NO_BELL)
    return LessonRecord(
        row["id"],
        row["date"],
        row["number"],
        starts_at,
        ends_at,
        reference.subjects[row["subject_id"]],
        reference.teachers[row["teacher_id"]],
        row["room"],
        LessonStatus(row["status"]),
        row["status_comment"],
        replacement_subject,
        replacement_teacher,
        row["topic"],
        row["updated_at"],
    )


_NO_BELL: tuple[None, None] = (None, None)


def has_names(row: Row, reference: ReferenceData) -> bool:
    """Whether the lesson's subject and teacher exist (a lesson naming a subject or teacher
    that does not exist is left out, as an inner join of the names would)."""
    return row["subject_id"] in reference.subjects and row["teacher_id"] in reference.teachers


def mark_from_row(row: Row, reference: ReferenceData) -> Mark:
    """A mark row of `diary_api.mark_facts`, its subject and work type from the reference
    data (which has them: see `has_mark_names`)."""
    return Mark(
        id=_id(row["id"]),
        value=row["value"],
        numeric_value=_float(row["numeric_value"]),
        work_type=reference.work_types[row["work_type_id"]],
        weight=float(row["weight"]),
        work_title=row["work_title"],
        comment=row["comment"],
        date=row["date"],
        counts_in_average=row["counts_in_average"],
        subject=reference.subjects[row["subject_id"]],
        lesson=LessonSummary(
            id=_id(row["lesson_id"]),
            date=row["date"],
            number=row["lesson_number"],
            topic=row["lesson_topic"],
        ),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def has_mark_names(row: Row, reference: ReferenceData) -> bool:
    """Whether the mark's subject and work type exist (left out otherwise, as an inner
    join of the names would)."""
    return row["subject_id"] in reference.subjects and row["work_type_id"] in reference.work_types


def attendance_from_row(row: Row, reference: ReferenceData) -> Attendance:
    """An attendance row of `diary_api.attendance_facts`, its subject from the reference
    data (which has it: see `has_subject`)."""
    return Attendance(
        id=_id(row["id"]),
        date=row["date"],
        lesson_id=_id(row["lesson_id"]),
        lesson_number=row["lesson_number"],
        subject=reference.subjects[row["subject_id"]],
        code=row["code"],
        kind=ATTENDANCE_KINDS[row["code"]],
        minutes_late=row["minutes_late"],
        comment=row["comment"],
        updated_at=row["updated_at"],
    )


def has_subject(row: Row, reference: ReferenceData) -> bool:
    """Whether the row's subject exists (left out otherwise, as an inner join would)."""
    return row["subject_id"] in reference.subjects


class HomeworkRecord(NamedTuple):
    """Homework plus the lesson it was given at (to attach it to that lesson)."""

    homework: Homework
    lesson_id: int


def homework_from_row(row: Row, reference: ReferenceData) -> HomeworkRecord:
    """A homework row of the homework statement (attachments as JSON text), its subject
    from the reference data (which has it: see `has_subject`)."""
    raw_attachments = row["attachments"]
    attachments = (
        []
        if raw_attachments == "[]"
        else [
            Attachment(title=item["title"], url=item["url"])
            for item in orjson.loads(raw_attachments)
        ]
    )
    lesson_id = row["lesson_id"]
    homework = Homework(
        id=_id(row["id"]),
        text=row["text"],
        assigned_on=row["assigned_on"],
        due_on=row["due_on"],
        subject=reference.subjects[row["subject_id"]],
        attachments=attachments,
        lesson_id=_id(lesson_id),
        updated_at=row["updated_at"],
    )
    return HomeworkRecord(homework=homework, lesson_id=lesson_id)


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


def final_mark_from_row(row: Row, refs: ReferenceInterner | None = None) -> FinalMark:
    """A row of `diary_api.final_marks`."""
    refs = refs or ReferenceInterner()
    period = None
    if row["period_id"] is not None:
        period = PeriodRef(id=_id(row["period_id"]), title=row["period_title"])
    return FinalMark(
        id=_id(row["id"]),
        kind=FinalMarkKind(row["kind"]),
        subject=refs.subject(row["subject_id"], row["subject_name"]),
        period=period,
        year_title=row["year_title"],
        value=row["value"],
        numeric_value=_float(row["numeric_value"]),
        updated_at=row["updated_at"],
    )

"""The diary of one student for a date window, built from a handful of batched loads.

The `Student.diary` resolver loads, for its (student, window) key, only the kinds the
query selects (lessons, marks, attendance, homework), each through a loader that batches
every child's key into one statement. Lessons then get their marks, homework and
attendance attached here in Python, so no field below `diary` touches the database.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import date, datetime, timedelta
from operator import attrgetter
from typing import Any, TypeVar

import strawberry

from resolvers.common.selection import SelectionMemo, parts_selected
from resolvers.diary.loaders import Loaders
from resolvers.diary.rows import HomeworkRecord, LessonRecord
from resolvers.diary.sql import StudentRange
from resolvers.diary.types import (
    Attendance,
    Diary,
    DiaryDay,
    DiaryPart,
    Homework,
    Lesson,
    Mark,
)

T = TypeVar("T")
K = TypeVar("K")


_PARTS_BY_SELECTION: SelectionMemo[frozenset[DiaryPart]] = SelectionMemo(limit=1024)


def parts_for(info: strawberry.Info[Any, Any]) -> frozenset[DiaryPart]:
    """The diary parts the `diary` field's selection (every occurrence merged, through
    fragments) needs loaded, as its fields declare them (`resolvers.common.fields.loads`);
    worked out once per parsed document."""
    return _PARTS_BY_SELECTION.get(info, lambda: parts_selected(info, DiaryPart))


async def _nothing() -> list[T]:
    return []


async def load_diary(loaders: Loaders, *, key: StudentRange, parts: frozenset[DiaryPart]) -> Diary:
    """Load the requested parts of one student's diary (batched with other keys) and build it."""
    lessons, marks, attendance, homework = await asyncio.gather(
        loaders.lessons_by_student_range.load(key) if DiaryPart.LESSONS in parts else _nothing(),
        loaders.marks_by_student_range.load(key) if DiaryPart.MARKS in parts else _nothing(),
        loaders.attendance_by_student_range.load(key)
        if DiaryPart.ATTENDANCE in parts
        else _nothing(),
        loaders.homework_by_student_range.load(key) if DiaryPart.HOMEWORK in parts else _nothing(),
    )
    return build_diary(
        date_from=key.date_from,
        date_to=key.date_to,
        lessons=lessons,
        marks=marks,
        attendance=attendance,
        homework=homework,
    )


def _group_by(items: Iterable[T], key: Callable[[T], K]) -> dict[K, list[T]]:
    groups: dict[K, list[T]] = defaultdict(list)
    for item in items:
        groups[key(item)].append(item)
    return groups


def _lesson(
    record: LessonRecord,
    *,
    homework: list[Homework],
    marks: list[Mark],
    attendance: Attendance | None,
) -> Lesson:
    return Lesson(
        id=strawberry.ID(str(record.id)),
        date=record.date,
        number=record.number,
        starts_at=record.starts_at,
        ends_at=record.ends_at,
        subject=record.subject,
        teacher=record.teacher,
        room=record.room,
        status=record.status,
        status_comment=record.status_comment,
        replacement=record.replacement(),
        topic=record.topic,
        homework=homework,
        marks=marks,
        attendance=attendance,
        updated_at=record.updated_at,
    )


def _days(date_from: date, date_to: date) -> list[date]:
    return [date_from + timedelta(days=n) for n in range((date_to - date_from).days + 1)]


_UPDATED_AT = attrgetter("updated_at")
_HOMEWORK_UPDATED_AT = attrgetter("homework.updated_at")


def _latest(*stamps: Iterable[datetime]) -> datetime | None:
    """The latest of several (possibly empty) sequences of timestamps."""
    latest = [stamp for stamp in (max(group, default=None) for group in stamps) if stamp]
    return max(latest, default=None)


def build_diary(
    *,
    date_from: date,
    date_to: date,
    lessons: list[LessonRecord],
    marks: list[Mark],
    attendance: list[Attendance],
    homework: list[HomeworkRecord],
) -> Diary:
    """Assemble the diary: lessons with their marks, homework and attendance, by day."""
    marks_by_lesson = _group_by(marks, lambda mark: int(mark.lesson.id))
    attendance_by_lesson = {int(item.lesson_id): item for item in attendance}
    given_at = {
        lesson_id: [record.homework for record in records]
        for lesson_id, records in _group_by(homework, lambda record: record.lesson_id).items()
    }
    built = [
        _lesson(
            record,
            homework=given_at.get(record.id, []),
            marks=marks_by_lesson.get(record.id, []),
            attendance=attendance_by_lesson.get(record.id),
        )
        for record in lessons
    ]
    due = [record.homework for record in homework if date_from <= record.homework.due_on <= date_to]
    lessons_by_day = _group_by(built, lambda lesson: lesson.date)
    due_by_day = _group_by(due, lambda item: item.due_on)
    return Diary(
        from_=date_from,
        to=date_to,
        days=[
            DiaryDay(
                date=day, lessons=lessons_by_day.get(day, []), homework_due=due_by_day.get(day, [])
            )
            for day in _days(date_from, date_to)
        ],
        lessons=built,
        homework=due,
        marks=marks,
        attendance=attendance,
        last_updated_at=_latest(
            map(_UPDATED_AT, lessons),
            map(_UPDATED_AT, marks),
            map(_UPDATED_AT, attendance),
            map(_HOMEWORK_UPDATED_AT, homework),
        ),
    )

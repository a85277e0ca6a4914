"""GraphQL types of the change feed: one event type per kind of diary change.

Every event names the student whose diary it changes, the lesson and date where there is
one, when it was written and its cursor; its payload is the row as it is when the event
is read (null once the row is gone: a removed mark, or one changed again and then
removed before delivery). Plain types: every field is an attribute.
"""

from __future__ import annotations

import enum
from datetime import date, datetime

import strawberry
from strawberry.types.scalar import ScalarDefinition

from resolvers.changes.cursor import ChangeCursor
from resolvers.common.fields import sized
from resolvers.common.types import Subject, Teacher
from resolvers.diary.types import (
    Attendance,
    FinalMark,
    Homework,
    LessonReplacement,
    LessonStatus,
    Mark,
)

# The schema's scalar for ChangeCursor (gateway.execution.schema passes it to strawberry).
SCALARS: dict[object, ScalarDefinition] = {
    ChangeCursor: strawberry.scalar(
        name="ChangeCursor",
        description=(
            "An opaque position in the change feed: pass it back as `since` to get exactly "
            "the changes after it (none lost, none repeated). Valid for the change log's "
            "retention (7 days by default), then refused with CURSOR_EXPIRED."
        ),
        serialize=str,
        parse_value=str,
    )
}


@strawberry.enum(description="What happened to the row an event is about.")
class ChangeAction(enum.Enum):
    ADDED = "added"
    CHANGED = "changed"
    REMOVED = "removed"


@strawberry.interface(description="A change to what a student's diary shows.")
class DiaryEvent:
    cursor: ChangeCursor = strawberry.field(
        description="This event's position: resume after it with `since`."
    )
    at: datetime = strawberry.field(description="When the change was written.")
    action: ChangeAction
    student_id: strawberry.ID = strawberry.field(
        description="The student whose diary changed (one of the viewer's)."
    )
    lesson_id: strawberry.ID | None = strawberry.field(
        description="The lesson the change concerns, if any."
    )
    date: date | None = strawberry.field(
        description="The lesson's date (a mark's, a record's; homework: the day it was given)."
    )


@strawberry.type(description="A mark added, changed or removed.")
class MarkEvent(DiaryEvent):
    mark_id: strawberry.ID
    mark: Mark | None = strawberry.field(description="The mark now; null once removed.")


@strawberry.type(description="An attendance record made, corrected or removed.")
class AttendanceEvent(DiaryEvent):
    attendance_id: strawberry.ID
    attendance: Attendance | None = strawberry.field(
        description="The record now; null once removed (the student is then marked present)."
    )


@strawberry.type(description="Homework given, changed (its text, dates or attachments) or removed.")
class HomeworkEvent(DiaryEvent):
    homework_id: strawberry.ID
    homework: Homework | None = strawberry.field(description="The homework now; null once removed.")


@strawberry.type(description="A lesson's topic set, changed or removed.")
class LessonTopicEvent(DiaryEvent):
    topic: str | None = strawberry.field(description="The topic now; null once removed.")


@strawberry.type(description="A lesson of the timetable as families see it when it changes.")
class ChangedLesson:
    id: strawberry.ID
    date: date
    number: int = strawberry.field(description="Lesson number in the bell schedule.")
    subject: Subject
    teacher: Teacher
    room: str | None
    status: LessonStatus
    status_comment: str | None
    replacement: LessonReplacement | None = strawberry.field(
        description="Only for replaced lessons."
    )
    topic: str | None


@strawberry.type(
    description=(
        "A lesson cancelled, replaced, moved to another room or time, its status comment "
        "changed, or removed from the timetable."
    )
)
class LessonEvent(DiaryEvent):
    lesson: ChangedLesson | None = strawberry.field(
        description="The lesson now; null once removed."
    )


@strawberry.type(description="A period, year or exam mark set, changed or removed.")
class FinalMarkEvent(DiaryEvent):
    final_mark_id: strawberry.ID
    final_mark: FinalMark | None = strawberry.field(description="The mark now; null once removed.")


EVENT_TYPES = (
    MarkEvent,
    AttendanceEvent,
    HomeworkEvent,
    LessonTopicEvent,
    LessonEvent,
    FinalMarkEvent,
)


@strawberry.type(description="A page of the viewer's diary changes after a cursor.")
class DiaryChanges:
    events: list[DiaryEvent] = strawberry.field(
        description="Oldest first; at most `first` of them.",
        metadata=sized(200),  # `first` is at most 200 (the cost assumes a full page)
    )
    cursor: ChangeCursor = strawberry.field(
        description="Where the next page starts: pass it as `since` (also when `events` is empty)."
    )
    has_more: bool = strawberry.field(
        description="More changes are already waiting: ask again at once with `cursor`."
    )

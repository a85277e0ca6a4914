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
from resolvers.common.types import Subject, Teacher, described_value
from resolvers.diary.types import (
    Attendance,
    FinalMark,
    Homework,
    LessonReplacement,
    LessonStatus,
    Mark,
    timetable_field,
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
    ADDED = described_value(
        "added",
        description="The row was written, or moved here from another student or class.",
    )
    CHANGED = described_value("changed", description="The row was changed in place.")
    REMOVED = described_value(
        "removed",
        description=(
            "The row was deleted, or moved to another student or class: this diary no "
            "longer shows it."
        ),
    )


@strawberry.interface(description="A change to what a student's diary shows.")
class DiaryEvent:
    cursor: ChangeCursor = strawberry.field(
        description="This event's position: resume after it with `since`."
    )
    at: datetime = strawberry.field(description="When the change was written.")
    action: ChangeAction = strawberry.field(
        description="Whether the row was added, changed or removed (see each event type)."
    )
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
    action: ChangeAction = strawberry.field(
        description=(
            "ADDED: a mark given; CHANGED: anything of it (value, weight, comment…); "
            "REMOVED: the mark deleted. A mark moved to another student: see ChangeAction."
        )
    )
    mark_id: strawberry.ID = strawberry.field(
        description="The mark's id (`Mark.id`), also once it is removed."
    )
    mark: Mark | None = strawberry.field(description="The mark now; null once removed.")


@strawberry.type(description="An attendance record made, corrected or removed.")
class AttendanceEvent(DiaryEvent):
    action: ChangeAction = strawberry.field(
        description=(
            "ADDED: a record made; CHANGED: anything of it corrected (code, minutes late, "
            "comment…); REMOVED: the record deleted (the student is then present)."
        )
    )
    attendance_id: strawberry.ID = strawberry.field(
        description="The record's id (`Attendance.id`), also once it is removed."
    )
    attendance: Attendance | None = strawberry.field(
        description="The record now; null once removed (the student is then marked present)."
    )


@strawberry.type(description="Homework given, changed (its text, dates or attachments) or removed.")
class HomeworkEvent(DiaryEvent):
    action: ChangeAction = strawberry.field(
        description=(
            "ADDED: homework given; CHANGED: anything of it (text, dates, attachments…); "
            "REMOVED: the homework deleted. Homework moved to another class: see ChangeAction."
        )
    )
    homework_id: strawberry.ID = strawberry.field(
        description="The homework's id (`Homework.id`), also once it is removed."
    )
    homework: Homework | None = strawberry.field(description="The homework now; null once removed.")


@strawberry.type(description="A lesson's topic set, changed or removed.")
class LessonTopicEvent(DiaryEvent):
    action: ChangeAction = strawberry.field(
        description=(
            "ADDED: a topic set where there was none; CHANGED: the topic changed; REMOVED: "
            "the topic cleared. The lesson is `lessonId`."
        )
    )
    topic: str | None = strawberry.field(description="The topic now; null once removed.")


@strawberry.type(description="A lesson of the timetable as families see it when it changes.")
class ChangedLesson:
    id: strawberry.ID = strawberry.field(description="The lesson's id (`Lesson.id`).")
    date: date = strawberry.field(description="The day of the lesson (it may have been moved).")
    number: int = timetable_field("number")
    subject: Subject = timetable_field("subject")
    teacher: Teacher = timetable_field("teacher")
    room: str | None = timetable_field("room")
    status: LessonStatus = timetable_field("status")
    status_comment: str | None = timetable_field("status_comment")
    replacement: LessonReplacement | None = timetable_field("replacement")
    topic: str | None = timetable_field("topic")


@strawberry.type(
    description=(
        "A lesson cancelled, replaced, moved to another room or time, its status comment "
        "changed, or removed from the timetable."
    )
)
class LessonEvent(DiaryEvent):
    action: ChangeAction = strawberry.field(
        description=(
            "CHANGED: its status, status comment, replacement, room, date or number changed; "
            "REMOVED: deleted or moved to another class; ADDED: moved here from another "
            "class (lessons newly put in the timetable give no event)."
        )
    )
    lesson: ChangedLesson | None = strawberry.field(
        description="The lesson now; null once removed."
    )


@strawberry.type(description="A period, year or exam mark set, changed or removed.")
class FinalMarkEvent(DiaryEvent):
    action: ChangeAction = strawberry.field(
        description=(
            "ADDED: a mark set; CHANGED: anything of it (value…); REMOVED: the mark deleted."
        )
    )
    final_mark_id: strawberry.ID = strawberry.field(
        description="The final mark's id (`FinalMark.id`), also once it is removed."
    )
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

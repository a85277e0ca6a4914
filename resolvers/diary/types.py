"""Plain GraphQL object types of the diary: every field is an attribute, no resolvers.

Loaders build these from rows (see `resolvers.diary.rows`); nested data a client shows with
an item (a mark's subject, work type and lesson) is already joined in SQL. List sizes (for
the cost estimate) and the diary parts a field needs loaded are declared on the fields
(`resolvers.common.fields`).
"""

from __future__ import annotations

import enum
from datetime import date, datetime, time

import strawberry

from resolvers.common.fields import loads, sized
from resolvers.common.types import PeriodScheme, Subject, Teacher, WorkType


class DiaryPart(enum.Enum):
    """What `Student.diary` loads, each in one batched statement, only when selected."""

    LESSONS = "lessons"
    MARKS = "marks"
    ATTENDANCE = "attendance"
    HOMEWORK = "homework"


@strawberry.enum(description="Status of a lesson in the timetable.")
class LessonStatus(enum.Enum):
    HELD = "held"
    CANCELLED = "cancelled"
    REPLACED = "replaced"


@strawberry.enum(description="Kind of final mark.")
class FinalMarkKind(enum.Enum):
    PERIOD = "period"
    YEAR = "year"
    EXAM = "exam"


@strawberry.enum(
    description="Kind of attendance record; the original journal code is in the `code` field."
)
class AttendanceKind(enum.Enum):
    ABSENT = "absent"
    ILL = "ill"
    EXCUSED = "excused"
    LATE = "late"


@strawberry.type(description="The lesson a record belongs to: date, number, topic.")
class LessonSummary:
    id: strawberry.ID
    date: date
    number: int
    topic: str | None


@strawberry.type(description="A current mark and what it was given for.")
class Mark:
    id: strawberry.ID
    value: str = strawberry.field(
        description="The mark as in the journal: «5», «4-», «зачёт», «осв»."
    )
    numeric_value: float | None = strawberry.field(
        description="Numeric value; null for marks without a number (зачёт, осв)."
    )
    work_type: WorkType
    weight: float = strawberry.field(description="Weight of this mark in the weighted average.")
    work_title: str | None = strawberry.field(
        description="What the mark is for: the title of the work."
    )
    comment: str | None
    date: date
    counts_in_average: bool = strawberry.field(
        description="The teacher counts this mark in the average."
    )
    subject: Subject
    lesson: LessonSummary
    created_at: datetime
    updated_at: datetime


@strawberry.type(description="A homework attachment: a link.")
class Attachment:
    title: str
    url: str


@strawberry.type(description="A homework assignment.")
class Homework:
    id: strawberry.ID
    text: str
    assigned_on: date = strawberry.field(description="When it was assigned (the lesson date).")
    due_on: date = strawberry.field(description="The day it is due.")
    subject: Subject
    attachments: list[Attachment] = strawberry.field(metadata=sized(3))
    lesson_id: strawberry.ID = strawberry.field(description="The lesson it was assigned in.")
    updated_at: datetime


@strawberry.type(description="The student's attendance record for a lesson.")
class Attendance:
    id: strawberry.ID
    date: date
    lesson_id: strawberry.ID
    lesson_number: int
    subject: Subject
    code: str = strawberry.field(description="The code as in the journal: Н, Б, У, П, О, ОП.")
    kind: AttendanceKind
    minutes_late: int | None = strawberry.field(description="Minutes late (for О and ОП).")
    comment: str | None
    updated_at: datetime


@strawberry.type(description="A lesson replacement: what is actually taught and by whom.")
class LessonReplacement:
    subject: Subject = strawberry.field(
        description="The subject taught instead of the scheduled one (or the same one)."
    )
    teacher: Teacher = strawberry.field(
        description="The teacher who teaches the lesson (the substitute or the same one)."
    )


@strawberry.type(description="A timetable lesson with its topic, homework, marks and attendance.")
class Lesson:
    id: strawberry.ID
    date: date
    number: int = strawberry.field(description="Lesson number in the bell schedule.")
    starts_at: time | None
    ends_at: time | None
    subject: Subject
    teacher: Teacher
    room: str | None
    status: LessonStatus
    status_comment: str | None
    replacement: LessonReplacement | None = strawberry.field(
        description="Only for replaced lessons."
    )
    topic: str | None
    homework: list[Homework] = strawberry.field(
        description="Homework assigned in this lesson.",
        metadata=sized(2) | loads(DiaryPart.HOMEWORK),
    )
    marks: list[Mark] = strawberry.field(
        description="The student's marks for this lesson.",
        metadata=sized(2) | loads(DiaryPart.MARKS),
    )
    attendance: Attendance | None = strawberry.field(
        description="The student's attendance record for this lesson (null means present).",
        metadata=loads(DiaryPart.ATTENDANCE),
    )
    updated_at: datetime


@strawberry.type(description="A diary day.")
class DiaryDay:
    date: date
    lessons: list[Lesson] = strawberry.field(metadata=sized(8) | loads(DiaryPart.LESSONS))
    homework_due: list[Homework] = strawberry.field(
        description="Homework due on this day.", metadata=sized(8) | loads(DiaryPart.HOMEWORK)
    )


@strawberry.type(description="The student's diary for a date range (inclusive).")
class Diary:
    from_: date = strawberry.field(name="from")
    to: date
    days: list[DiaryDay] = strawberry.field(
        description="Every calendar day of the range.",
        metadata=sized(7, per_day=1) | loads(DiaryPart.LESSONS),
    )
    lessons: list[Lesson] = strawberry.field(
        metadata=sized(56, per_day=8) | loads(DiaryPart.LESSONS)
    )
    homework: list[Homework] = strawberry.field(
        description="Homework due within this range.",
        metadata=sized(56, per_day=8) | loads(DiaryPart.HOMEWORK),
    )
    marks: list[Mark] = strawberry.field(metadata=sized(56, per_day=8) | loads(DiaryPart.MARKS))
    attendance: list[Attendance] = strawberry.field(
        metadata=sized(56, per_day=8) | loads(DiaryPart.ATTENDANCE)
    )
    last_updated_at: datetime | None = strawberry.field(
        description="When anything shown for this range last changed.",
        metadata=loads(*DiaryPart),
    )


@strawberry.type(description="A school period (quarter, half-year, trimester).")
class Period:
    id: strawberry.ID
    number: int
    title: str
    scheme: PeriodScheme
    starts_on: date
    ends_on: date
    year_title: str = strawberry.field(description="School year, e.g. «2026/2027».")
    is_current: bool = strawberry.field(description="Today falls within the period.")


@strawberry.type(description="A reference to a school period.")
class PeriodRef:
    id: strawberry.ID
    title: str


@strawberry.type(description="A final mark: for a period, for the year, or for an exam.")
class FinalMark:
    id: strawberry.ID
    kind: FinalMarkKind
    subject: Subject
    period: PeriodRef | None = strawberry.field(description="Only for period marks.")
    year_title: str
    value: str
    numeric_value: float | None
    updated_at: datetime


@strawberry.enum(description="Why a mark is or is not counted in the average.")
class ContributionReason(enum.Enum):
    COUNTED = "counted"
    NOT_COUNTED_BY_TEACHER = "not_counted_by_teacher"
    NO_NUMERIC_VALUE = "no_numeric_value"
    ZERO_WEIGHT = "zero_weight"


@strawberry.type(description="The contribution of one mark to the weighted average.")
class AverageContribution:
    mark: Mark
    counted: bool
    weight: float
    numeric_value: float | None
    reason: ContributionReason


@strawberry.type(description="Weighted average for a subject: Σ(weight·mark) / Σ(weight).")
class SubjectAverage:
    subject: Subject
    weighted_average: float | None = strawberry.field(
        description="Rounded to hundredths; null if no marks are counted."
    )
    weight_sum: float
    marks_counted: int
    contributions: list[AverageContribution] = strawberry.field(
        description=(
            "Every mark for the subject in the window: whether it is counted, "
            "with what weight and why."
        ),
        # Marks of one subject in the averaging window: at most 3 a week.
        metadata=sized(80, per_day=3 / 7),
    )

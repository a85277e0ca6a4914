"""Plain GraphQL object types of the diary: every field is an attribute, no resolvers.

Loaders build these from rows (see `resolvers.diary.rows`); nested data a client shows with
an item (a mark's subject, work type and lesson) is already joined in SQL. List sizes (for
the cost estimate) and the diary parts a field needs loaded are declared on the fields
(`resolvers.common.fields`).
"""

from __future__ import annotations

import enum
from datetime import date, datetime, time
from typing import Any, Final

import strawberry

from resolvers.common.fields import loads, sized
from resolvers.common.types import PeriodScheme, Subject, Teacher, WorkType, described_value


class DiaryPart(enum.Enum):
    """What `Student.diary` loads, each in one batched statement, only when selected."""

    LESSONS = "lessons"
    MARKS = "marks"
    ATTENDANCE = "attendance"
    HOMEWORK = "homework"


@strawberry.enum(description="Status of a lesson in the timetable.")
class LessonStatus(enum.Enum):
    HELD = described_value(
        "held",
        description=(
            "Takes (or took) place as scheduled: the status of every lesson, upcoming ones "
            "included, that is neither cancelled nor replaced."
        ),
    )
    CANCELLED = described_value(
        "cancelled", description="Cancelled: `statusComment` usually says why."
    )
    REPLACED = described_value(
        "replaced",
        description="Replaced: another teacher or another subject, as `replacement` says.",
    )


@strawberry.enum(description="Kind of final mark.")
class FinalMarkKind(enum.Enum):
    PERIOD = described_value(
        "period",
        description="For a period (quarter, half-year or trimester), named by `period`.",
    )
    YEAR = described_value("year", description="For the whole school year.")
    EXAM = described_value("exam", description="For an exam (attestation).")


@strawberry.enum(
    description="Kind of attendance record; the original journal code is in the `code` field."
)
class AttendanceKind(enum.Enum):
    ABSENT = described_value("absent", description="Absent, no reason given (code Н).")
    ILL = described_value("ill", description="Absent through illness (code Б).")
    EXCUSED = described_value(
        "excused",
        description=(
            "Absent for a valid reason (code У, e.g. a competition) or at the parents' "
            "request (code П)."
        ),
    )
    LATE = described_value(
        "late",
        description="Late (code О; ОП: late for a valid reason); `minutesLate` says how late.",
    )


@strawberry.type(description="The lesson a record belongs to: date, number, topic.")
class LessonSummary:
    id: strawberry.ID = strawberry.field(description="The lesson's id (`Lesson.id`).")
    date: date = strawberry.field(description="The lesson's date.")
    number: int = strawberry.field(description="Lesson number in the bell schedule.")
    topic: str | None = strawberry.field(
        description="The lesson's topic; null while the teacher has entered none."
    )


@strawberry.type(description="A current mark and what it was given for.")
class Mark:
    id: strawberry.ID = strawberry.field(description="The mark's id in the school journal.")
    value: str = strawberry.field(
        description="The mark as in the journal: «5», «4-», «зачёт», «осв»."
    )
    numeric_value: float | None = strawberry.field(
        description="Numeric value; null for marks without a number (зачёт, осв)."
    )
    work_type: WorkType = strawberry.field(
        description="The kind of work the mark is for, with its default weight."
    )
    weight: float = strawberry.field(description="Weight of this mark in the weighted average.")
    work_title: str | None = strawberry.field(
        description="What the mark is for: the title of the work."
    )
    comment: str | None = strawberry.field(
        description="The teacher's comment on the mark; null if none."
    )
    date: date = strawberry.field(
        description="The date of the lesson the mark was given at (not when it was entered)."
    )
    counts_in_average: bool = strawberry.field(
        description="The teacher counts this mark in the average."
    )
    subject: Subject = strawberry.field(
        description="The subject of the lesson the mark was given at."
    )
    lesson: LessonSummary = strawberry.field(
        description="The lesson the mark was given at: its date, number and topic."
    )
    created_at: datetime = strawberry.field(description="When the mark was entered in the journal.")
    updated_at: datetime = strawberry.field(
        description="When the mark was last changed in the journal."
    )


@strawberry.type(description="A homework attachment: a link.")
class Attachment:
    title: str = strawberry.field(description="The link's title as the teacher gave it.")
    url: str = strawberry.field(description="The link's address (URL).")


@strawberry.type(description="A homework assignment.")
class Homework:
    id: strawberry.ID = strawberry.field(description="The assignment's id in the school journal.")
    text: str = strawberry.field(description="The assignment as the teacher wrote it.")
    assigned_on: date = strawberry.field(description="When it was assigned (the lesson date).")
    due_on: date = strawberry.field(description="The day it is due.")
    subject: Subject = strawberry.field(description="The subject it was given in.")
    attachments: list[Attachment] = strawberry.field(
        description="Links attached to the assignment, in the journal's order; often none.",
        metadata=sized(3),
    )
    lesson_id: strawberry.ID = strawberry.field(description="The lesson it was assigned in.")
    updated_at: datetime = strawberry.field(
        description="When the assignment was last changed in the journal."
    )


@strawberry.type(description="The student's attendance record for a lesson.")
class Attendance:
    id: strawberry.ID = strawberry.field(description="The record's id in the school journal.")
    date: date = strawberry.field(description="The lesson's date.")
    lesson_id: strawberry.ID = strawberry.field(
        description="The lesson the record is for (`Lesson.id`)."
    )
    lesson_number: int = strawberry.field(description="The lesson's number in the bell schedule.")
    subject: Subject = strawberry.field(description="The lesson's subject.")
    code: str = strawberry.field(description="The code as in the journal: Н, Б, У, П, О, ОП.")
    kind: AttendanceKind = strawberry.field(
        description="What the code means: Н ABSENT, Б ILL, У and П EXCUSED, О and ОП LATE."
    )
    minutes_late: int | None = strawberry.field(description="Minutes late (for О and ОП).")
    comment: str | None = strawberry.field(
        description="The teacher's comment, e.g. the reason given; null if none."
    )
    updated_at: datetime = strawberry.field(
        description="When the record was last changed in the journal."
    )


@strawberry.type(description="A lesson replacement: what is actually taught and by whom.")
class LessonReplacement:
    subject: Subject = strawberry.field(
        description="The subject taught instead of the scheduled one (or the same one)."
    )
    teacher: Teacher = strawberry.field(
        description="The teacher who teaches the lesson (the substitute or the same one)."
    )


# A lesson of the timetable, field by field: described once for Lesson and for the change
# feed's ChangedLesson (resolvers.changes.types).
_TIMETABLE_FIELDS: Final[dict[str, str]] = {
    "number": "Lesson number in the bell schedule.",
    "subject": "The scheduled subject; what a replaced lesson teaches is in `replacement`.",
    "teacher": "The scheduled teacher; who teaches a replaced lesson is in `replacement`.",
    "room": "The room as the timetable gives it; null when none is given.",
    "status": "Held, cancelled or replaced.",
    "status_comment": "The school's note on the status (e.g. why it was cancelled); null if none.",
    "replacement": "Only for replaced lessons.",
    "topic": "The lesson's topic; null while the teacher has entered none.",
}


def timetable_field(name: str) -> Any:
    """The strawberry field of a lesson's timetable attribute `name`, with its description."""
    return strawberry.field(description=_TIMETABLE_FIELDS[name])


@strawberry.type(description="A timetable lesson with its topic, homework, marks and attendance.")
class Lesson:
    id: strawberry.ID = strawberry.field(
        description=(
            "The lesson's id in the school journal: the class's lesson, the same for every "
            "student of the class (a client cache keying lessons by id alone mixes up "
            "two children's marks and attendance)."
        )
    )
    date: date = strawberry.field(description="The day of the lesson.")
    number: int = timetable_field("number")
    starts_at: time | None = strawberry.field(
        description=(
            "When it starts, from the school's bell schedule (school-local time); null when "
            "the schedule has no time for this lesson number."
        )
    )
    ends_at: time | None = strawberry.field(
        description=(
            "When it ends, from the school's bell schedule (school-local time); null when "
            "the schedule has no time for this lesson number."
        )
    )
    subject: Subject = timetable_field("subject")
    teacher: Teacher = timetable_field("teacher")
    room: str | None = timetable_field("room")
    status: LessonStatus = timetable_field("status")
    status_comment: str | None = timetable_field("status_comment")
    replacement: LessonReplacement | None = timetable_field("replacement")
    topic: str | None = timetable_field("topic")
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
    updated_at: datetime = strawberry.field(
        description=(
            "When the lesson or its topic was last changed in the journal (its marks, "
            "homework and attendance have their own)."
        )
    )


@strawberry.type(description="A diary day.")
class DiaryDay:
    date: date = strawberry.field(description="The day.")
    lessons: list[Lesson] = strawberry.field(
        description="The day's lessons by number; empty on a day without lessons.",
        metadata=sized(8) | loads(DiaryPart.LESSONS),
    )
    homework_due: list[Homework] = strawberry.field(
        description="Homework due on this day.", metadata=sized(8) | loads(DiaryPart.HOMEWORK)
    )


@strawberry.type(description="The student's diary for a date range (inclusive).")
class Diary:
    from_: date = strawberry.field(
        name="from", description="First day of the range (inclusive), as given or defaulted."
    )
    to: date = strawberry.field(
        description="Last day of the range (inclusive), as given or defaulted."
    )
    days: list[DiaryDay] = strawberry.field(
        description="Every calendar day of the range.",
        metadata=sized(7, per_day=1) | loads(DiaryPart.LESSONS),
    )
    lessons: list[Lesson] = strawberry.field(
        description="Every lesson of the student's class in the range, by date and number.",
        metadata=sized(56, per_day=8) | loads(DiaryPart.LESSONS),
    )
    homework: list[Homework] = strawberry.field(
        description="Homework due within this range.",
        metadata=sized(56, per_day=8) | loads(DiaryPart.HOMEWORK),
    )
    marks: list[Mark] = strawberry.field(
        description="The student's marks for lessons in the range, oldest first.",
        metadata=sized(56, per_day=8) | loads(DiaryPart.MARKS),
    )
    attendance: list[Attendance] = strawberry.field(
        description=(
            "The student's attendance records in the range, by date and lesson; a lesson "
            "without one means present."
        ),
        metadata=sized(56, per_day=8) | loads(DiaryPart.ATTENDANCE),
    )
    last_updated_at: datetime | None = strawberry.field(
        description="When anything shown for this range last changed.",
        metadata=loads(*DiaryPart),
    )


@strawberry.type(description="A school period (quarter, half-year, trimester).")
class Period:
    id: strawberry.ID = strawberry.field(
        description="The period's id (e.g. for `averages(periodId:)`)."
    )
    number: int = strawberry.field(
        description=(
            "Its number in the year's scheme: quarters 1–4, half-years 1–2, trimesters 1–3."
        )
    )
    title: str = strawberry.field(description="As the school names it, e.g. «1 четверть».")
    scheme: PeriodScheme = strawberry.field(
        description="Quarters, half-years or trimesters: the scheme of the student's class."
    )
    starts_on: date = strawberry.field(description="First day (inclusive).")
    ends_on: date = strawberry.field(description="Last day (inclusive).")
    year_title: str = strawberry.field(description="School year, e.g. «2026/2027».")
    is_current: bool = strawberry.field(description="Today falls within the period.")


@strawberry.type(description="A reference to a school period.")
class PeriodRef:
    id: strawberry.ID = strawberry.field(description="The period's id (`Period.id`).")
    title: str = strawberry.field(description="As the school names it, e.g. «1 четверть».")


@strawberry.type(description="A final mark: for a period, for the year, or for an exam.")
class FinalMark:
    id: strawberry.ID = strawberry.field(description="The final mark's id in the school journal.")
    kind: FinalMarkKind = strawberry.field(
        description="For a period, for the year, or for an exam."
    )
    subject: Subject = strawberry.field(description="The subject the mark is for.")
    period: PeriodRef | None = strawberry.field(description="Only for period marks.")
    year_title: str = strawberry.field(description="School year, e.g. «2026/2027».")
    value: str = strawberry.field(
        description=(
            "The mark as in the journal: «5», «зачёт», «н/а» (not assessed), «осв» (exempt)."
        )
    )
    numeric_value: float | None = strawberry.field(
        description="Numeric value; null for marks without a number (зачёт, н/а, осв)."
    )
    updated_at: datetime = strawberry.field(
        description="When the mark was last changed in the journal."
    )


@strawberry.enum(description="Why a mark is or is not counted in the average.")
class ContributionReason(enum.Enum):
    COUNTED = described_value(
        "counted",
        description=(
            "Counted: the teacher counts it, it has a numeric value and its weight is positive."
        ),
    )
    NOT_COUNTED_BY_TEACHER = described_value(
        "not_counted_by_teacher",
        description=(
            "Left out: the teacher does not count it in the average (`countsInAverage` false; "
            "checked first)."
        ),
    )
    NO_NUMERIC_VALUE = described_value(
        "no_numeric_value", description="Left out: the mark has no number (зачёт, осв)."
    )
    ZERO_WEIGHT = described_value("zero_weight", description="Left out: the mark's weight is 0.")


@strawberry.type(description="The contribution of one mark to the weighted average.")
class AverageContribution:
    mark: Mark = strawberry.field(description="The mark.")
    counted: bool = strawberry.field(
        description="Whether it is part of the average (`reason` is COUNTED)."
    )
    weight: float = strawberry.field(
        description="The mark's own weight (the work type's default unless the teacher changed it)."
    )
    numeric_value: float | None = strawberry.field(
        description="The mark's numeric value; null for marks without a number."
    )
    reason: ContributionReason = strawberry.field(description="Why the mark is or is not counted.")


@strawberry.type(description="Weighted average for a subject: Σ(weight·mark) / Σ(weight).")
class SubjectAverage:
    subject: Subject = strawberry.field(description="The subject.")
    weighted_average: float | None = strawberry.field(
        description="Rounded to hundredths; null if no marks are counted."
    )
    weight_sum: float = strawberry.field(
        description="Σ(weight) of the counted marks; 0 when none is counted."
    )
    marks_counted: int = strawberry.field(description="How many marks are counted.")
    contributions: list[AverageContribution] = strawberry.field(
        description=(
            "Every mark for the subject in the window: whether it is counted, "
            "with what weight and why."
        ),
        # Marks of one subject in the averaging window: at most 3 a week.
        metadata=sized(80, per_day=3 / 7),
    )

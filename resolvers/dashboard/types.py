"""GraphQL types of the school IT dashboard (resolvers.dashboard.queries builds them from rows).

Personal data on these types, by design: a school admin maintains their own school's
parent registry, so findings carry the record's id and full name (to find and fix it),
but SNILS and phone only masked (`***-***-789 64`, `+7912***01`: enough to compare with
the paper form, useless to anyone else), never a birth date. For a parent found in other
schools' registries (a merged account) only those schools' ids and which fields differ
are shown, never the other schools' values.
"""

from __future__ import annotations

import enum
from datetime import datetime

import strawberry

from resolvers.common.fields import sized
from resolvers.common.types import SchoolClass, Subject, Teacher, described_value


@strawberry.enum(description="Sort key of the journal completeness rows.")
class JournalSortField(enum.Enum):
    TEACHER = described_value("teacher", description="By the teacher's name.")
    CLASS = described_value("class", description="By the class: grade, then letter.")
    SUBJECT = described_value("subject", description="By the subject's name.")
    LESSONS_HELD = described_value("lessons_held", description="By `lessonsHeld`.")
    LESSONS_WITH_TOPIC = described_value("lessons_with_topic", description="By `lessonsWithTopic`.")
    LESSONS_WITH_ATTENDANCE = described_value(
        "lessons_with_attendance", description="By `lessonsWithAttendance`."
    )
    LESSONS_WITH_HOMEWORK = described_value(
        "lessons_with_homework", description="By `lessonsWithHomework`."
    )
    LESSONS_WITH_MARKS = described_value("lessons_with_marks", description="By `lessonsWithMarks`.")
    PAST_LESSONS_EMPTY = described_value(
        "past_lessons_empty", description="By `pastLessonsEmpty` (the default)."
    )
    LAST_ENTRY_AT = described_value(
        "last_entry_at",
        description="By `lastEntryAt`; a row without any entry sorts as the oldest.",
    )


@strawberry.enum(description="Sort direction.")
class SortDirection(enum.Enum):
    ASC = described_value(
        "asc",
        description="Ascending: smallest count or oldest time first; names by Unicode code point.",
    )
    DESC = described_value(
        "desc",
        description="Descending: largest count or newest time first; names by Unicode code point.",
    )


@strawberry.type(description="Journal fill-in figures (of one group, or the totals).")
class JournalFigures:
    lessons_held: int = strawberry.field(
        description="Lessons in the window up to today that were not cancelled."
    )
    lessons_with_topic: int = strawberry.field(description="Held lessons with a topic.")
    lessons_with_attendance: int = strawberry.field(
        description=(
            "Held lessons with attendance taken: at least one attendance record (the "
            "journal records absences and lateness only; it has no explicit marker)."
        )
    )
    lessons_with_homework: int = strawberry.field(description="Held lessons with homework.")
    lessons_with_marks: int = strawberry.field(description="Held lessons with at least one mark.")
    past_lessons_empty: int = strawberry.field(
        description="Held lessons before today with no topic, no attendance and no marks."
    )
    last_entry_at: datetime | None = strawberry.field(
        description="Latest change of a topic, attendance record, homework or mark."
    )


@strawberry.type(description="Journal completeness of one teacher's subject in one class.")
class JournalCompletenessRow(JournalFigures):
    teacher: Teacher = strawberry.field(
        description="Who taught the lessons (for a replaced lesson, the replacement teacher)."
    )
    school_class: SchoolClass = strawberry.field(description="The class the lessons were for.")
    subject: Subject = strawberry.field(
        description="The subject taught (for a replaced lesson, the replacement subject)."
    )


@strawberry.type(description="Journal completeness totals over every row.")
class JournalTotals(JournalFigures):
    rows: int = strawberry.field(description="Number of (teacher, class, subject) rows.")


@strawberry.type(description="Is the class journal filled in: per teacher, class and subject.")
class JournalCompleteness:
    # A school's teacher × class × subject rows.
    rows: list[JournalCompletenessRow] = strawberry.field(
        description=(
            "One row per teacher, class and subject with at least one held lesson in the "
            "window, in the requested order."
        ),
        metadata=sized(300),
    )
    totals: JournalTotals = strawberry.field(
        description="Sums over every row; `lastEntryAt` is the latest of the rows'."
    )


@strawberry.enum(description="A data-quality problem of a parent registry record.")
class RegistryIssue(enum.Enum):
    NO_SNILS = described_value("no_snils", description="The SNILS is missing or blank.")
    INVALID_SNILS = described_value(
        "invalid_snils",
        description=(
            "The SNILS is malformed or fails the checksum (spaces and dashes are ignored)."
        ),
    )
    NO_PHONE = described_value("no_phone", description="The phone is missing or blank.")
    MERGED_DATA_DIFFERS = described_value(
        "merged_data_differs",
        description=(
            "The SNILS (stored as 11 digits) is also in other schools' registries (one merged "
            "account), and a record there has a different last, first or patronymic name, "
            "birth date or phone (compared as stored): see `differingFields`."
        ),
    )


@strawberry.enum(description="A personal data field of a registry record.")
class PersonField(enum.Enum):
    LAST_NAME = described_value("last_name", description="The last name.")
    FIRST_NAME = described_value("first_name", description="The first name.")
    PATRONYMIC = described_value("patronymic", description="The patronymic.")
    BIRTH_DATE = described_value("birth_date", description="The birth date.")
    PHONE = described_value("phone", description="The phone number.")


@strawberry.type(description="A parent registry record of this school with problems.")
class RegistryParentFinding:
    id: strawberry.ID = strawberry.field(description="The parent record's id in the registry.")
    full_name: str = strawberry.field(
        description="Last, first and patronymic name as in the record (missing parts left out)."
    )
    masked_snils: str | None = strawberry.field(
        description="The SNILS as «***-***-789 64» («***» when malformed); null when missing."
    )
    masked_phone: str | None = strawberry.field(
        description="The phone as «+7912***01»; null when missing."
    )
    children_count: int = strawberry.field(description="Students linked to this record.")
    issues: list[RegistryIssue] = strawberry.field(
        description="The record's problems (at least one).", metadata=sized(50)
    )
    other_school_ids: list[strawberry.ID] = strawberry.field(
        description="Other schools whose registries hold the same SNILS (a merged account).",
        metadata=sized(50),
    )
    differing_fields: list[PersonField] = strawberry.field(
        description="Fields whose value differs in another school's record of the same SNILS.",
        metadata=sized(50),
    )


@strawberry.type(description="A student of this school without any linked parent record.")
class UnlinkedStudent:
    id: strawberry.ID = strawberry.field(description="The student's id.")
    full_name: str = strawberry.field(
        description="Last, first and patronymic name (missing parts left out)."
    )
    school_class: SchoolClass = strawberry.field(description="The student's class.")

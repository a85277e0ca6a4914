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
from resolvers.common.types import SchoolClass, Subject, Teacher


@strawberry.enum(description="Sort key of the journal completeness rows.")
class JournalSortField(enum.Enum):
    TEACHER = "teacher"
    CLASS = "class"
    SUBJECT = "subject"
    LESSONS_HELD = "lessons_held"
    LESSONS_WITH_TOPIC = "lessons_with_topic"
    LESSONS_WITH_ATTENDANCE = "lessons_with_attendance"
    LESSONS_WITH_HOMEWORK = "lessons_with_homework"
    LESSONS_WITH_MARKS = "lessons_with_marks"
    PAST_LESSONS_EMPTY = "past_lessons_empty"
    LAST_ENTRY_AT = "last_entry_at"


@strawberry.enum(description="Sort direction.")
class SortDirection(enum.Enum):
    ASC = "asc"
    DESC = "desc"


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
    school_class: SchoolClass
    subject: Subject = strawberry.field(
        description="The subject taught (for a replaced lesson, the replacement subject)."
    )


@strawberry.type(description="Journal completeness totals over every row.")
class JournalTotals(JournalFigures):
    rows: int = strawberry.field(description="Number of (teacher, class, subject) rows.")


@strawberry.type(description="Is the class journal filled in: per teacher, class and subject.")
class JournalCompleteness:
    # A school's teacher × class × subject rows.
    rows: list[JournalCompletenessRow] = strawberry.field(metadata=sized(300))
    totals: JournalTotals


@strawberry.enum(description="A data-quality problem of a parent registry record.")
class RegistryIssue(enum.Enum):
    NO_SNILS = "no_snils"
    INVALID_SNILS = "invalid_snils"
    NO_PHONE = "no_phone"
    MERGED_DATA_DIFFERS = "merged_data_differs"


@strawberry.enum(description="A personal data field of a registry record.")
class PersonField(enum.Enum):
    LAST_NAME = "last_name"
    FIRST_NAME = "first_name"
    PATRONYMIC = "patronymic"
    BIRTH_DATE = "birth_date"
    PHONE = "phone"


@strawberry.type(description="A parent registry record of this school with problems.")
class RegistryParentFinding:
    id: strawberry.ID = strawberry.field(description="The parent record's id in the registry.")
    full_name: str
    masked_snils: str | None = strawberry.field(
        description="The SNILS as «***-***-789 64» («***» when malformed); null when missing."
    )
    masked_phone: str | None = strawberry.field(
        description="The phone as «+7912***01»; null when missing."
    )
    children_count: int = strawberry.field(description="Students linked to this record.")
    issues: list[RegistryIssue] = strawberry.field(metadata=sized(50))
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
    id: strawberry.ID
    full_name: str
    school_class: SchoolClass

"""Who is asking and whose diary they see: `viewer`, `myChildren`, `student(id)`, Student.

Resolvers are plain functions bound with `strawberry.field(resolver=...)`; each one is
thin: it validates arguments and asks the request's loaders.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

import strawberry

from auth.permissions import (
    CanSeeStudent,
    IsAuthenticated,
    IsFamilyMember,
    parse_int_id,
    requires,
)
from auth.viewer import Role
from resolvers.common.arguments import (
    MAX_PAGE_SIZE,
    MAX_YEAR_DAYS,
    check_open_window,
    check_page_size,
    diary_window,
)
from resolvers.common.fields import cacheable, sized, window
from resolvers.common.types import School, SchoolClass
from resolvers.context import Context
from resolvers.diary.averages import averages_window, subject_averages
from resolvers.diary.builder import load_diary, parts_for
from resolvers.diary.rows import StudentRecord
from resolvers.diary.sql import MarksFilter, StudentRange
from resolvers.diary.types import (
    Diary,
    FinalMark,
    FinalMarkKind,
    Mark,
    Period,
    SubjectAverage,
)

Info = strawberry.Info[Context, None]
DEFAULT_PAGE_SIZE = 100

_FROM = strawberry.argument(name="from", description="First day (inclusive).")
_TO = strawberry.argument(description="Last day (inclusive).")
FromArg = Annotated[date | None, _FROM]
ToArg = Annotated[date | None, _TO]
KindArg = Annotated[
    FinalMarkKind | None,
    strawberry.argument(description="Only final marks of this kind; default: every kind."),
]
PeriodIdArg = Annotated[
    strawberry.ID | None,
    strawberry.argument(
        description=(
            "One of the student's periods (`Period.id`): the average over its dates; not "
            "together with from/to. An id not among the student's periods is NOT_FOUND."
        )
    ),
]
SubjectIdArg = Annotated[
    strawberry.ID | None,
    strawberry.argument(
        description="Only marks in this subject (`Subject.id`); default: every subject."
    ),
]
FirstArg = Annotated[
    int,
    strawberry.argument(
        description=(
            f"How many marks at most, {DEFAULT_PAGE_SIZE} by default: 1–{MAX_PAGE_SIZE} "
            "(LIMIT_OUT_OF_RANGE outside)."
        )
    ),
]
StudentIdArg = Annotated[
    strawberry.ID,
    strawberry.argument(
        description=(
            "The student's id (`Student.id`, as `myChildren` gives it): one of the viewer's "
            "own children for a parent, their own id for a student; any other id is "
            "FORBIDDEN, whether or not it exists; one that is not a positive integer is "
            "BAD_USER_INPUT."
        )
    ),
]


async def resolve_diary(
    root: Student, info: Info, from_: FromArg = None, to: ToArg = None
) -> Diary:
    """The diary for a window: lessons with topics, homework, marks and attendance."""
    context = info.context
    date_from, date_to = diary_window(
        from_, to, today=context.today, max_days=context.settings.max_diary_days
    )
    key = StudentRange(root.student_id, date_from, date_to)
    return await load_diary(context.loaders, key=key, parts=parts_for(info))


async def resolve_periods(root: Student, info: Info) -> list[Period]:
    """The student's study periods, `isCurrent` relative to the request's today."""
    records = await info.context.loaders.periods_by_student.load(root.student_id)
    return [record.to_period(today=info.context.today) for record in records]


async def resolve_final_marks(root: Student, info: Info, kind: KindArg = None) -> list[FinalMark]:
    """Final marks of the current year, optionally of one kind."""
    marks = await info.context.loaders.final_marks_by_student.load(root.student_id)
    return [mark for mark in marks if kind is None or mark.kind is kind]


async def resolve_averages(
    root: Student,
    info: Info,
    period_id: PeriodIdArg = None,
    from_: FromArg = None,
    to: ToArg = None,
) -> list[SubjectAverage]:
    """Weighted averages per subject over a period or a window (default: current period)."""
    context = info.context
    parsed_period = None if period_id is None else parse_int_id(period_id, argument="periodId")
    periods = await context.loaders.periods_by_student.load(root.student_id)
    window = averages_window(
        periods=periods,
        period_id=parsed_period,
        date_from=from_,
        date_to=to,
        today=context.today,
    )
    if window is None:
        return []
    key = StudentRange(root.student_id, *window)
    return subject_averages(await context.loaders.marks_by_student_range.load(key))


async def resolve_marks(
    root: Student,
    info: Info,
    from_: FromArg = None,
    to: ToArg = None,
    subject_id: SubjectIdArg = None,
    first: FirstArg = DEFAULT_PAGE_SIZE,
) -> list[Mark]:
    """The newest marks matching the filter, at most `first`."""
    page_size = check_page_size(first)
    subject = None if subject_id is None else parse_int_id(subject_id, argument="subjectId")
    check_open_window(from_, to)
    key = MarksFilter(root.student_id, from_, to, subject, page_size)
    return await info.context.loaders.mark_page_by_filter.load(key)


async def resolve_last_updated_at(root: Student, info: Info) -> datetime | None:
    """When anything in the student's journal last changed."""
    return await info.context.loaders.last_updated_by_student.load(root.student_id)


async def resolve_viewer_schools(info: Info) -> list[School]:
    """The schools of the viewer's scope, by name (read only when selected)."""
    context = info.context
    viewer = context.require_viewer()
    if viewer.is_family:
        students = await _students(info, sorted(viewer.student_ids))
        found = {s.school.id: s.school for s in students if s is not None}
        return sorted(found.values(), key=lambda school: (school.name, int(school.id)))
    rows = await context.dashboard.administered_schools()
    return [
        School(
            id=strawberry.ID(str(row["id"])),
            name=row["name"],
            short_name=row["short_name"],
            municipality=row["municipality"],
        )
        for row in rows
    ]


@strawberry.type(name="Viewer", description="The current user.")
class ViewerType:
    id: strawberry.ID = strawberry.field(
        description=(
            "The viewer's account id (a UUID): a person's gateway account, or a machine "
            "client's client id."
        )
    )
    role: Role = strawberry.field(
        description="The viewer's role: it decides which fields they may ask for (`@roles`)."
    )
    display_name: str = strawberry.field(
        description=(
            "The name to show: the person's name as found at sign-in, or the machine "
            "client's registered name."
        )
    )
    schools: list[School] = strawberry.field(
        resolver=resolve_viewer_schools,
        description=(
            "The schools of the viewer's scope, by name: for a school admin (a person or a "
            "machine client) the schools they administer; for a parent the schools of their "
            "children; for a student their own school; for a regional analyst none (their "
            "scope is the region, read through regionalAnalytics)."
        ),
        metadata=sized(3),
    )


@strawberry.type(description="A student visible to the current user.")
class Student:
    student_id: strawberry.Private[int]
    id: strawberry.ID = strawberry.field(
        description="The student's id in the school journal (for `student(id:)`)."
    )
    last_name: str = strawberry.field(description="Last name, as in the school's register.")
    first_name: str = strawberry.field(description="First name, as in the school's register.")
    patronymic: str | None = strawberry.field(
        description="Patronymic, as in the school's register; null when there is none."
    )
    full_name: str = strawberry.field(description="Last name, first name and patronymic.")
    school: School = strawberry.field(description="The student's school.")
    school_class: SchoolClass = strawberry.field(
        description="The student's class in the current school year."
    )

    diary: Diary = strawberry.field(
        resolver=resolve_diary,
        extensions=requires(CanSeeStudent),
        description=(
            "Diary for a date range: by default the current week (Mon–Sun); "
            "with a single date, 7 days from (or up to) it."
        ),
        metadata=window(default_days=7, single_days=7),
    )
    periods: list[Period] = strawberry.field(
        resolver=resolve_periods,
        extensions=requires(CanSeeStudent),
        description="The student's school periods in the current school year.",
        metadata=sized(4),
    )
    final_marks: list[FinalMark] = strawberry.field(
        resolver=resolve_final_marks,
        extensions=requires(CanSeeStudent),
        description="Final marks of the current school year: period, year and exam marks.",
        metadata=sized(60),
    )
    averages: list[SubjectAverage] = strawberry.field(
        resolver=resolve_averages,
        extensions=requires(CanSeeStudent),
        description=(
            "Weighted averages by subject, with explanation: by default for the current "
            "period; or for period periodId, or for dates from–to (at most 366 days)."
        ),
        # The current period by default (a half-year at most), else up to a year.
        metadata=sized(20) | window(default_days=183, single_days=183, max_days=MAX_YEAR_DAYS),
    )
    marks: list[Mark] = strawberry.field(
        resolver=resolve_marks,
        extensions=requires(CanSeeStudent),
        description="Current marks, newest first; at most first (1–500) of them.",
    )
    last_updated_at: datetime | None = strawberry.field(
        resolver=resolve_last_updated_at,
        extensions=requires(CanSeeStudent),
        description=(
            "When the student's marks, attendance, final marks, lessons or homework last changed."
        ),
    )

    @classmethod
    def from_record(cls, record: StudentRecord) -> Student:
        """The GraphQL object of a loaded student."""
        names = (record.last_name, record.first_name, record.patronymic)
        return cls(
            student_id=record.id,
            id=strawberry.ID(str(record.id)),
            last_name=record.last_name,
            first_name=record.first_name,
            patronymic=record.patronymic,
            full_name=" ".join(name for name in names if name),
            school=record.school,
            school_class=record.school_class,
        )


async def _students(info: Info, student_ids: list[int]) -> list[Student | None]:
    records = await info.context.loaders.student_by_id.load_many(student_ids)
    return [None if record is None else Student.from_record(record) for record in records]


def resolve_viewer(info: Info) -> ViewerType | None:
    """The signed-in viewer."""
    viewer = info.context.require_viewer()
    return ViewerType(
        id=strawberry.ID(viewer.account_id), role=viewer.role, display_name=viewer.display_name
    )


async def resolve_my_children(info: Info) -> list[Student]:
    """Every student in the viewer's scope, by name."""
    viewer = info.context.require_viewer()
    students = await _students(info, sorted(viewer.student_ids))
    found = [student for student in students if student is not None]
    return sorted(found, key=lambda s: (s.last_name, s.first_name, s.student_id))


async def resolve_student(info: Info, id: StudentIdArg) -> Student | None:
    """One student in scope by id (the permission has already checked the scope)."""
    (student,) = await _students(info, [parse_int_id(id)])
    return student


@strawberry.type(description="Diary queries.")
class Query:
    viewer: ViewerType | None = strawberry.field(
        resolver=resolve_viewer,
        extensions=requires(IsAuthenticated),
        description="Who am I.",
        metadata=cacheable(),
    )
    my_children: list[Student] = strawberry.field(
        resolver=resolve_my_children,
        extensions=requires(IsAuthenticated, IsFamilyMember),
        description=(
            "My children: for a parent, all students linked to them in the parent registers "
            "of all schools; for a student, the student themselves."
        ),
        metadata=sized(5) | cacheable(),
    )
    student: Student | None = strawberry.field(
        resolver=resolve_student,
        extensions=requires(IsAuthenticated, IsFamilyMember, CanSeeStudent),
        description=(
            "A student by id; an id outside the viewer's scope is a FORBIDDEN error, "
            "whether or not it exists."
        ),
        metadata=cacheable(),
    )

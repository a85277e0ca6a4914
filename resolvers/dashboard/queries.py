"""The school IT dashboard: `schoolDashboard(schoolId, from, to)` for school admins.

Who may ask (printed in schema.graphql): role SCHOOL_ADMIN, and only about a school
they administer (`Viewer.school_ids`) — anyone else, or another school, gets FORBIDDEN
and no data. The sections need OAuth scopes on top (a person signed in has every scope
of their role; a machine client what it was granted): journal and registry need
`school:dashboard`, sign-ins `school:sign-ins`.

The window: `from`–`to` inclusive, at most 366 days; by default the current week
(Monday–Sunday of the request's today); with one bound, 7 days from (or up to) it —
the diary's rules and error codes (DATE_RANGE_REVERSED, DATE_RANGE_TOO_LONG,
DATE_OUT_OF_RANGE). "Past" means before today. Sign-in events are taken from `from`
00:00 UTC to the end of `to` (UTC). The registry section describes the registry as it
is now, whatever the window.

Each section is read only when selected: the journal with one statement, the registry
with two (resolvers.dashboard.registry), sign-ins with one for the counts and one for
the newest failures (resolvers.dashboard.sign_ins). Resolvers read through the request's
DashboardService (`info.context.dashboard`, resolvers.dashboard.service), which checks
the school against the admin's schools before any SQL (resolvers.dashboard.sql).
Students listed by the registry section are added to the request's access audit.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from typing import Annotated, Any

import strawberry
from strawberry.extensions import FieldExtension
from strawberry.permission import PermissionExtension

from auth.permissions import (
    CanAdministerSchool,
    HasScope,
    IsAuthenticated,
    IsSchoolAdmin,
    parse_int_id,
    requires,
)
from auth.viewer import SCOPE_SCHOOL_DASHBOARD, SCOPE_SCHOOL_SIGN_INS
from gateway.core.errors import NotFoundError
from resolvers.common.arguments import MAX_YEAR_DAYS, diary_window
from resolvers.common.types import School, Subject, Teacher
from resolvers.context import Context
from resolvers.dashboard.registry import RegistryQuality, load_registry_quality
from resolvers.dashboard.service import CheckedSchool
from resolvers.dashboard.sign_ins import SignInProblems, day_bounds, load_sign_in_problems
from resolvers.dashboard.types import (
    JournalCompleteness,
    JournalCompletenessRow,
    JournalSortField,
    JournalTotals,
    SortDirection,
)
from resolvers.diary.rows import school_class_from_row

Info = strawberry.Info[Context, None]

FromArg = Annotated[date | None, strawberry.argument(name="from", description="First day.")]
ToArg = Annotated[date | None, strawberry.argument(description="Last day (inclusive).")]
SchoolIdArg = Annotated[
    strawberry.ID,
    strawberry.argument(
        description=(
            "The id of a school the user administers as SCHOOL_ADMIN (any other school, "
            "existing or not: FORBIDDEN)."
        )
    ),
]
SortByArg = Annotated[
    JournalSortField, strawberry.argument(description="Sort key (default PAST_LESSONS_EMPTY).")
]
DirectionArg = Annotated[
    SortDirection,
    strawberry.argument(
        description="Sort direction (default DESC); ties by teacher, class and subject, ascending."
    ),
]


def school_section(scope: str) -> list[FieldExtension]:
    """A section of the dashboard: the school's admin, holding OAuth scope `scope`."""
    return [PermissionExtension([CanAdministerSchool(), HasScope(scope)])]


# --- journal completeness --------------------------------------------------------------


def _journal_row(row: Any) -> JournalCompletenessRow:
    return JournalCompletenessRow(
        teacher=Teacher(id=strawberry.ID(str(row["teacher_id"])), name=row["teacher_name"]),
        school_class=school_class_from_row(row),
        subject=Subject(id=strawberry.ID(str(row["subject_id"])), name=row["subject_name"]),
        lessons_held=row["held"],
        lessons_with_topic=row["with_topic"],
        lessons_with_attendance=row["with_attendance"],
        lessons_with_homework=row["with_homework"],
        lessons_with_marks=row["with_marks"],
        past_lessons_empty=row["past_empty"],
        last_entry_at=row["last_entry_at"],
    )


def _tie_key(row: JournalCompletenessRow) -> tuple[Any, ...]:
    return (
        row.teacher.name,
        int(row.teacher.id),
        row.school_class.grade,
        row.school_class.letter,
        row.subject.name,
        int(row.subject.id),
    )


_SORT_KEYS: dict[JournalSortField, Callable[[JournalCompletenessRow], Any]] = {
    JournalSortField.TEACHER: lambda row: (row.teacher.name, int(row.teacher.id)),
    JournalSortField.CLASS: lambda row: (row.school_class.grade, row.school_class.letter),
    JournalSortField.SUBJECT: lambda row: (row.subject.name, int(row.subject.id)),
    JournalSortField.LESSONS_HELD: lambda row: row.lessons_held,
    JournalSortField.LESSONS_WITH_TOPIC: lambda row: row.lessons_with_topic,
    JournalSortField.LESSONS_WITH_ATTENDANCE: lambda row: row.lessons_with_attendance,
    JournalSortField.LESSONS_WITH_HOMEWORK: lambda row: row.lessons_with_homework,
    JournalSortField.LESSONS_WITH_MARKS: lambda row: row.lessons_with_marks,
    JournalSortField.PAST_LESSONS_EMPTY: lambda row: row.past_lessons_empty,
    # No entry at all sorts as the oldest.
    JournalSortField.LAST_ENTRY_AT: lambda row: (
        row.last_entry_at is not None,
        row.last_entry_at or datetime.min,
    ),
}


def sort_journal(
    rows: list[JournalCompletenessRow], sort_by: JournalSortField, direction: SortDirection
) -> list[JournalCompletenessRow]:
    """Rows by `sort_by` in `direction`; ties by teacher, class and subject, ascending."""
    ordered = sorted(rows, key=_tie_key)
    # Python's sort is stable with reverse=True too: ties keep the ascending order.
    return sorted(ordered, key=_SORT_KEYS[sort_by], reverse=direction is SortDirection.DESC)


def journal_totals(rows: list[JournalCompletenessRow]) -> JournalTotals:
    """Sums over the rows (each lesson is in exactly one row) and the latest entry."""
    entries = [row.last_entry_at for row in rows if row.last_entry_at is not None]
    return JournalTotals(
        rows=len(rows),
        lessons_held=sum(row.lessons_held for row in rows),
        lessons_with_topic=sum(row.lessons_with_topic for row in rows),
        lessons_with_attendance=sum(row.lessons_with_attendance for row in rows),
        lessons_with_homework=sum(row.lessons_with_homework for row in rows),
        lessons_with_marks=sum(row.lessons_with_marks for row in rows),
        past_lessons_empty=sum(row.past_lessons_empty for row in rows),
        last_entry_at=max(entries, default=None),
    )


async def resolve_journal(
    root: SchoolDashboard,
    info: Info,
    sort_by: SortByArg = JournalSortField.PAST_LESSONS_EMPTY,
    direction: DirectionArg = SortDirection.DESC,
) -> JournalCompleteness:
    """Journal completeness per teacher, class and subject over the window."""
    context = info.context
    records = await context.dashboard.journal(
        root.checked_school,
        date_from=root.date_from,
        date_to=root.date_to,
        today=context.today,
    )
    rows = [_journal_row(record) for record in records]
    return JournalCompleteness(
        rows=sort_journal(rows, sort_by, direction), totals=journal_totals(rows)
    )


# --- registry quality and sign-ins ----------------------------------------------------


async def resolve_registry(root: SchoolDashboard, info: Info) -> RegistryQuality:
    """Parent registry quality of the school as it is now (the window does not apply)."""
    return await load_registry_quality(info.context.dashboard, root.checked_school)


async def resolve_sign_ins(root: SchoolDashboard, info: Info) -> SignInProblems:
    """Sign-in attempts of the school's people in the window (UTC days)."""
    start, end = day_bounds(root.date_from, root.date_to)
    return await load_sign_in_problems(info.context.dashboard, root.checked_school, start, end)


# --- the dashboard ---------------------------------------------------------------------


@strawberry.type(description="The IT dashboard of one school over a date window.")
class SchoolDashboard:
    checked_school: strawberry.Private[CheckedSchool]
    school: School = strawberry.field(description="The school the dashboard is about.")
    date_from: date = strawberry.field(name="from", description="First day of the window.")
    date_to: date = strawberry.field(name="to", description="Last day of the window.")
    today: date = strawberry.field(description="The day «past» is relative to.")

    journal: JournalCompleteness = strawberry.field(
        resolver=resolve_journal,
        extensions=school_section(SCOPE_SCHOOL_DASHBOARD),
        description=(
            "Journal completeness per teacher, class and subject; sorted by `sortBy` "
            "(default PAST_LESSONS_EMPTY) in `direction` (default DESC), ties by teacher, "
            "class and subject; with totals."
        ),
    )
    registry: RegistryQuality = strawberry.field(
        resolver=resolve_registry,
        extensions=school_section(SCOPE_SCHOOL_DASHBOARD),
        description="Parent registry quality as it is now (not limited to the window).",
    )
    sign_ins: SignInProblems = strawberry.field(
        resolver=resolve_sign_ins,
        extensions=school_section(SCOPE_SCHOOL_SIGN_INS),
        description=(
            "Sign-in attempts of the school's people within the window (UTC days): counts "
            "by outcome and the newest failures."
        ),
    )

    @property
    def school_id(self) -> int:
        """The school's id (auth.permissions.CanAdministerSchool reads it)."""
        return self.checked_school.id


async def resolve_school_dashboard(
    info: Info, school_id: SchoolIdArg, from_: FromArg = None, to: ToArg = None
) -> SchoolDashboard:
    """The dashboard of a school the viewer administers (checked before this runs)."""
    context = info.context
    parsed = parse_int_id(school_id, argument="schoolId")
    date_from, date_to = diary_window(from_, to, today=context.today, max_days=MAX_YEAR_DAYS)
    checked = context.dashboard.check(parsed)
    row = await context.dashboard.school(checked)
    if row is None:
        raise NotFoundError()
    return SchoolDashboard(
        checked_school=checked,
        school=School(
            id=strawberry.ID(str(row["id"])),
            name=row["name"],
            short_name=row["short_name"],
            municipality=row["municipality"],
        ),
        date_from=date_from,
        date_to=date_to,
        today=context.today,
    )


@strawberry.type
class DashboardQuery:
    """Root fields of the school IT dashboards (a base of gateway.execution.schema.Query)."""

    school_dashboard: SchoolDashboard = strawberry.field(
        resolver=resolve_school_dashboard,
        extensions=requires(IsAuthenticated, IsSchoolAdmin, CanAdministerSchool),
        description=(
            "IT dashboard of a school the user administers, for dates from–to (default: "
            "the current week; one date: 7 days from or up to it; at most 366 days)."
        ),
    )


__all__ = ["DashboardQuery", "SchoolDashboard", "sort_journal"]

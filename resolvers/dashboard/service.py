"""Per-request access to the dashboard's data: the only caller of resolvers.dashboard.sql.

Like the diary's loaders, every method checks the school against the viewer's schools
(`Viewer.administers`, the rule `auth.permissions.CanAdministerSchool` applies too) before
any SQL runs, even if a resolver forgot its own check. OAuth scopes (school:dashboard,
school:sign-ins) are not the service's: the permission classes on the fields check them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime

import asyncpg

from auth.viewer import Viewer
from gateway.core.errors import ForbiddenError, UnauthenticatedError
from resolvers.dashboard import sql as data
from resolvers.dashboard.sql import Row


@dataclass(frozen=True, slots=True)
class CheckedSchool:
    """A school the viewer administers, as checked by `DashboardService.check`."""

    id: int


class DashboardService:
    """One per request (made with its context), for one viewer; never shared."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        viewer: Viewer | None,
        accessed: set[int],
        *,
        primary: asyncpg.Pool | None = None,
    ) -> None:
        """`pool` for the journal's data (a read replica's, maybe), `primary` (None: `pool`)
        for the sign-in events, which the gateway writes there."""
        self._pool = pool
        self._primary = pool if primary is None else primary
        self._viewer = viewer
        # Students whose data this request showed (the request's access audit).
        self._accessed = accessed

    def check(self, school_id: int) -> CheckedSchool:
        """The school, if the viewer administers it: else UNAUTHENTICATED or FORBIDDEN
        (whether or not the school exists)."""
        viewer = self._viewer
        if viewer is None:
            raise UnauthenticatedError()
        if not viewer.administers(school_id):
            raise ForbiddenError()
        return CheckedSchool(school_id)

    def _school_id(self, school: CheckedSchool) -> int:
        """The id of a school checked again against this viewer (before any SQL)."""
        return self.check(school.id).id

    def record_shown_students(self, student_ids: Iterable[int]) -> None:
        """Add students the response shows to the request's access audit."""
        self._accessed.update(student_ids)

    async def school(self, school: CheckedSchool) -> Row | None:
        """The school's row (id, name, short_name, municipality), or None."""
        return await data.get_school(self._pool, school_id=self._school_id(school))

    async def administered_schools(self) -> list[Row]:
        """The rows of every school the viewer administers, by name (one statement; none
        and no SQL for a viewer who administers none)."""
        viewer = self._viewer
        if viewer is None:
            raise UnauthenticatedError()
        school_ids = sorted(sid for sid in viewer.school_ids if viewer.administers(sid))
        if not school_ids:
            return []
        return await data.list_schools(self._pool, school_ids=school_ids)

    async def journal(
        self, school: CheckedSchool, *, date_from: date, date_to: date, today: date
    ) -> list[Row]:
        """Journal fill-in counts per (teacher, class, subject): one statement."""
        return await data.list_journal_completeness(
            self._pool,
            school_id=self._school_id(school),
            date_from=date_from,
            date_to=date_to,
            today=today,
        )

    async def registry(self, school: CheckedSchool) -> tuple[list[Row], list[Row]]:
        """(every parent record with its merged-account comparison, the students without
        parents): two statements."""
        school_id = self._school_id(school)
        parents = await data.list_registry_parents(self._pool, school_id=school_id)
        students = await data.list_students_without_parents(self._pool, school_id=school_id)
        return parents, students

    async def sign_in_counts(
        self, school: CheckedSchool, *, start: datetime, end: datetime
    ) -> list[Row]:
        """(outcome, attempts, last_at) of the school's people in [start, end): one statement."""
        return await data.count_sign_ins(
            self._primary, school_id=self._school_id(school), start=start, end=end
        )

    async def failed_sign_ins(
        self,
        school: CheckedSchool,
        *,
        start: datetime,
        end: datetime,
        outcome: str | None,
        limit: int,
    ) -> list[Row]:
        """The newest failed sign-ins of the school's people in [start, end): one statement."""
        return await data.list_failed_sign_ins(
            self._primary,
            school_id=self._school_id(school),
            start=start,
            end=end,
            outcome=outcome,
            limit=limit,
        )

"""DashboardService: every read checks the school against the admin's schools before SQL."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from typing import Any

import asyncpg
import pytest

from auth.viewer import Role, Viewer
from gateway.core.db import counting_statements
from gateway.core.errors import ForbiddenError, UnauthenticatedError
from gateway.core.settings import Settings
from resolvers.context import Context
from resolvers.dashboard.service import CheckedSchool, DashboardService
from resolvers.diary.loaders import Loaders
from resolvers.diary.reference import ReferenceCache
from tests.support.dashboard_support import admin_school_id, other_school_id
from tests.support.statements import application_statements

Read = Callable[[DashboardService, CheckedSchool], Awaitable[Any]]
DAY = date(2026, 11, 23)
START = datetime(2026, 11, 23, tzinfo=UTC)
END = datetime(2026, 11, 30, tzinfo=UTC)

READS: dict[str, Read] = {
    "school": lambda service, school: service.school(school),
    "journal": lambda service, school: service.journal(
        school, date_from=DAY, date_to=DAY, today=DAY
    ),
    "registry": lambda service, school: service.registry(school),
    "sign_in_counts": lambda service, school: service.sign_in_counts(school, start=START, end=END),
    "failed_sign_ins": lambda service, school: service.failed_sign_ins(
        school, start=START, end=END, outcome=None, limit=5
    ),
}
# Reads of the viewer's own schools (no school argument to check): tested below.
VIEWER_READS = {"administered_schools"}


def viewer(role: Role, school_ids: set[int]) -> Viewer:
    return Viewer(
        account_id="test-admin",
        role=role,
        display_name="Тест",
        student_ids=frozenset(),
        school_ids=frozenset(school_ids),
    )


async def test_check_admits_only_the_admins_own_schools(
    pool: asyncpg.Pool, owner_conn: asyncpg.Connection
) -> None:
    school_id = await admin_school_id(owner_conn)
    other = await other_school_id(owner_conn, school_id)
    admin = DashboardService(pool, viewer(Role.SCHOOL_ADMIN, {school_id}), set())
    assert admin.check(school_id) == CheckedSchool(school_id)
    with pytest.raises(ForbiddenError):
        admin.check(other)
    parent = DashboardService(pool, viewer(Role.PARENT, {school_id}), set())
    with pytest.raises(ForbiddenError):
        parent.check(school_id)
    with pytest.raises(UnauthenticatedError):
        DashboardService(pool, None, set()).check(school_id)


def test_reads_cover_every_public_coroutine_of_the_service() -> None:
    """A new read of the service cannot go untested: READS names each one (`check` and
    `record_shown_students` are plain methods, not reads)."""
    public = {
        name
        for name, _ in inspect.getmembers(DashboardService, inspect.iscoroutinefunction)
        if not name.startswith("_")
    }
    assert public == set(READS) | VIEWER_READS


async def test_administered_schools_are_the_admins_own_and_nobody_elses(
    pool: asyncpg.Pool, owner_conn: asyncpg.Connection
) -> None:
    school_id = await admin_school_id(owner_conn)
    admin = DashboardService(pool, viewer(Role.SCHOOL_ADMIN, {school_id}), set())
    assert [row["id"] for row in await admin.administered_schools()] == [school_id]
    for role in (Role.PARENT, Role.REGIONAL_ANALYST):
        service = DashboardService(pool, viewer(role, {school_id}), set())
        with counting_statements() as counter:
            assert await service.administered_schools() == []
        assert counter.count == 0
    with pytest.raises(UnauthenticatedError):
        await DashboardService(pool, None, set()).administered_schools()


@pytest.mark.parametrize("name", sorted(READS))
async def test_every_read_checks_the_school_again_before_any_sql(
    pool: asyncpg.Pool, owner_conn: asyncpg.Connection, name: str
) -> None:
    school_id = await admin_school_id(owner_conn)
    other = await other_school_id(owner_conn, school_id)
    service = DashboardService(pool, viewer(Role.SCHOOL_ADMIN, {school_id}), set())
    with counting_statements() as counter, pytest.raises(ForbiddenError):
        await READS[name](service, CheckedSchool(other))  # not checked by this service
    assert counter.count == 0


async def test_reads_of_the_admins_school_and_their_statements(
    pool: asyncpg.Pool, owner_conn: asyncpg.Connection
) -> None:
    school_id = await admin_school_id(owner_conn)
    service = DashboardService(pool, viewer(Role.SCHOOL_ADMIN, {school_id}), set())
    school = service.check(school_id)
    with counting_statements(keep_text=True) as counter:
        row = await service.school(school)
        parents, students = await service.registry(school)
    assert row is not None and row["id"] == school_id
    assert parents
    assert isinstance(students, list)
    sent = application_statements(counter)
    assert [("diary_api.schools" in text, "registry_parents" in text) for text in sent] == [
        (True, False),
        (False, True),
        (False, False),
    ]


async def test_the_context_hands_the_pool_to_loaders_and_service_only(
    pool: asyncpg.Pool, settings: Settings, owner_conn: asyncpg.Connection
) -> None:
    school_id = await admin_school_id(owner_conn)
    admin = viewer(Role.SCHOOL_ADMIN, {school_id})
    loaders = Loaders(pool, admin, ReferenceCache())
    context = Context(viewer=admin, loaders=loaders, pool=pool, settings=settings, today=DAY)
    assert not hasattr(context, "pool")
    # Students the dashboard shows join the request's access audit (the loaders' set).
    context.dashboard.record_shown_students([7, 8])
    assert loaders.accessed_student_ids == {7, 8}

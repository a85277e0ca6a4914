"""`viewer { schools }`: the schools of the viewer's scope, which the school admin's page
needs before it can ask `schoolDashboard(schoolId:)`.

A school admin sees the schools they administer and no other; a parent their children's
schools; a student their own; an analyst none. The field is read only when selected: the
viewer itself stays one statement, and the schools of an admin cost one more.
"""

from __future__ import annotations

import asyncpg
import httpx
import pytest

from auth.store.accounts import upsert_staff_account
from auth.store.sessions import issue_dev_token
from auth.viewer import Role
from gateway.core.db import counting_statements
from gateway.core.settings import Settings
from tests.support.dashboard_support import admin_school_id, other_school_id
from tests.support.environment import GraphQL
from tests.support.planted import post_graphql
from tests.support.statements import application_statements

SCHOOLS = "{ viewer { role schools { id name } } }"
VIEWER = "{ viewer { id role displayName } }"
WITH_SCHOOLS = "{ viewer { id role displayName schools { id name shortName municipality } } }"
CHILDREN = "{ myChildren { school { id name } } }"


async def school_name(owner_conn: asyncpg.Connection, school_id: int) -> str:
    name = await owner_conn.fetchval("SELECT name FROM school.schools WHERE id = $1", school_id)
    assert isinstance(name, str)
    return name


async def other_admin_token(
    owner_conn: asyncpg.Connection, pool: asyncpg.Pool, settings: Settings, school_id: int
) -> str:
    """A bearer token of the IT admin of `school_id` (a person of the staff registry)."""
    staff = await owner_conn.fetchrow(
        "SELECT snils, last_name, first_name FROM school.staff "
        "WHERE school_id = $1 AND role = 'it_admin' ORDER BY id LIMIT 1",
        school_id,
    )
    assert staff is not None, "every school of the data set has an IT admin"
    account_id = await upsert_staff_account(
        pool,
        role=Role.SCHOOL_ADMIN,
        snils=staff["snils"],
        display_name=f"{staff['last_name']} {staff['first_name']}",
    )
    return await issue_dev_token(pool, settings, account_id)


async def test_the_admin_sees_the_school_they_administer(
    gql: GraphQL, owner_conn: asyncpg.Connection
) -> None:
    school_id = await admin_school_id(owner_conn)
    payload = await gql(SCHOOLS, account="school-admin")
    assert "errors" not in payload, payload
    expected = [{"id": str(school_id), "name": await school_name(owner_conn, school_id)}]
    assert payload["data"]["viewer"] == {"role": "SCHOOL_ADMIN", "schools": expected}


async def test_another_schools_admin_does_not_see_this_school(
    client: httpx.AsyncClient,
    owner_conn: asyncpg.Connection,
    pool: asyncpg.Pool,
    settings: Settings,
) -> None:
    school_id = await admin_school_id(owner_conn)
    other = await other_school_id(owner_conn, school_id)
    token = await other_admin_token(owner_conn, pool, settings, other)
    payload = await post_graphql(client, token, SCHOOLS)
    assert "errors" not in payload, payload
    schools = payload["data"]["viewer"]["schools"]
    assert [school["id"] for school in schools] == [str(other)]
    assert str(school_id) not in {school["id"] for school in schools}


@pytest.mark.parametrize("account", ["parent-two-schools", "parent-one-school", "student-young"])
async def test_a_family_sees_the_schools_of_its_children(gql: GraphQL, account: str) -> None:
    children = (await gql(CHILDREN, account=account))["data"]["myChildren"]
    payload = await gql(SCHOOLS, account=account)
    assert "errors" not in payload, payload
    by_id = {child["school"]["id"]: child["school"] for child in children}
    expected = sorted(by_id.values(), key=lambda school: (school["name"], int(school["id"])))
    assert expected and payload["data"]["viewer"]["schools"] == expected
    if account == "parent-two-schools":
        assert len(expected) == 2


async def test_the_analyst_sees_no_school(gql: GraphQL) -> None:
    payload = await gql(SCHOOLS, account="regional-analyst")
    assert payload == {"data": {"viewer": {"role": "REGIONAL_ANALYST", "schools": []}}}


async def counted(client: httpx.AsyncClient, token: str, query: str) -> list[str]:
    with counting_statements(keep_text=True) as counter:
        payload = await post_graphql(client, token, query)
    assert "errors" not in payload, payload
    return application_statements(counter)


async def test_the_schools_cost_a_statement_only_when_selected(
    client: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    admin = tokens["school-admin"]
    await counted(client, admin, VIEWER)  # the token's first use may warm caches
    without = await counted(client, admin, VIEWER)
    with_schools = await counted(client, admin, WITH_SCHOOLS)
    assert not [text for text in without if "diary_api.schools" in text], without
    extra = list(with_schools)
    for text in without:
        extra.remove(text)
    assert len(extra) == 1 and "diary_api.schools" in extra[0], with_schools
    # An analyst administers nothing: selecting the field sends no statement at all.
    analyst = tokens["regional-analyst"]
    await counted(client, analyst, VIEWER)
    assert len(await counted(client, analyst, WITH_SCHOOLS)) == len(
        await counted(client, analyst, VIEWER)
    )

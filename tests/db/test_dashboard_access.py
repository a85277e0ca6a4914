"""School dashboard, who may ask: the school's admin only, and only about their school.

Everyone else gets FORBIDDEN and no data (`data` is null: the root field is non-null).
Machine clients (OAuth client credentials) are school admins of the schools they were
registered for, with the sections their scopes allow.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from auth.store.clients import create_client, revoke_client
from auth.viewer import SCOPE_SCHOOL_DASHBOARD, SCOPE_SCHOOL_SIGN_INS, Role
from gateway.core.db import counting_statements
from gateway.execution.schema import export_sdl
from tests.support.dashboard_support import admin_school_id, ask, dashboard_query, other_school_id
from tests.support.environment import GraphQL
from tests.support.planted import error_codes, post_graphql
from tests.support.statements import application_statements

SECTIONS = """journal { totals { lessonsHeld } rows { teacher { name } } }
registry { parentRecords parentFindings { fullName maskedSnils } }
signIns { attempts recentFailures { maskedSnils } }"""
FULL = dashboard_query(SECTIONS)
TOKEN_URL = "/oauth/token"


def forbidden_without_data(payload: dict[str, Any]) -> None:
    assert error_codes(payload) == ["FORBIDDEN"], payload
    assert payload["data"] is None


async def test_the_admin_sees_their_own_school(
    gql: GraphQL, owner_conn: asyncpg.Connection
) -> None:
    school_id = await admin_school_id(owner_conn)
    payload = await ask(gql, FULL, school_id)
    assert "errors" not in payload, payload
    dashboard = payload["data"]["schoolDashboard"]
    assert dashboard["school"]["id"] == str(school_id)
    assert dashboard["journal"]["totals"]["lessonsHeld"] > 0
    assert dashboard["registry"]["parentRecords"] > 0


async def test_the_admin_cannot_see_another_school(
    gql: GraphQL, owner_conn: asyncpg.Connection
) -> None:
    school_id = await admin_school_id(owner_conn)
    other = await other_school_id(owner_conn, school_id)
    forbidden_without_data(await ask(gql, FULL, other))
    # A school that does not exist is just as forbidden (ids are not disclosed).
    forbidden_without_data(await ask(gql, FULL, 999_999))
    # Only the school section alone: still nothing.
    forbidden_without_data(await ask(gql, dashboard_query(""), other))


@pytest.mark.parametrize(
    "account", ["regional-analyst", "parent-one-school", "parent-two-schools", "student-young"]
)
async def test_other_roles_are_forbidden(
    gql: GraphQL, owner_conn: asyncpg.Connection, account: str
) -> None:
    school_id = await admin_school_id(owner_conn)
    forbidden_without_data(await ask(gql, FULL, school_id, account=account))
    # Even with a malformed id the role check comes first.
    forbidden_without_data(await ask(gql, FULL, "x", account=account))


async def test_anonymous_and_malformed_ids(gql: GraphQL, owner_conn: asyncpg.Connection) -> None:
    school_id = await admin_school_id(owner_conn)
    anonymous = await ask(gql, FULL, school_id, account=None)
    assert error_codes(anonymous) == ["UNAUTHENTICATED"] and anonymous["data"] is None
    malformed = await ask(gql, FULL, "12a")
    assert error_codes(malformed) == ["BAD_USER_INPUT"] and malformed["data"] is None


async def _client_token(
    client: httpx.AsyncClient, pool: asyncpg.Pool, school_ids: list[int], scopes: list[str]
) -> tuple[str, str]:
    created = await create_client(
        pool,
        name="Дашборд школы (тест)",
        role=Role.SCHOOL_ADMIN,
        school_ids=school_ids,
        scopes=scopes,
    )
    response = await client.post(
        TOKEN_URL,
        data={"grant_type": "client_credentials"},
        auth=(created.client.client_id, created.secret),
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return created.client.client_id, token


@pytest.fixture
async def client_ids(pool: asyncpg.Pool) -> AsyncIterator[list[str]]:
    created: list[str] = []
    yield created
    for client_id in created:
        await revoke_client(pool, client_id)


async def test_machine_clients_by_school_and_scope(
    client: httpx.AsyncClient,
    pool: asyncpg.Pool,
    owner_conn: asyncpg.Connection,
    client_ids: list[str],
) -> None:
    school_id = await admin_school_id(owner_conn)
    other = await other_school_id(owner_conn, school_id)
    variables = {"schoolId": str(school_id)}

    full_id, full = await _client_token(
        client, pool, [school_id], [SCOPE_SCHOOL_DASHBOARD, SCOPE_SCHOOL_SIGN_INS]
    )
    sign_ins_id, sign_ins_only = await _client_token(
        client, pool, [school_id], [SCOPE_SCHOOL_SIGN_INS]
    )
    elsewhere_id, elsewhere = await _client_token(
        client, pool, [other], [SCOPE_SCHOOL_DASHBOARD, SCOPE_SCHOOL_SIGN_INS]
    )
    client_ids.extend([full_id, sign_ins_id, elsewhere_id])

    payload = await post_graphql(client, full, FULL, variables)
    assert "errors" not in payload, payload
    assert payload["data"]["schoolDashboard"]["registry"]["parentRecords"] > 0

    forbidden_without_data(await post_graphql(client, elsewhere, FULL, variables))

    # Only `school:sign-ins`: the sign-in section, never the journal or the registry.
    sign_ins = dashboard_query("signIns { attempts }")
    allowed = await post_graphql(client, sign_ins_only, sign_ins, variables)
    assert "errors" not in allowed, allowed
    for section in ("journal { totals { lessonsHeld } }", "registry { parentRecords }"):
        forbidden_without_data(
            await post_graphql(client, sign_ins_only, dashboard_query(section), variables)
        )


async def test_statements_per_request_do_not_grow_with_the_window(
    client: httpx.AsyncClient, tokens: dict[str, str], owner_conn: asyncpg.Connection
) -> None:
    school_id = await admin_school_id(owner_conn)
    counted: list[list[str]] = []
    for date_from, date_to in (("2026-11-23", "2026-11-29"), ("2026-09-01", "2027-05-31")):
        variables = {"schoolId": str(school_id), "from": date_from, "to": date_to}
        with counting_statements(keep_text=True) as counter:
            payload = await post_graphql(client, tokens["school-admin"], FULL, variables)
        assert "errors" not in payload, payload
        counted.append(application_statements(counter))
    week, year = counted
    assert len(week) == len(year)
    dashboard = [text for text in year if "gateway.sign_in_events" in text or "diary_api" in text]
    mentions = {
        name: sum(name in text for text in dashboard)
        for name in (
            "diary_api.schools",
            "diary_api.journal_lessons",
            "diary_api.registry_parents",
            "diary_api.registry_students",
            "gateway.sign_in_events",
        )
    }
    assert mentions == {
        "diary_api.schools": 1,
        "diary_api.journal_lessons": 1,
        "diary_api.registry_parents": 1,
        "diary_api.registry_students": 1,
        "gateway.sign_in_events": 2,
    }


def test_the_schema_shows_who_may_ask() -> None:
    sdl = export_sdl()
    assert "directive @schoolScope on FIELD_DEFINITION" in sdl
    assert re.search(
        r"^  \): SchoolDashboard! @authenticated @roles\(anyOf: \[SCHOOL_ADMIN\]\) @schoolScope$",
        sdl,
        re.MULTILINE,
    )
    body = sdl.split("type SchoolDashboard {", 1)[1].split("\n}\n", 1)[0]
    for field, scope in (
        ("journal", "school:dashboard"),
        ("registry", "school:dashboard"),
        ("signIns", "school:sign-ins"),
    ):
        assert re.search(
            # One line, or `field(` + its described arguments (one per block) + `  ): ...`.
            rf"^  {field}(?:\(\n(?:    .*\n|\n)*  \)|\b.*): \w+! @schoolScope "
            rf"@scope\(name: \"{scope}\"\)$",
            body,
            re.MULTILINE,
        ), field

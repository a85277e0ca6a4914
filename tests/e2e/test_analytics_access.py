"""Regional analytics: who may ask (FORBIDDEN and no data for everyone else), no personal
field reachable by an analyst, the per-client rate limit, the refresh command."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from graphql import GraphQLList, GraphQLNonNull, GraphQLObjectType, GraphQLType
from starlette.applications import Starlette

from auth.store.clients import create_client, revoke_client
from auth.viewer import Role
from gateway.core.errors import MESSAGES, ErrorCode
from gateway.core.settings import Settings
from gateway.execution.schema import build_schema
from resolvers.analytics.service import RateLimitedError, RateLimiter
from tests.support.analytics_support import analytics_client, ask, codes
from tests.support.cli_process import run_command

ANALYST = "regional-analyst"
ANALYTICS = (
    "{ regionalAnalytics { minGroupSize marks(groupBy: [SUBJECT]) { total { markCount } } "
    "attendance(groupBy: [CODE]) { total { records } } } }"
)
# Names of fields that would give a person away; none may be reachable from analytics.
PERSONAL = {
    "id",
    "studentId",
    "students",
    "student",
    "firstName",
    "lastName",
    "patronymic",
    "fullName",
    "birthDate",
    "snils",
    "phone",
    "login",
    "comment",
    "myChildren",
    "diary",
    "marks",
    "attendance",
}
# Where an `id` or `marks` / `attendance` is about no person.
AGGREGATE_TYPES = {"RegionalAnalytics", "School", "Subject", "WorkType", "AnalyticsMunicipality"}


@pytest.fixture(scope="module", autouse=True)
async def _close_analytics(app: Starlette) -> AsyncIterator[None]:
    yield
    await app.state.services.close()


@pytest.mark.parametrize(
    "account", ["parent-two-schools", "student-young", "student-older", "school-admin"]
)
async def test_other_roles_are_forbidden_and_get_no_data(
    client: httpx.AsyncClient, tokens: dict[str, str], account: str
) -> None:
    body = await ask(client, tokens[account], ANALYTICS)
    assert codes(body) == ["FORBIDDEN"]
    assert body["data"] == {"regionalAnalytics": None}
    assert body["errors"][0]["message"] == MESSAGES[ErrorCode.FORBIDDEN]


async def test_anonymous_is_unauthenticated(client: httpx.AsyncClient) -> None:
    body = await ask(client, None, ANALYTICS)
    assert codes(body) == ["UNAUTHENTICATED"]
    assert body["data"] == {"regionalAnalytics": None}


async def test_analyst_gets_figures(client: httpx.AsyncClient, tokens: dict[str, str]) -> None:
    body = await ask(client, tokens[ANALYST], ANALYTICS)
    assert "errors" not in body, body
    analytics = body["data"]["regionalAnalytics"]
    assert analytics["marks"]["total"]["markCount"] > 1000
    assert analytics["attendance"]["total"]["records"] > 100


async def test_analyst_cannot_reach_any_family_field(
    client: httpx.AsyncClient, tokens: dict[str, str], owner_conn: asyncpg.Connection
) -> None:
    student_id = await owner_conn.fetchval("SELECT min(id) FROM school.students")
    school_id = await owner_conn.fetchval("SELECT min(id) FROM school.schools")
    queries = [
        "{ myChildren { id fullName } }",
        f'{{ student(id: "{student_id}") {{ id fullName marks {{ value }} }} }}',
        f'{{ student(id: "{student_id}") {{ diary {{ days {{ date }} }} }} }}',
        f'{{ schoolDashboard(schoolId: "{school_id}") {{ school {{ name }} }} }}',
    ]
    for query in queries:
        body = await ask(client, tokens[ANALYST], query)
        assert codes(body) == ["FORBIDDEN"], query
        data = body.get("data")
        assert data is None or all(value is None for value in data.values()), query
    viewer = await ask(client, tokens[ANALYST], "{ viewer { role displayName } }")
    assert viewer["data"]["viewer"]["role"] == "REGIONAL_ANALYST"


def _named(type_: GraphQLType) -> GraphQLType:
    while isinstance(type_, GraphQLNonNull | GraphQLList):
        type_ = type_.of_type
    return type_


def test_no_personal_field_is_reachable_from_analytics(settings: Settings) -> None:
    schema = build_schema(settings)._schema
    root = schema.query_type
    assert root is not None
    start = _named(root.fields["regionalAnalytics"].type)
    seen: set[str] = set()
    pending = [start]
    while pending:
        current = pending.pop()
        if not isinstance(current, GraphQLObjectType) or current.name in seen:
            continue
        seen.add(current.name)
        for name, field in current.fields.items():
            if current.name not in AGGREGATE_TYPES:
                assert name not in PERSONAL, f"{current.name}.{name}"
            pending.append(_named(field.type))
    assert "Student" not in seen and "Viewer" not in seen
    assert {"MarkGroup", "AttendanceGroup", "AnalyticsGroupKey"} <= seen


async def test_rate_limit_per_client(
    settings: Settings, pool: asyncpg.Pool, tokens: dict[str, str]
) -> None:
    async with analytics_client(settings, pool, rate_limit=3, rate_window_seconds=60) as client:
        for _ in range(3):
            assert "errors" not in await ask(client, tokens[ANALYST], ANALYTICS)
        body = await ask(client, tokens[ANALYST], ANALYTICS)
        assert codes(body) == ["RATE_LIMITED"]
        assert body["data"] == {"regionalAnalytics": None}
        error = body["errors"][0]
        assert error["message"] == MESSAGES[ErrorCode.RATE_LIMITED]
        assert 1 <= error["extensions"]["retryAfterSeconds"] <= 60
        # Families are not analytics clients: their diary is not limited by it.
        viewer = await ask(client, tokens["parent-two-schools"], "{ viewer { role } }")
        assert "errors" not in viewer


def test_rate_limiter_window_slides_and_clients_are_separate() -> None:
    now = [1000.0]
    limiter = RateLimiter(2, 10, clock=lambda: now[0])
    limiter.check("a")
    limiter.check("a")
    limiter.check("b")
    with pytest.raises(RateLimitedError):
        limiter.check("a")
    now[0] += 10.01
    limiter.check("a")


def test_refresh_command(database_url: str, data_dir: Path, settings: Settings) -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("SCHOOL_GATEWAY_") and key != "DATABASE_URL"
    }
    env.update(
        {
            "DATABASE_URL": database_url,
            "SCHOOL_GATEWAY_DATA_DIR": str(data_dir),
            "SCHOOL_GATEWAY_DEV": "1",
            "SCHOOL_GATEWAY_TODAY": settings.today().isoformat(),
        }
    )
    done = run_command(["analytics-refresh", "--json"], env, timeout=300)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["as_of"] == settings.today().isoformat()
    assert summary["duration_ms"] >= 0


async def _client_token(client: httpx.AsyncClient, client_id: str, secret: str) -> str:
    response = await client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(client_id, secret),
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


async def test_machine_clients_analyst_gets_figures_school_admin_is_forbidden(
    settings: Settings, pool: asyncpg.Pool, tokens: dict[str, str], owner_conn: asyncpg.Connection
) -> None:
    """Client credentials end to end; the rate limit is per client, not shared."""
    analyst = await create_client(pool, name="Аналитика: тест", role=Role.REGIONAL_ANALYST)
    school_id = await owner_conn.fetchval("SELECT min(id) FROM school.schools")
    admin = await create_client(
        pool, name="Дашборд: тест", role=Role.SCHOOL_ADMIN, school_ids=[school_id]
    )
    try:
        async with analytics_client(settings, pool, rate_limit=2) as client:
            machine = await _client_token(client, analyst.client.client_id, analyst.secret)
            dashboard = await _client_token(client, admin.client.client_id, admin.secret)
            for _ in range(2):
                assert "errors" not in await ask(client, tokens[ANALYST], ANALYTICS)
            assert codes(await ask(client, tokens[ANALYST], ANALYTICS)) == ["RATE_LIMITED"]
            body = await ask(client, machine, ANALYTICS)  # another client: its own allowance
            assert "errors" not in body, body
            assert body["data"]["regionalAnalytics"]["marks"]["total"]["markCount"] > 1000
            refused = await ask(client, dashboard, ANALYTICS)
            assert codes(refused) == ["FORBIDDEN"]
            assert refused["data"] == {"regionalAnalytics": None}
    finally:
        for created in (analyst, admin):
            await revoke_client(pool, created.client.client_id)

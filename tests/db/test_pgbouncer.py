"""The gateway through a real PgBouncer in transaction mode (issue 15).

PgBouncer (Debian's, 1.18: no `max_prepared_statements`) runs with two server
connections for the gateway's ten client connections, so every request's transactions
land on whichever server session is free. With SCHOOL_GATEWAY_DATABASE_POOLER=transaction
the real application answers exactly as over a direct pool, under concurrency too, and
sign-in, logout and revocation work; the change feed listens on DATABASE_DIRECT_URL.
Without the setting the pool does not even open (PgBouncer refuses the startup
parameters), and with asyncpg's statement cache left on a concurrent workload loses its
prepared statements. A server whose sessions lack the gateway's statement timeout is
refused with the statements that fix it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any, Final

import asyncpg
import httpx
import pytest
from starlette.applications import Starlette

from fixtures.generate import SeedSummary
from gateway.app import create_app
from gateway.core.db import create_pool
from gateway.core.pooler import PoolerSetupError
from gateway.core.pooler_settings import PoolerSettings
from gateway.core.settings import PROJECT_ROOT, Settings
from resolvers.changes.service import ChangeFeed
from tests.support.environment import TODAY
from tests.support.pgbouncer import (
    PgBouncer,
    gateway_pgbouncer,
    login_credentials,
)

SERVER_CONNECTIONS: Final = 2  # PgBouncer's default_pool_size here
CLIENT_CONNECTIONS: Final = 10  # the gateway's pool through it
CONCURRENT: Final = 20
ROUNDS: Final = 3  # of CONCURRENT requests at once
DOCUMENTS: Final = PROJECT_ROOT / "web" / "documents"
STUDENT_LOGIN: Final = {"login": "smirnov.petr", "password": "Dnevnik-2026"}
VIEWER: Final = {"query": "query Me { viewer { role } }"}

Call = tuple[str, str, dict[str, Any]]  # account, document, variables


def _document(name: str) -> str:
    return (DOCUMENTS / f"{name}.graphql").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def bouncer(database_url: str, settings: Settings, seeded: SeedSummary) -> Iterator[PgBouncer]:
    """PgBouncer in transaction mode: `gateway` with the gateway's session defaults set
    by connect_query (in production: ALTER ROLE ... SET), `bare` without them."""
    with gateway_pgbouncer(
        database_url, settings.statement_timeout_ms, pool_size=SERVER_CONNECTIONS
    ) as running:
        yield running


def _through(bouncer: PgBouncer, database_url: str, alias: str = "gateway") -> str:
    return bouncer.url(alias, *login_credentials(database_url))


def _pooled(
    settings: Settings, bouncer: PgBouncer, database_url: str, statement_cache: bool | None = None
) -> Settings:
    """The gateway's settings behind a transaction pooler, DATABASE_URL through it too (the
    analytics' pool and refresh); no response cache: every request reads."""
    pooler = PoolerSettings("transaction", direct_url=database_url, statement_cache=statement_cache)
    return dataclasses.replace(
        settings,
        database_url=_through(bouncer, database_url),
        pooler=pooler,
        response_cache=False,
        pool_min_size=1,
        pool_max_size=CLIENT_CONNECTIONS,
    )


@contextlib.asynccontextmanager
async def _app_over(url: str, settings: Settings) -> AsyncIterator[tuple[Starlette, asyncpg.Pool]]:
    """The real application over a pool of `url` (closed like the lifespan would)."""
    pool = await create_pool(url, settings)
    app = create_app(settings, pool=pool)
    try:
        yield app, pool
    finally:
        await app.state.auth.recorder.close()
        await app.state.services.close()
        await pool.close()


@contextlib.asynccontextmanager
async def _client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as client:
        yield client


async def _answer(client: httpx.AsyncClient, tokens: dict[str, str], call: Call) -> tuple[int, Any]:
    account, document, variables = call
    response = await client.post(
        "/graphql",
        json={"query": _document(document), "variables": variables},
        headers={"Authorization": f"Bearer {tokens[account]}"},
    )
    return response.status_code, response.json()


@pytest.fixture(scope="module")
async def calls(app: Starlette, tokens: dict[str, str]) -> list[Call]:
    """Real page queries with real ids (asked directly): a parent's children, each
    child's week and averages of the current period, a school's dashboard, the region's
    analytics."""
    async with _client(app) as client:
        _, children = await _answer(client, tokens, ("parent-two-schools", "MyChildren", {}))
        _, admin = await _answer(client, tokens, ("school-admin", "SchoolViewer", {}))
        monday = TODAY.isoformat()
        result: list[Call] = [("parent-two-schools", "MyChildren", {})]
        for child in children["data"]["myChildren"]:
            week: Call = ("parent-two-schools", "DiaryWeek", {"student": child["id"]})
            _, answer = await _answer(client, tokens, week)
            periods = answer["data"]["student"]["periods"]
            current = next(period for period in periods if period["isCurrent"])
            result += [
                week,
                (
                    "parent-two-schools",
                    "DiaryAverages",
                    {"student": child["id"], "period": current["id"]},
                ),
            ]
        school = admin["data"]["viewer"]["schools"][0]["id"]
        result += [
            (
                "school-admin",
                "SchoolJournal",
                {"schoolId": school, "to": monday, "sortBy": "CLASS", "direction": "ASC"},
            ),
            ("school-admin", "SchoolProblems", {"schoolId": school, "to": monday}),
            ("regional-analyst", "AnalyticsMarks", {"groupBy": ["SUBJECT"], "subject": True}),
        ]
    return result


@pytest.fixture(scope="module")
async def expected(
    app: Starlette, tokens: dict[str, str], calls: list[Call]
) -> list[tuple[int, Any]]:
    """The direct pool's answers."""
    async with _client(app) as client:
        answers = [await _answer(client, tokens, call) for call in calls]
    for status, body in answers:
        assert status == 200 and "errors" not in body, json.dumps(body, ensure_ascii=False)[:500]
    return answers


def _server_logins(bouncer: PgBouncer) -> int:
    """Server connections PgBouncer has opened so far (its log says each)."""
    return bouncer.log().count("new connection to server")


async def test_pages_answer_as_directly_with_two_server_connections_for_twenty_at_once(
    bouncer: PgBouncer,
    database_url: str,
    settings: Settings,
    tokens: dict[str, str],
    calls: list[Call],
    expected: list[tuple[int, Any]],
) -> None:
    pooled = _pooled(settings, bouncer, database_url)
    async with (
        _app_over(_through(bouncer, database_url), pooled) as (app, pool),
        _client(app) as client,
    ):
        for call, answer in zip(calls, expected, strict=True):
            assert await _answer(client, tokens, call) == answer, call
        many = [calls[i % len(calls)] for i in range(CONCURRENT)]
        for _ in range(ROUNDS):
            answers = await asyncio.gather(*(_answer(client, tokens, call) for call in many))
            for i, answer in enumerate(answers):
                assert answer == expected[i % len(calls)], many[i]
        assert pool.get_size() > SERVER_CONNECTIONS  # more clients than server sessions
    assert 0 < _server_logins(bouncer) <= SERVER_CONNECTIONS


async def test_sign_in_logout_and_revocation_through_the_pooler(
    bouncer: PgBouncer, database_url: str, settings: Settings
) -> None:
    pooled = _pooled(settings, bouncer, database_url)
    async with (
        _app_over(_through(bouncer, database_url), pooled) as (app, _),
        _client(app) as client,
    ):
        signed_in = await client.post("/auth/login", json=STUDENT_LOGIN)
        assert signed_in.status_code == 200, signed_in.text
        bearer = {"Authorization": f"Bearer {signed_in.json()['access_token']}"}
        read = await client.post("/graphql", json=VIEWER, headers=bearer)
        assert read.json() == {"data": {"viewer": {"role": "STUDENT"}}}, read.text
        assert (await client.post("/auth/logout", headers=bearer)).status_code == 204
        after = await client.post("/graphql", json=VIEWER, headers=bearer)
        assert after.status_code == 401, after.text
        assert [e["extensions"]["code"] for e in after.json()["errors"]] == ["SESSION_REVOKED"]


async def test_with_the_statement_cache_on_prepared_statements_are_lost(
    bouncer: PgBouncer,
    database_url: str,
    settings: Settings,
    tokens: dict[str, str],
    calls: list[Call],
    expected: list[tuple[int, Any]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """SCHOOL_GATEWAY_DATABASE_STATEMENT_CACHE=1 keeps asyncpg's named prepared
    statements: through PgBouncer 1.18 a statement prepared on one server session is then
    executed on another."""
    cached = _pooled(settings, bouncer, database_url, statement_cache=True)
    caplog.set_level(logging.ERROR)
    async with (
        _app_over(_through(bouncer, database_url), cached) as (app, _),
        _client(app) as client,
    ):
        many = [calls[i % len(calls)] for i in range(CONCURRENT)]
        answers = await asyncio.gather(*(_answer(client, tokens, call) for call in many))
    wrong = [many[i] for i, answer in enumerate(answers) if answer != expected[i % len(calls)]]
    assert wrong, "every answer right with named prepared statements through the pooler"
    assert 'prepared statement "__asyncpg_stmt_' in caplog.text
    assert "does not exist" in caplog.text


async def test_without_the_setting_the_pool_does_not_open(
    bouncer: PgBouncer, database_url: str, settings: Settings
) -> None:
    """PgBouncer refuses the startup parameters of a direct connection; the error says
    which setting is missing."""
    with pytest.raises(PoolerSetupError) as refused:
        await create_pool(_through(bouncer, database_url), settings)
    assert isinstance(refused.value.__cause__, asyncpg.ProtocolViolationError)
    assert "unsupported startup parameter" in str(refused.value)
    assert "SCHOOL_GATEWAY_DATABASE_POOLER=transaction" in str(refused.value)


async def test_sessions_without_the_gateway_timeout_are_refused(
    bouncer: PgBouncer, database_url: str, settings: Settings
) -> None:
    """`bare` has no connect_query: the role's defaults (none here) are the sessions'."""
    with pytest.raises(PoolerSetupError) as refused:
        await create_pool(
            _through(bouncer, database_url, "bare"), _pooled(settings, bouncer, database_url)
        )
    message = str(refused.value)
    assert f"SET statement_timeout = {settings.statement_timeout_ms}" in message
    assert "statement_timeout is 0 ms" in message


async def test_the_change_feed_listens_on_the_direct_url(
    bouncer: PgBouncer, database_url: str, settings: Settings, owner_conn: asyncpg.Connection
) -> None:
    """A NOTIFY wakes the dispatcher: its LISTEN is on DATABASE_DIRECT_URL, not on a
    server session PgBouncer has handed to others since."""
    pooled = _pooled(settings, bouncer, database_url)
    async with _app_over(_through(bouncer, database_url), pooled) as (app, pool):
        feed = ChangeFeed(
            pooled, lambda: pool, app.state.services.reference, app.state.auth.recorder
        )
        try:
            await feed.dispatcher.position()
            await asyncio.sleep(0.2)  # the read that follows LISTEN is done
            before = feed.dispatcher.reads
            await owner_conn.execute("NOTIFY diary_changes")
            assert await _reads_after(feed, before), "the NOTIFY did not reach the dispatcher"
        finally:
            await feed.close()


async def _reads_after(feed: ChangeFeed, before: int, timeout_s: float = 5.0) -> bool:
    """Whether the dispatcher reads the log again (more than `before` reads) in time."""
    for _ in range(int(timeout_s / 0.02)):
        if feed.dispatcher.reads > before:
            return True
        await asyncio.sleep(0.02)
    return False


async def test_an_analytics_refresh_through_the_pooler(
    bouncer: PgBouncer, database_url: str, settings: Settings
) -> None:
    """The refresh's own connection (connect_as_gateway) through PgBouncer: its
    transaction-scoped timeout and lock, then VACUUM outside the transaction."""
    pooled = _pooled(settings, bouncer, database_url)
    async with _app_over(_through(bouncer, database_url), pooled) as (app, _):
        before = datetime.now(UTC)
        freshness = await app.state.services.analytics.refresh()
    assert freshness.refreshed_at >= before
    assert freshness.min_group_size == settings.analytics.min_group_size

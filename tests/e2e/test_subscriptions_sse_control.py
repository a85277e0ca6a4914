"""The change feed over Server-Sent Events, end to end: how streams end (a revoked
session, a slow consumer), heartbeats on an idle stream, the access audit of delivered
events, the refusals before any stream, and the browser cookie with its CSRF rules.

Streams that need other settings (recheck and heartbeat every second, a queue of two)
run on a live server of their own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from auth.store.accounts import ensure_demo_account
from auth.store.sessions import ClientKind, IssuedSession, revoke_session, start_session
from fixtures.demo import demo_account
from gateway.core.errors import MESSAGES, ErrorCode
from gateway.core.settings import Settings
from gateway.http.endpoint import SUBSCRIPTION_TRANSPORTS
from tests.support.environment import gateway_env
from tests.support.journal_writes import JournalWriter, journal_writes
from tests.support.live_server import LiveServer, live_server
from tests.support.sse_client import (
    DIARY_EVENTS,
    SseStream,
    key_of,
    refused,
    settle,
    subscribed,
)
from tests.support.tokens import registry_children, sign_token, token_claims

PARENT = "parent-one-school"
OTHER_PARENT = "parent-two-schools"
RECHECK_S = 1


@pytest.fixture(scope="module")
async def tuned(database_url: str, data_dir: Path, pool: asyncpg.Pool) -> AsyncIterator[LiveServer]:
    """A live server that rechecks sessions and sends heartbeats every second."""
    env = {
        **gateway_env(database_url, data_dir),
        "SCHOOL_GATEWAY_SUBSCRIPTION_RECHECK_S": str(RECHECK_S),
        "SCHOOL_GATEWAY_SUBSCRIPTION_HEARTBEAT_S": "1",
    }
    async with live_server(env, pool) as server:
        yield server


@pytest.fixture
async def writer(owner_conn: asyncpg.Connection) -> AsyncIterator[JournalWriter]:
    async with journal_writes(owner_conn) as journal:
        yield journal


def client_of(server: LiveServer) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=server.url, timeout=10)


async def child_of(owner_conn: asyncpg.Connection, key: str) -> int:
    snils = demo_account(key).snils
    assert snils is not None
    return min(await registry_children(owner_conn, snils))


async def session_of(
    pool: asyncpg.Pool, settings: Settings, key: str, kind: ClientKind = ClientKind.API
) -> IssuedSession:
    """A new session of a demo account (its own, so that a test may end it)."""
    account_id = await ensure_demo_account(pool, demo_account(key))
    method = "ESIA" if kind is ClientKind.BROWSER else "DEV_TOKEN"
    return await start_session(pool, settings, account_id=account_id, kind=kind, method=method)


def codes(body: Mapping[str, Any]) -> list[str]:
    return [error["extensions"]["code"] for error in body.get("errors", [])]


async def assert_ends_with(stream: SseStream, code: ErrorCode, within_s: float) -> float:
    """The stream's last result is the error `code` alone, then `event: complete`, then
    the end of the body; the seconds it took."""
    started = time.monotonic()
    last = await stream.next(within_s)
    took = time.monotonic() - started
    assert last == {"errors": [{"message": MESSAGES[code], "extensions": {"code": code.value}}]}
    complete = await stream.end()
    assert complete is not None and complete.event == "complete", complete
    assert await stream.frame() is None
    return took


# --- a revoked session ------------------------------------------------------------------


@pytest.mark.parametrize("how", ["revoke_session", "logout"])
async def test_a_revoked_sessions_stream_ends_within_the_recheck_interval(
    how: str,
    tuned: LiveServer,
    pool: asyncpg.Pool,
    owner_conn: asyncpg.Connection,
    writer: JournalWriter,
) -> None:
    issued = await session_of(pool, tuned.settings, PARENT)
    child = await child_of(owner_conn, PARENT)
    async with client_of(tuned) as http:
        async with subscribed(http, DIARY_EVENTS, token=issued.access_token) as stream:
            await settle(stream, writer.add_mark, child)
            if how == "logout":
                bearer = {"Authorization": f"Bearer {issued.access_token}"}
                assert (await http.post("/auth/logout", headers=bearer)).status_code == 204
            else:
                assert await revoke_session(pool, issued.session_id) == issued.account_id
            took = await assert_ends_with(stream, ErrorCode.SESSION_REVOKED, RECHECK_S + 2)
            assert took <= RECHECK_S + 1
        # The same token cannot open another stream.
        again = await refused(http, DIARY_EVENTS, token=issued.access_token)
        assert (again.status_code, codes(again.json())) == (401, ["SESSION_REVOKED"])


async def test_a_stream_ends_when_its_access_token_expires(
    tuned: LiveServer,
    pool: asyncpg.Pool,
    owner_conn: asyncpg.Connection,
    writer: JournalWriter,
) -> None:
    issued = await session_of(pool, tuned.settings, PARENT)
    expiring = sign_token(
        tuned.settings,
        token_claims(sub=issued.account_id, sid=issued.session_id, exp=int(time.time()) + 2),
    )
    child = await child_of(owner_conn, PARENT)
    async with (
        client_of(tuned) as http,
        subscribed(http, DIARY_EVENTS, token=expiring) as stream,
    ):
        await settle(stream, writer.add_mark, child)
        await assert_ends_with(stream, ErrorCode.TOKEN_EXPIRED, 2 + RECHECK_S + 2)


# --- heartbeats ---------------------------------------------------------------------------


async def test_an_idle_stream_gets_heartbeat_comments(
    tuned: LiveServer, tokens: dict[str, str]
) -> None:
    async with (
        client_of(tuned) as http,
        subscribed(http, DIARY_EVENTS, token=tokens[PARENT]) as stream,
    ):
        first = await stream.frame(within_s=2.5)
        assert first is not None and first.comment and first.event is None, first
        await stream.nothing_for(2.2)
        assert stream.heartbeats >= 3


# --- a slow consumer ----------------------------------------------------------------------


async def test_a_consumer_falling_behind_the_queue_is_ended_and_resumes_with_its_cursor(
    database_url: str,
    data_dir: Path,
    pool: asyncpg.Pool,
    tokens: dict[str, str],
    owner_conn: asyncpg.Connection,
    writer: JournalWriter,
) -> None:
    """Five changes in one transaction reach the dispatcher in one read, i.e. at once: a
    queue of two cannot hold them, whatever the client reads."""
    env = {**gateway_env(database_url, data_dir), "SCHOOL_GATEWAY_SUBSCRIPTION_QUEUE": "2"}
    child = await child_of(owner_conn, PARENT)
    async with live_server(env, pool) as server, client_of(server) as http:
        async with subscribed(http, DIARY_EVENTS, token=tokens[PARENT]) as stream:
            last = await settle(stream, writer.add_mark, child)
            async with owner_conn.transaction():
                burst = [await writer.add_mark(child, value=str(2 + i % 4)) for i in range(5)]
            await assert_ends_with(stream, ErrorCode.SLOW_CONSUMER, 5)
        variables = {"since": last["cursor"]}
        async with subscribed(http, DIARY_EVENTS, variables, token=tokens[PARENT]) as stream:
            resumed = [key_of(event) for event in await stream.events(5)]
            assert resumed == [("MarkEvent", str(child), str(m), "ADDED") for m in burst]


# --- the access audit -----------------------------------------------------------------------


async def test_every_delivered_event_is_in_the_access_audit(
    live: LiveServer,
    pool: asyncpg.Pool,
    owner_conn: asyncpg.Connection,
    writer: JournalWriter,
) -> None:
    issued = await session_of(pool, live.settings, OTHER_PARENT)
    snils = demo_account(OTHER_PARENT).snils
    assert snils is not None
    first, second = sorted(await registry_children(owner_conn, snils))
    query = DIARY_EVENTS.replace("subscription DiaryFeed", "subscription AuditedFeed")
    async with (
        client_of(live) as http,
        subscribed(http, query, token=issued.access_token) as stream,
    ):
        await settle(stream, writer.add_mark, first)
        await writer.add_mark(second)
        await writer.add_attendance(first)
        await writer.add_homework(second)
        await stream.events(3)
        # Everything delivered, what came before the settling mark included.
        delivered = [result["data"]["diaryEvents"] for result in stream.results]
    await live.app.state.auth.recorder.flush()
    rows = await owner_conn.fetch(
        "SELECT role, student_ids FROM gateway.access_audit "
        "WHERE account_id = $1::uuid AND operation_name = 'AuditedFeed' ORDER BY id",
        issued.account_id,
    )
    assert [(row["role"], row["student_ids"]) for row in rows] == [
        ("PARENT", [int(event["studentId"])]) for event in delivered
    ]
    assert {int(event["studentId"]) for event in delivered} == {first, second}


# --- refused before any stream ---------------------------------------------------------------


async def test_students_outside_the_viewers_scope_are_forbidden(
    live: LiveServer, tokens: dict[str, str], owner_conn: asyncpg.Connection
) -> None:
    foreign = await child_of(owner_conn, OTHER_PARENT)
    own = await child_of(owner_conn, PARENT)
    async with client_of(live) as http:
        for ids in ([str(foreign)], [str(own), str(foreign)]):
            response = await refused(http, DIARY_EVENTS, {"ids": ids}, token=tokens[PARENT])
            assert response.status_code == 400, response.text
            assert response.headers["content-type"].startswith("application/json")
            assert codes(response.json()) == ["FORBIDDEN"]
            assert "data" not in response.json()


async def test_a_cursor_that_is_not_ours_is_refused(
    live: LiveServer, tokens: dict[str, str]
) -> None:
    async with client_of(live) as http:
        page = await http.post(
            "/graphql",
            json={"query": "{ diaryChanges { cursor } }"},
            headers={"Authorization": f"Bearer {tokens[PARENT]}"},
        )
        cursor = page.json()["data"]["diaryChanges"]["cursor"]
        tampered = cursor[:-2] + ("AA" if cursor[-2:] != "AA" else "BB")
        for since in ("garbage", tampered):
            response = await refused(http, DIARY_EVENTS, {"since": since}, token=tokens[PARENT])
            assert response.status_code == 400, response.text
            assert codes(response.json()) == ["BAD_USER_INPUT"]


async def test_credentials_are_required_and_checked(live: LiveServer) -> None:
    async with client_of(live) as http:
        anonymous = await refused(http, DIARY_EVENTS)
        assert (anonymous.status_code, codes(anonymous.json())) == (400, ["UNAUTHENTICATED"])
        bad = await refused(http, DIARY_EVENTS, token="not-a-token")
        assert (bad.status_code, codes(bad.json())) == (401, ["UNAUTHENTICATED"]), bad.text
        assert bad.headers["www-authenticate"].startswith("Bearer")


async def test_roles_without_a_diary_are_refused(live: LiveServer, tokens: dict[str, str]) -> None:
    async with client_of(live) as http:
        response = await refused(http, DIARY_EVENTS, token=tokens["school-admin"])
        assert response.status_code == 400, response.text
        assert codes(response.json()) == ["FORBIDDEN"]


async def test_a_query_over_sse_is_refused(live: LiveServer, tokens: dict[str, str]) -> None:
    async with client_of(live) as http:
        response = await refused(http, "{ viewer { id } }", token=tokens[PARENT])
        assert response.status_code == 400, response.text
        body = response.json()
        assert codes(body) == ["BAD_REQUEST"]
        assert "подписки" in body["errors"][0]["message"]


@pytest.mark.parametrize(
    ("accept", "status"), [("application/graphql-response+json", 400), ("application/json", 200)]
)
async def test_a_subscription_posted_as_json_names_the_transports(
    accept: str, status: int, live: LiveServer, tokens: dict[str, str]
) -> None:
    """A request error: 400 with graphql-response+json, 200 with legacy application/json
    (GraphQL over HTTP, as for any other request error)."""
    async with client_of(live) as http:
        response = await http.post(
            "/graphql",
            json={"query": DIARY_EVENTS},
            headers={"Authorization": f"Bearer {tokens[PARENT]}", "Accept": accept},
        )
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(accept)
    body = response.json()
    assert codes(body) == ["BAD_REQUEST"] and "data" not in body
    assert body["errors"][0]["message"] == SUBSCRIPTION_TRANSPORTS
    assert "text/event-stream" in SUBSCRIPTION_TRANSPORTS
    assert "graphql-transport-ws" in SUBSCRIPTION_TRANSPORTS


# --- the browser's cookie ---------------------------------------------------------------------


async def test_the_cookie_session_subscribes_from_an_allowed_origin_only(
    live: LiveServer,
    pool: asyncpg.Pool,
    owner_conn: asyncpg.Connection,
    writer: JournalWriter,
) -> None:
    issued = await session_of(pool, live.settings, PARENT, ClientKind.BROWSER)
    assert issued.cookie_value is not None
    cookie = {"Cookie": f"{live.settings.auth.session_cookie}={issued.cookie_value}"}
    child = await child_of(owner_conn, PARENT)
    origin = {**cookie, "Origin": live.settings.auth.public_url}
    async with client_of(live) as http:
        async with subscribed(http, DIARY_EVENTS, headers=origin) as stream:
            await settle(stream, writer.add_mark, child)
            mark_id = await writer.add_mark(child)
            assert key_of(await stream.event()) == ("MarkEvent", str(child), str(mark_id), "ADDED")
        for headers in (cookie, {**cookie, "Origin": "https://evil.example"}):
            response = await refused(http, DIARY_EVENTS, headers=headers)
            assert (response.status_code, codes(response.json())) == (403, ["CSRF_REJECTED"])


# --- closed streams leave the dispatcher ----------------------------------------------------


async def test_a_closed_stream_frees_its_place(
    database_url: str,
    data_dir: Path,
    pool: asyncpg.Pool,
    tokens: dict[str, str],
) -> None:
    """With one stream allowed per account, a stream the client closed does not count."""
    env = {**gateway_env(database_url, data_dir), "SCHOOL_GATEWAY_SUBSCRIPTIONS_PER_ACCOUNT": "1"}
    async with live_server(env, pool) as server, client_of(server) as http:
        async with subscribed(http, DIARY_EVENTS, token=tokens[PARENT]):
            second = await refused(http, DIARY_EVENTS, token=tokens[PARENT])
            assert codes(second.json()) == ["TOO_MANY_SUBSCRIPTIONS"], second.text
        dispatcher = server.app.state.services.changes.dispatcher
        async with asyncio.timeout(3):
            while dispatcher.subscriptions:  # noqa: ASYNC110 (a counter of the server's tasks)
                await asyncio.sleep(0.05)
        async with subscribed(http, DIARY_EVENTS, token=tokens[PARENT]):
            pass


async def test_with_subscriptions_off_a_stream_is_refused_503(
    database_url: str,
    data_dir: Path,
    pool: asyncpg.Pool,
    tokens: dict[str, str],
) -> None:
    env = {**gateway_env(database_url, data_dir), "SCHOOL_GATEWAY_SUBSCRIPTIONS": "0"}
    async with live_server(env, pool) as server, client_of(server) as http:
        response = await refused(http, DIARY_EVENTS, token=tokens[PARENT])
        assert response.status_code == 503, response.text
        assert response.headers["retry-after"] == "1"
        assert codes(response.json()) == ["SERVICE_UNAVAILABLE"]

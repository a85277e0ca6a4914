"""Subscriptions over WebSocket (graphql-transport-ws at /graphql) end to end: a teacher's
write through the owner connection reaches a parent's socket, multiplexed operations
each get their own events, other families get nothing; authentication by the
`connection_init` payload or the cookie of an allowed Origin; the protocol's close codes;
a revoked session ends the stream; `since` resumes with exactly the missed events.

Every test plants its own parents for students no other test writes to (a subscription
starts at the dispatcher's position, which may still be before another test's undo).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

import gateway.http.websocket as websocket_module
from auth.store.sessions import ClientKind, revoke_session, start_session
from auth.tokens import ACCESS, verify_token
from gateway.core import identifiers as snils
from gateway.core.settings import Settings
from tests.support.environment import gateway_env
from tests.support.journal_writes import journal_writes
from tests.support.live_server import LiveServer, live_server
from tests.support.planted import PLANTED_SNILS_BODY, planted_parent
from tests.support.tokens import link_removed, sign_token, token_claims
from tests.support.ws_client import WsClient, ws_connect

FEED = """
subscription Feed($ids: [ID!], $since: ChangeCursor) {
  diaryEvents(studentIds: $ids, since: $since) {
    __typename cursor action studentId
    ... on MarkEvent { markId mark { value workType { name } weight } }
  }
}
"""
WORK_TYPE_ID = 2
FOREIGN_ORIGIN = "https://evil.example"
QUIET_S = 0.7  # how long "nothing more arrives" is watched


@pytest.fixture(scope="module")
async def ws_live(
    database_url: str, data_dir: Path, pool: asyncpg.Pool
) -> AsyncIterator[LiveServer]:
    """A live server with the default feed settings."""
    async with live_server(gateway_env(database_url, data_dir), pool) as server:
        yield server


@pytest.fixture(scope="module")
async def quick_live(
    database_url: str, data_dir: Path, pool: asyncpg.Pool
) -> AsyncIterator[LiveServer]:
    """A live server whose heartbeat and session recheck run every second."""
    env = {
        **gateway_env(database_url, data_dir),
        "SCHOOL_GATEWAY_SUBSCRIPTION_HEARTBEAT_S": "1",
        "SCHOOL_GATEWAY_SUBSCRIPTION_RECHECK_S": "1",
    }
    async with live_server(env, pool) as server:
        yield server


@pytest.fixture(scope="module")
async def students(owner_conn: asyncpg.Connection) -> list[int]:
    """Students of distinct classes, each used by one test only."""
    rows = await owner_conn.fetch(
        "SELECT DISTINCT ON (class_id) id FROM school.students ORDER BY class_id, id LIMIT 16"
    )
    assert len(rows) == 16
    return [row["id"] for row in rows]


@pytest.fixture(scope="module")
async def work_type_name(owner_conn: asyncpg.Connection) -> str:
    name: str = await owner_conn.fetchval(
        "SELECT name FROM school.work_types WHERE id = $1", WORK_TYPE_ID
    )
    return name


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _ids(*student_ids: int) -> dict[str, Any]:
    return {"ids": [str(s) for s in student_ids]}


def _event(payload: dict[str, Any]) -> dict[str, Any]:
    assert "errors" not in payload, payload
    event: dict[str, Any] = payload["data"]["diaryEvents"]
    return event


def _code(payload: list[dict[str, Any]] | dict[str, Any]) -> str:
    errors = payload if isinstance(payload, list) else payload["errors"]
    code: str = errors[0]["extensions"]["code"]
    return code


async def _subscribed(
    client: WsClient, operation_id: str, variables: dict[str, Any] | None = None
) -> None:
    """Subscribe and wait until the server has registered the subscription."""
    await client.subscribe(operation_id, FEED, variables)
    await client.sync()


async def _mark_event(client: WsClient, operation_id: str, mark_id: int) -> dict[str, Any]:
    event = _event(await client.next_of(operation_id))
    assert (event["__typename"], event["markId"]) == ("MarkEvent", str(mark_id)), event
    return event


# --- delivery ------------------------------------------------------------------------


async def test_a_teachers_mark_reaches_each_multiplexed_subscription(
    ws_live: LiveServer,
    owner_conn: asyncpg.Connection,
    pool: asyncpg.Pool,
    students: list[int],
    work_type_name: str,
) -> None:
    first, second = students[0], students[1]
    settings = ws_live.settings
    async with (
        planted_parent(owner_conn, pool, settings, [first, second], tag=140) as token,
        ws_connect(ws_live.url) as client,
        journal_writes(owner_conn) as journal,
    ):
        assert client.subprotocol == "graphql-transport-ws"
        await client.init(_bearer(token))
        await client.subscribe("a", FEED, _ids(first))
        await _subscribed(client, "b", _ids(second))

        mark_a = await journal.add_mark(
            first, value="4", work_type_id=WORK_TYPE_ID, weight=2.0, work_title="Диктант"
        )
        event = _event(await client.next_of("a"))
        cursor = event.pop("cursor")
        assert isinstance(cursor, str) and cursor
        assert event == {
            "__typename": "MarkEvent",
            "action": "ADDED",
            "studentId": str(first),
            "markId": str(mark_a),
            "mark": {"value": "4", "workType": {"name": work_type_name}, "weight": 2.0},
        }

        mark_b = await journal.add_mark(second, value="3", work_type_id=WORK_TYPE_ID)
        event = _event(await client.next_of("b"))
        assert (event["studentId"], event["markId"], event["mark"]["value"]) == (
            str(second),
            str(mark_b),
            "3",
        )
        await journal.change_mark(mark_a, "5")
        event = await _mark_event(client, "a", mark_a)
        assert (event["action"], event["mark"]["value"]) == ("CHANGED", "5")
        await client.receive_nothing(QUIET_S)  # neither got the other's student

        # `complete` from the client stops "a" only.
        await client.complete("a")
        await client.sync()
        await journal.add_mark(first, value="2", work_type_id=WORK_TYPE_ID)
        later_b = await journal.add_mark(second, value="5", work_type_id=WORK_TYPE_ID)
        event = await _mark_event(client, "b", later_b)  # "a"'s would have come first
        assert event["studentId"] == str(second)
        await client.receive_nothing(QUIET_S)


async def test_another_family_gets_nothing_of_it(
    ws_live: LiveServer, owner_conn: asyncpg.Connection, pool: asyncpg.Pool, students: list[int]
) -> None:
    ours, theirs = students[2], students[3]
    settings = ws_live.settings
    async with (
        planted_parent(owner_conn, pool, settings, [ours], tag=141) as our_token,
        planted_parent(owner_conn, pool, settings, [theirs], tag=142) as their_token,
        ws_connect(ws_live.url) as our_socket,
        ws_connect(ws_live.url) as their_socket,
        journal_writes(owner_conn) as journal,
    ):
        await our_socket.init(_bearer(our_token))
        await their_socket.init(_bearer(their_token))
        await _subscribed(our_socket, "mine")  # all of the viewer's children
        await _subscribed(their_socket, "mine")

        our_mark = await journal.add_mark(ours, value="4")
        assert _event(await our_socket.next_of("mine"))["markId"] == str(our_mark)

        # Their stream is alive: its first event is their own, written after ours.
        their_mark = await journal.add_mark(theirs, value="3")
        event = _event(await their_socket.next_of("mine"))
        assert (event["studentId"], event["markId"]) == (str(theirs), str(their_mark))
        await their_socket.receive_nothing(QUIET_S)
        await our_socket.receive_nothing(QUIET_S)


async def test_a_removed_link_stops_delivery_at_once(
    ws_live: LiveServer, owner_conn: asyncpg.Connection, pool: asyncpg.Pool, students: list[int]
) -> None:
    unlinked, still = students[13], students[14]
    tag = 150
    settings = ws_live.settings
    async with (
        planted_parent(owner_conn, pool, settings, [unlinked, still], tag=tag) as token,
        # The student's other parent (the event has an audience: it keeps getting it).
        planted_parent(owner_conn, pool, settings, [unlinked], tag=tag + 1) as other_token,
        ws_connect(ws_live.url) as client,
        ws_connect(ws_live.url) as other_parent,
        journal_writes(owner_conn) as journal,
    ):
        await client.init(_bearer(token))
        await other_parent.init(_bearer(other_token))
        await _subscribed(client, "feed", _ids(unlinked, still))
        await _subscribed(other_parent, "feed")
        parent_snils = snils.make(str(PLANTED_SNILS_BODY + tag))
        async with link_removed(owner_conn, parent_snils, unlinked):
            unlinked_mark = await journal.add_mark(unlinked, value="2")
            await _mark_event(other_parent, "feed", unlinked_mark)
            own_mark = await journal.add_mark(still, value="5")
            event = await _mark_event(client, "feed", own_mark)  # the other came first
            assert event["studentId"] == str(still)
            await client.receive_nothing(QUIET_S)


async def test_every_delivered_event_is_one_access_audit_row(
    ws_live: LiveServer, owner_conn: asyncpg.Connection, pool: asyncpg.Pool, students: list[int]
) -> None:
    student = students[15]
    settings = ws_live.settings
    async with (
        planted_parent(owner_conn, pool, settings, [student], tag=152) as token,
        journal_writes(owner_conn) as journal,
    ):
        account_id = verify_token(settings, token, typ=ACCESS).account_id
        async with ws_connect(ws_live.url) as client:
            await client.init(_bearer(token))
            await _subscribed(client, "feed")
            for value in ("5", "4", "3"):
                mark_id = await journal.add_mark(student, value=value)
                await _mark_event(client, "feed", mark_id)
        await ws_live.app.state.auth.recorder.flush()
        rows = await owner_conn.fetch(
            "SELECT role, student_ids, operation_name FROM gateway.access_audit "
            "WHERE account_id = $1::uuid",
            account_id,
        )
        assert [tuple(row) for row in rows] == [("PARENT", [student], "Feed")] * 3


# --- authentication ------------------------------------------------------------------


async def test_a_bad_token_closes_with_4403(ws_live: LiveServer) -> None:
    async with ws_connect(ws_live.url) as client:
        await client.send({"type": "connection_init", "payload": _bearer("not-a-token")})
        closed = await client.wait_closed()
        assert closed.code == 4403, closed


async def test_without_credentials_a_subscription_is_unauthenticated(ws_live: LiveServer) -> None:
    async with ws_connect(ws_live.url) as client:
        await client.init()
        await client.subscribe("anonymous", FEED)
        message = await client.receive()
        assert (message["type"], message["id"]) == ("error", "anonymous"), message
        assert _code(message["payload"]) == "UNAUTHENTICATED"
        await client.sync()  # the socket stays open


async def _browser_cookie(pool: asyncpg.Pool, settings: Settings, token: str) -> str:
    """The cookie of a new browser session of the token's account."""
    account_id = verify_token(settings, token, typ=ACCESS).account_id
    issued = await start_session(
        pool, settings, account_id=account_id, kind=ClientKind.BROWSER, method="ESIA"
    )
    assert issued.cookie_value is not None
    return f"{settings.auth.session_cookie}={issued.cookie_value}"


async def test_the_browser_cookie_works_from_an_allowed_origin_only(
    ws_live: LiveServer, owner_conn: asyncpg.Connection, pool: asyncpg.Pool, students: list[int]
) -> None:
    student = students[4]
    settings = ws_live.settings
    async with planted_parent(owner_conn, pool, settings, [student], tag=143) as token:
        cookie = await _browser_cookie(pool, settings, token)
        own_origin = {"Cookie": cookie, "Origin": settings.auth.public_url}
        async with ws_connect(ws_live.url, headers=own_origin) as client:
            await client.init()
            await _subscribed(client, "cookie", _ids(student))
            async with journal_writes(owner_conn) as journal:
                mark_id = await journal.add_mark(student, value="5")
                event = await _mark_event(client, "cookie", mark_id)
                assert event["studentId"] == str(student)

        foreign = {"Cookie": cookie, "Origin": FOREIGN_ORIGIN}
        async with ws_connect(ws_live.url, headers=foreign) as client:
            await client.send({"type": "connection_init"})
            closed = await client.wait_closed()
            assert closed.code == 4403, closed


async def test_students_outside_the_scope_are_forbidden(
    ws_live: LiveServer, owner_conn: asyncpg.Connection, pool: asyncpg.Pool, students: list[int]
) -> None:
    ours, other = students[5], students[6]
    async with (
        planted_parent(owner_conn, pool, ws_live.settings, [ours], tag=144) as token,
        ws_connect(ws_live.url) as client,
    ):
        await client.init(_bearer(token))
        for operation_id, ids in (("other", _ids(other)), ("both", _ids(ours, other))):
            await client.subscribe(operation_id, FEED, ids)
            message = await client.receive()
            assert (message["type"], message["id"]) == ("error", operation_id), message
            assert _code(message["payload"]) == "FORBIDDEN"


# --- the protocol --------------------------------------------------------------------


async def test_without_the_subprotocol_the_socket_closes_with_4406(ws_live: LiveServer) -> None:
    async with ws_connect(ws_live.url, subprotocol=False) as client:
        assert client.subprotocol is None
        closed = await client.wait_closed()
        assert closed.code == 4406, closed


async def test_no_connection_init_in_time_closes_with_4408(
    ws_live: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(websocket_module, "INIT_TIMEOUT_S", 0.3)
    async with ws_connect(ws_live.url) as client:
        started = time.monotonic()
        closed = await client.wait_closed(timeout_s=3)
        assert closed.code == 4408, closed
        assert time.monotonic() - started < 2


async def test_a_subscribe_before_connection_init_closes_with_4401(ws_live: LiveServer) -> None:
    async with ws_connect(ws_live.url) as client:
        await client.subscribe("early", FEED)
        closed = await client.wait_closed()
        assert closed.code == 4401, closed


async def test_a_second_connection_init_closes_with_4429(ws_live: LiveServer) -> None:
    async with ws_connect(ws_live.url) as client:
        await client.init()
        await client.send({"type": "connection_init"})
        closed = await client.wait_closed()
        assert closed.code == 4429, closed


async def test_a_duplicate_live_subscription_id_closes_with_4409(
    ws_live: LiveServer, owner_conn: asyncpg.Connection, pool: asyncpg.Pool, students: list[int]
) -> None:
    student = students[7]
    async with (
        planted_parent(owner_conn, pool, ws_live.settings, [student], tag=145) as token,
        ws_connect(ws_live.url) as client,
    ):
        await client.init(_bearer(token))
        await _subscribed(client, "same")
        await client.subscribe("same", FEED)
        closed = await client.wait_closed()
        assert closed.code == 4409, closed


@pytest.mark.parametrize(
    "raw",
    ["{not json", '{"type": "subscribe-me"}', '["connection_init"]', '{"payload": {}}'],
    ids=["invalid JSON", "unknown type", "not an object", "no type"],
)
async def test_an_invalid_message_closes_with_4400(ws_live: LiveServer, raw: str) -> None:
    async with ws_connect(ws_live.url) as client:
        await client.init()
        await client.send_raw(raw)
        closed = await client.wait_closed()
        assert closed.code == 4400, closed


async def test_ping_is_answered_with_pong(ws_live: LiveServer) -> None:
    async with ws_connect(ws_live.url) as client:
        await client.init()
        await client.send({"type": "ping"})
        assert await client.receive() == {"type": "pong"}
        # An unsolicited pong is allowed and not answered.
        await client.send({"type": "pong"})
        await client.sync()


async def test_a_ping_before_the_initialisation_is_answered(ws_live: LiveServer) -> None:
    async with ws_connect(ws_live.url) as client:
        await client.send({"type": "ping"})
        assert await client.receive() == {"type": "pong"}
        await client.init()
        await client.sync()


async def test_completed_subscriptions_free_their_places(
    ws_live: LiveServer, tokens: dict[str, str]
) -> None:
    """More subscribe/complete rounds than an account may hold at once: each completed
    one leaves the dispatcher (SCHOOL_GATEWAY_SUBSCRIPTIONS_PER_ACCOUNT is 16)."""
    dispatcher = ws_live.app.state.services.changes.dispatcher
    async with ws_connect(ws_live.url) as client:
        await client.init(_bearer(tokens["parent-one-school"]))
        for round_ in range(18):
            await _subscribed(client, f"s{round_}")
            await client.complete(f"s{round_}")
            await client.sync()
        async with asyncio.timeout(3):
            while dispatcher.subscriptions:  # noqa: ASYNC110 (a counter of the server's tasks)
                await asyncio.sleep(0.05)


async def test_the_server_pings_an_idle_socket(quick_live: LiveServer) -> None:
    async with ws_connect(quick_live.url) as client:
        await client.init()
        for _ in range(2):
            assert await client.receive(timeout_s=3, pings=True) == {"type": "ping"}


async def test_a_query_over_the_socket_is_a_bad_request(
    ws_live: LiveServer, owner_conn: asyncpg.Connection, pool: asyncpg.Pool, students: list[int]
) -> None:
    async with (
        planted_parent(owner_conn, pool, ws_live.settings, [students[8]], tag=146) as token,
        ws_connect(ws_live.url) as client,
    ):
        await client.init(_bearer(token))
        await client.subscribe("query", "{ viewer { id } }")
        message = await client.receive()
        assert (message["type"], message["id"]) == ("error", "query"), message
        assert _code(message["payload"]) == "BAD_REQUEST"
        assert "data" not in message


# --- the stream's end and resumption -------------------------------------------------


async def test_a_revoked_session_ends_the_stream_and_closes_with_4401(
    quick_live: LiveServer, owner_conn: asyncpg.Connection, pool: asyncpg.Pool, students: list[int]
) -> None:
    student = students[9]
    settings = quick_live.settings
    recheck_s = settings.changes.recheck_s
    assert recheck_s == 1
    async with (
        planted_parent(owner_conn, pool, settings, [student], tag=147) as token,
        journal_writes(owner_conn) as journal,
        ws_connect(quick_live.url) as client,
    ):
        await client.init(_bearer(token))
        await _subscribed(client, "feed")
        mark_id = await journal.add_mark(student, value="4")
        await _mark_event(client, "feed", mark_id)

        session_id = verify_token(settings, token, typ=ACCESS).session_id
        assert await revoke_session(pool, session_id) is not None
        revoked_at = time.monotonic()
        payload = await client.next_of("feed", timeout_s=recheck_s + 2)
        assert time.monotonic() - revoked_at <= recheck_s + 1.5
        assert "data" not in payload or payload["data"] is None, payload
        assert _code(payload) == "SESSION_REVOKED"
        assert await client.receive() == {"type": "complete", "id": "feed"}
        closed = await client.wait_closed()
        assert closed.code == 4401, closed


async def test_a_subscribe_on_a_socket_whose_session_was_revoked_is_refused(
    ws_live: LiveServer, owner_conn: asyncpg.Connection, pool: asyncpg.Pool, students: list[int]
) -> None:
    """The socket's credentials are read again at every subscribe: a socket opened long
    ago starts no stream once its session is revoked (nor with a removed child)."""
    settings = ws_live.settings
    async with (
        planted_parent(owner_conn, pool, settings, [students[12]], tag=139) as token,
        ws_connect(ws_live.url) as client,
    ):
        await client.init(_bearer(token))
        await client.sync()
        session_id = verify_token(settings, token, typ=ACCESS).session_id
        assert await revoke_session(pool, session_id) is not None
        await client.subscribe("late", FEED)
        message = await client.receive()
        assert (message["type"], message["id"]) == ("error", "late"), message
        assert _code(message["payload"]) == "SESSION_REVOKED"
        closed = await client.wait_closed()
        assert closed.code == 4401, closed


async def test_an_expired_token_ends_the_stream_and_closes_with_4401(
    quick_live: LiveServer, owner_conn: asyncpg.Connection, pool: asyncpg.Pool, students: list[int]
) -> None:
    settings = quick_live.settings
    async with planted_parent(owner_conn, pool, settings, [students[12]], tag=139) as token:
        claims = verify_token(settings, token, typ=ACCESS)
        expires_at = int(time.time()) + 2
        short = sign_token(
            settings,
            token_claims(sub=claims.account_id, sid=claims.session_id, exp=expires_at),
        )
        async with ws_connect(quick_live.url) as client:
            await client.init(_bearer(short))
            await _subscribed(client, "feed")
            payload = await client.next_of("feed", timeout_s=2 + settings.changes.recheck_s + 2)
            assert time.time() >= expires_at
            assert _code(payload) == "TOKEN_EXPIRED"
            assert await client.receive() == {"type": "complete", "id": "feed"}
            closed = await client.wait_closed()
            assert closed.code == 4401, closed


async def test_since_resumes_with_exactly_the_missed_events(
    ws_live: LiveServer, owner_conn: asyncpg.Connection, pool: asyncpg.Pool, students: list[int]
) -> None:
    student, sibling = students[10], students[11]
    async with (
        planted_parent(owner_conn, pool, ws_live.settings, [student, sibling], tag=148) as token,
        journal_writes(owner_conn) as journal,
    ):
        async with ws_connect(ws_live.url) as client:
            await client.init(_bearer(token))
            await _subscribed(client, "feed", _ids(student))
            seen = await journal.add_mark(student, value="5")
            cursor = (await _mark_event(client, "feed", seen))["cursor"]

        # While disconnected: two marks of the student, one of the sibling (not asked for),
        # one changed and removed again.
        missed = [await journal.add_mark(student, value="4")]
        await journal.add_mark(sibling, value="3")
        missed.append(await journal.add_mark(student, value="2"))
        await journal.change_mark(missed[0], "3")

        async with ws_connect(ws_live.url) as client:
            await client.init(_bearer(token))
            await client.subscribe("again", FEED, {**_ids(student), "since": cursor})
            received = [_event(await client.next_of("again")) for _ in range(3)]
            assert [(e["markId"], e["action"]) for e in received] == [
                (str(missed[0]), "ADDED"),
                (str(missed[1]), "ADDED"),
                (str(missed[0]), "CHANGED"),
            ]
            assert all(e["studentId"] == str(student) for e in received)
            assert len({e["cursor"] for e in received} | {cursor}) == 4
            # Then live: the next event is the next write, nothing repeated before it.
            live_mark = await journal.add_mark(student, value="5")
            await _mark_event(client, "again", live_mark)
            await client.receive_nothing(QUIET_S)


async def test_sockets_past_the_process_limit_are_closed_with_1013(
    database_url: str, data_dir: Path, pool: asyncpg.Pool
) -> None:
    env = {**gateway_env(database_url, data_dir), "SCHOOL_GATEWAY_SUBSCRIPTIONS_MAX": "1"}
    async with live_server(env, pool) as server, ws_connect(server.url) as first:
        await first.init()
        await first.sync()
        async with ws_connect(server.url) as second:
            closed = await second.wait_closed()
        assert (closed.code, closed.reason) == (1013, "Try again later: too many connections")
        await first.sync()  # the first one is unaffected

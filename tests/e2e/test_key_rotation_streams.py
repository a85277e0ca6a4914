"""Signing-key rotation and open streams (issue 15): a forced rotation ends the streams
of the key it retires (SSE with a bearer token forged with a leaked key and with a session
cookie, a WebSocket with the forged token: closed 4401),
and a WebSocket refused because the key set cannot be read is told to try again later.

Live servers of the real application; the real `school-gateway rotate-signing-key`.
Every test starts and ends with an empty gateway.signing_keys (key "0" current).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from auth.store.accounts import ensure_demo_account
from auth.store.sessions import ClientKind, start_session
from fixtures.demo import demo_account
from gateway.core.db import create_pool
from gateway.core.errors import MESSAGES, ErrorCode
from gateway.core.settings import Settings
from tests.e2e.test_key_rotation import PARENT, answer, cli, eventually, kid_of, signed
from tests.support.cuttable_proxy import cuttable_proxy
from tests.support.environment import gateway_env
from tests.support.journal_writes import journal_writes
from tests.support.live_server import LiveServer, live_server
from tests.support.sse_client import DIARY_EVENTS, SseStream, settle, subscribed
from tests.support.tokens import registry_children, token_claims
from tests.support.ws_client import ws_connect

# The node rechecks its streams (sessions, expiry, signing keys) and reloads the key set
# every second.
RECHECK_S = 1


@pytest.fixture
async def empty_keys(owner_conn: asyncpg.Connection) -> AsyncIterator[None]:
    await owner_conn.execute("DELETE FROM gateway.signing_keys")
    try:
        yield
    finally:
        await owner_conn.execute("DELETE FROM gateway.signing_keys")


@pytest.fixture
async def node(
    database_url: str, data_dir: Path, pool: asyncpg.Pool, empty_keys: None
) -> AsyncIterator[LiveServer]:
    env = {
        **gateway_env(database_url, data_dir),
        "SCHOOL_GATEWAY_SIGNING_KEYS_RELOAD_S": "1",
        "SCHOOL_GATEWAY_SUBSCRIPTION_RECHECK_S": str(RECHECK_S),
    }
    async with live_server(env, pool) as server:
        yield server


async def assert_ends_with(stream: SseStream, code: ErrorCode, within_s: float) -> None:
    """The stream's last result is the error `code` alone, then `event: complete`."""
    last = await stream.next(within_s)
    assert last == {"errors": [{"message": MESSAGES[code], "extensions": {"code": code.value}}]}
    complete = await stream.end()
    assert complete is not None and complete.event == "complete", complete


async def read_until_mark(stream: SseStream, mark_id: object) -> None:
    for _ in range(100):
        if (await stream.event()).get("markId") == mark_id:
            return
    raise AssertionError(f"mark {mark_id} never arrived")


async def test_a_forced_rotation_ends_the_open_streams_of_the_retired_key(
    node: LiveServer,
    pool: asyncpg.Pool,
    owner_conn: asyncpg.Connection,
    database_url: str,
    owner_url: str,
    data_dir: Path,
) -> None:
    a = node
    code, first, _ = cli(database_url, data_dir, "rotate-signing-key", owner_url=owner_url)
    assert code == 0, first
    leaked = first["current"]
    await eventually(lambda: a.settings.signing_keys.keys.current == leaked)
    account_id = await ensure_demo_account(pool, demo_account(PARENT))
    api = await start_session(
        pool, a.settings, account_id=account_id, kind=ClientKind.API, method="DEV_TOKEN"
    )
    browser = await start_session(
        pool, a.settings, account_id=account_id, kind=ClientKind.BROWSER, method="ESIA"
    )
    assert browser.cookie_value is not None and kid_of(browser.cookie_value) == leaked
    # Forged with the leaked key for a real session, valid for a month.
    far = int(time.time()) + 30 * 86400
    forged = signed(leaked, token_claims(sub=account_id, sid=api.session_id, exp=far))
    cookie = {
        "Cookie": f"{a.settings.auth.session_cookie}={browser.cookie_value}",
        "Origin": a.settings.auth.public_url,
    }
    snils = demo_account(PARENT).snils
    assert snils is not None
    child = min(await registry_children(owner_conn, snils))
    async with (
        httpx.AsyncClient(base_url=a.url, timeout=30) as http,
        journal_writes(owner_conn) as writer,
        subscribed(http, DIARY_EVENTS, token=forged) as by_token,
        subscribed(http, DIARY_EVENTS, headers=cookie) as by_cookie,
        ws_connect(a.url) as socket,
    ):
        await socket.init({"Authorization": f"Bearer {forged}"})
        await socket.subscribe("feed", DIARY_EVENTS)
        await socket.sync()
        delivered = await settle(by_token, writer.add_mark, child)  # all three deliver
        await read_until_mark(by_cookie, delivered["markId"])
        while (await socket.next_of("feed"))["data"]["diaryEvents"]["markId"] != (
            delivered["markId"]
        ):
            pass
        for _ in range(2):
            code, rotated, stderr = cli(
                database_url, data_dir, "rotate-signing-key", "--force", owner_url=owner_url
            )
            assert code == 0, stderr
        assert rotated["retired"] == leaked
        # Within a reload (1 s) and a recheck (1 s) of the node, with room for the CLI.
        for stream in (by_token, by_cookie):
            await assert_ends_with(stream, ErrorCode.UNAUTHENTICATED, 1 + RECHECK_S + 3)
        ended = await socket.next_of("feed", timeout_s=1 + RECHECK_S + 3)
        assert ended.get("data") is None, ended
        assert [e["extensions"]["code"] for e in ended["errors"]] == ["UNAUTHENTICATED"]
        assert await socket.receive() == {"type": "complete", "id": "feed"}
        assert (await socket.wait_closed()).code == 4401
        assert await answer(http, forged) == (401, ["UNAUTHENTICATED"])


async def test_a_socket_refused_for_the_database_away_is_told_to_try_again(
    database_url: str, data_dir: Path, pool: asyncpg.Pool, empty_keys: None
) -> None:
    env = gateway_env(database_url, data_dir)
    account_id = await ensure_demo_account(pool, demo_account(PARENT))
    async with cuttable_proxy(database_url) as proxy:
        settings = Settings.from_env(env)
        proxied = await create_pool(proxy.url, settings)
        try:
            async with live_server(env, proxied) as node:
                issued = await start_session(
                    pool,
                    node.settings,
                    account_id=account_id,
                    kind=ClientKind.API,
                    method="DEV_TOKEN",
                )
                bearer = {"Authorization": f"Bearer {issued.access_token}"}
                unknown = signed(secrets.token_hex(8), token_claims(sub=account_id))
                async with ws_connect(node.url) as known:
                    await known.init(bearer)
                    await proxy.cut()  # the database away from the node
                    # A subscribe re-reads the viewer: refused SERVICE_UNAVAILABLE alone,
                    # the socket stays (it answers a ping).
                    await known.subscribe("1", DIARY_EVENTS)
                    error = await known.receive()
                    assert error["type"] == "error" and error["id"] == "1", error
                    assert error["payload"][0]["extensions"]["code"] == "SERVICE_UNAVAILABLE"
                    await known.send({"type": "ping"})
                    assert (await known.receive())["type"] == "pong"
                # An unknown kid makes the node read the key set, which fails: 1013
                # (try again later), not an unhandled error nor 4403 (bad credentials).
                async with ws_connect(node.url) as fresh:
                    await fresh.send(
                        {
                            "type": "connection_init",
                            "payload": {"Authorization": f"Bearer {unknown}"},
                        }
                    )
                    closed = await fresh.wait_closed()
                    assert closed.code == 1013, closed
        finally:
            proxied.terminate()

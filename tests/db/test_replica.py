"""The read replica (DATABASE_REPLICA_URL, issue 15) against a real streaming replica of
the suite's embedded PostgreSQL (tests/support/replica.py): the diary's reads and the
response cache's versions come from the replica, sessions from the primary.

A teacher's mark written on the primary shows through the replica path once replayed,
also where the answer was cached; while the replica's replay is paused it does not show
(the reads go to the replica), and the cache does not keep the old answer once replay
resumes (versions and data from the same server); a session revoked on the primary is
refused at once. The statements per request are those of one pool; /readyz follows the
replica too.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import select
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import strawberry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from auth.store.accounts import ensure_demo_account
from auth.store.sessions import issue_dev_token
from fixtures.demo import demo_account
from fixtures.generate import SeedSummary
from gateway.app import create_app
from gateway.core.db import counting_statements, create_pool
from gateway.core.embedded import EmbeddedServer
from gateway.core.read_replica import ReadReplica
from gateway.core.settings import Settings
from gateway.http.endpoint import GraphQLEndpoint
from resolvers.context import Context
from tests.support.cli_process import COMMAND
from tests.support.dashboard_support import ADMIN, admin_school_id, dashboard_query
from tests.support.environment import TODAY
from tests.support.journal_writes import journal_writes
from tests.support.planted import error_codes, post_graphql
from tests.support.replica import Replica, streaming_replica, wait_replayed
from tests.support.serve_process import command_env, free_port, serving
from tests.support.statements import FAMILY_QUERY, application_statements

DAY_QUERY = """
query Day($day: Date) {
  myChildren { id diary(from: $day, to: $day) { days { lessons { marks { id workTitle } } } } }
}
"""
ANALYTICS = (
    "{ regionalAnalytics { freshness { refreshedAt } "
    "marks(groupBy: [MUNICIPALITY]) { total { markCount weightedAverage } } } }"
)
PARENT = "parent-one-school"
SIGN_INS_QUERY = dashboard_query(
    "signIns { recentFailures(first: 50, outcome: $outcome) { login method } }"
).replace("$to: Date)", "$to: Date, $outcome: String)")


@pytest.fixture(scope="module")
def replica(database_server: EmbeddedServer | None, seeded: SeedSummary) -> Iterator[Replica]:
    if database_server is None:
        pytest.skip("a streaming replica is made from the embedded test server only")
    with streaming_replica(database_server) as running:
        yield running


@pytest.fixture
async def replica_owner(replica: Replica) -> AsyncIterator[asyncpg.Connection]:
    """The replica's superuser (pausing and resuming replay, waiting for it)."""
    conn = await asyncpg.connect(replica.owner_url)
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture(scope="module")
async def replica_pool(
    replica: Replica, database_url: str, settings: Settings
) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(replica.url_like(database_url), settings)
    try:
        yield pool
    finally:
        await pool.close()


async def _close(app: Starlette) -> None:
    """What the lifespan would do (ASGITransport does not run it)."""
    await app.state.outage.close()
    if app.state.replica is not None:
        await app.state.replica.close()
    await app.state.services.close()
    await app.state.auth.recorder.close()


@pytest.fixture(scope="module")
async def replica_app(
    settings: Settings,
    database_url: str,
    pool: asyncpg.Pool,
    replica: Replica,
    replica_pool: asyncpg.Pool,
) -> AsyncIterator[Starlette]:
    with_replica = dataclasses.replace(
        settings, database_replica_url=replica.url_like(database_url)
    )
    app = create_app(with_replica, pool=pool, replica_pool=replica_pool)
    try:
        yield app
    finally:
        await _close(app)


def _client(app: Starlette) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app)
    return httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000")


@pytest.fixture
async def on_replica(
    replica_app: Starlette, replica_owner: asyncpg.Connection, owner_conn: asyncpg.Connection
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the two-pool app, the replica caught up with the primary (the writes
    and undos of earlier tests replayed); it replays again after each test."""
    await wait_replayed(owner_conn, replica_owner)
    try:
        async with _client(replica_app) as client:
            yield client
    finally:
        await replica_owner.execute("SELECT pg_wal_replay_resume()")


async def _pause(replica_owner: asyncpg.Connection) -> None:
    await replica_owner.execute("SELECT pg_wal_replay_pause()")
    for _ in range(500):
        if await replica_owner.fetchval("SELECT pg_get_wal_replay_pause_state()") == "paused":
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the replica's replay did not pause")


async def _titles(client: httpx.AsyncClient, token: str, child: int, day: date) -> list[str]:
    """The work titles of the child's marks on `day`, as the gateway answers."""
    payload = await post_graphql(client, token, DAY_QUERY, {"day": day.isoformat()})
    assert "errors" not in payload, payload
    (diary,) = (c["diary"] for c in payload["data"]["myChildren"] if c["id"] == str(child))
    return sorted(
        mark["workTitle"] or ""
        for day_ in diary["days"]
        for lesson in day_["lessons"]
        for mark in lesson["marks"]
    )


async def _first_child(client: httpx.AsyncClient, token: str) -> int:
    payload = await post_graphql(client, token, "{ myChildren { id } }")
    return int(payload["data"]["myChildren"][0]["id"])


def _cache_hits(app: Starlette) -> int:
    hits: int = app.state.graphql_endpoint.response_cache.hits
    return hits


async def test_a_write_shows_through_the_replica_once_replayed_cached_answers_too(
    on_replica: httpx.AsyncClient,
    replica_app: Starlette,
    tokens: dict[str, str],
    owner_conn: asyncpg.Connection,
    replica_owner: asyncpg.Connection,
) -> None:
    token = tokens[PARENT]
    child = await _first_child(on_replica, token)
    before = await _titles(on_replica, token, child, TODAY)
    hits = _cache_hits(replica_app)
    assert await _titles(on_replica, token, child, TODAY) == before
    assert _cache_hits(replica_app) == hits + 1  # the same query again: the cached answer
    async with journal_writes(owner_conn) as teacher:
        lesson = await teacher.lesson_of(child, on=TODAY)
        await teacher.add_mark(child, lesson_id=lesson["id"], work_title="Диктант реплики")
        await wait_replayed(owner_conn, replica_owner)
        after = await _titles(on_replica, token, child, TODAY)
    assert after == sorted([*before, "Диктант реплики"])


async def test_paused_replay_hides_a_write_but_not_a_revocation(
    on_replica: httpx.AsyncClient,
    client: httpx.AsyncClient,
    replica_app: Starlette,
    pool: asyncpg.Pool,
    settings: Settings,
    tokens: dict[str, str],
    owner_conn: asyncpg.Connection,
    replica_owner: asyncpg.Connection,
) -> None:
    token = tokens[PARENT]
    account = await ensure_demo_account(pool, demo_account(PARENT))
    older = await issue_dev_token(pool, settings, account)  # a session the replica has too
    await wait_replayed(owner_conn, replica_owner)
    child = await _first_child(on_replica, older)
    before = await _titles(on_replica, token, child, TODAY)  # cached at the replica's versions
    async with journal_writes(owner_conn) as teacher:
        await _pause(replica_owner)
        lesson = await teacher.lesson_of(child, on=TODAY)
        await teacher.add_mark(child, lesson_id=lesson["id"], work_title="Пока не видна")
        # The one-pool app reads the primary: the mark is there.
        assert "Пока не видна" in await _titles(client, token, child, TODAY)
        # The replica path: the reads go to the replica, which has not replayed it.
        assert await _titles(on_replica, token, child, TODAY) == before

        # Sessions are read on the primary: one revoked now is refused at once (the
        # replica still has it live), one started now works at once.
        bearer = {"Authorization": f"Bearer {older}"}
        assert (await on_replica.post("/auth/logout", headers=bearer)).status_code == 204
        refused = await post_graphql(on_replica, older, "{ myChildren { id } }", expect_status=401)
        assert error_codes(refused) == ["SESSION_REVOKED"]
        fresh = await issue_dev_token(pool, settings, account)
        assert await _first_child(on_replica, fresh) == child

        # Replay resumed: the answer cached while paused is not served any more.
        await replica_owner.execute("SELECT pg_wal_replay_resume()")
        await wait_replayed(owner_conn, replica_owner)
        after = await _titles(on_replica, token, child, TODAY)
    assert after == sorted([*before, "Пока не видна"])


async def test_statements_per_request_are_those_of_one_pool(
    settings: Settings,
    pool: asyncpg.Pool,
    replica_app: Starlette,
    replica_pool: asyncpg.Pool,
    tokens: dict[str, str],
    owner_conn: asyncpg.Connection,
    replica_owner: asyncpg.Connection,
) -> None:
    variables = {"from": "2026-11-23", "to": "2026-11-27"}
    await wait_replayed(owner_conn, replica_owner)  # no earlier test's undo replayed meanwhile
    counted: dict[str, list[list[str]]] = {}
    one_pool = create_app(settings, pool=pool)
    two_pools = create_app(replica_app.state.auth.settings, pool=pool, replica_pool=replica_pool)
    try:
        for name, app in (("one pool", one_pool), ("replica", two_pools)):
            async with _client(app) as client:
                for _ in range(2):  # a miss, then the cached answer
                    with counting_statements(keep_text=True) as counter:
                        payload = await post_graphql(
                            client, tokens[PARENT], FAMILY_QUERY, variables
                        )
                    assert "errors" not in payload, payload
                    counted.setdefault(name, []).append(application_statements(counter))
    finally:
        await _close(one_pool)
        await _close(two_pools)
    sizes = {name: [len(statements) for statements in runs] for name, runs in counted.items()}
    print("statements per request (miss, hit):", sizes)
    assert sizes["replica"] == sizes["one pool"]
    assert sizes["replica"][0] > sizes["replica"][1] >= 1
    for one, two in zip(counted["one pool"], counted["replica"], strict=True):
        assert sorted(one) == sorted(two)  # (the speculative versions read runs alongside)


async def _ready(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/readyz")
    body: dict[str, Any] = response.json()
    body["status_code"] = response.status_code
    return body


async def test_a_stopped_replica_leaves_the_node_ready_and_queries_read_the_primary(
    replica_app: Starlette,
    replica: Replica,
    pool: asyncpg.Pool,
    settings: Settings,
    tokens: dict[str, str],
    owner_conn: asyncpg.Connection,
) -> None:
    account = await ensure_demo_account(pool, demo_account(PARENT))
    leaving = await issue_dev_token(pool, settings, account)
    state: ReadReplica = replica_app.state.replica
    async with _client(replica_app) as client:
        ready = await _ready(client)
        assert (ready["status_code"], ready.get("failed", [])) == (200, [])
        assert ready["replica"]["status"] == "available" and ready["replica"]["pool"]["max"] >= 1
        child = await _first_child(client, tokens[PARENT])
        before = await _titles(client, tokens[PARENT], child, TODAY)
        outages = state.outages
        await asyncio.to_thread(replica.stop)
        started = time.monotonic()
        try:
            # The query that meets the stopped replica is answered from the primary.
            assert await _titles(client, tokens[PARENT], child, TODAY) == before
            assert not state.available and state.outages == outages + 1
            down = await _ready(client)
            assert down["status_code"] == 200 and "failed" not in down, down
            assert down["replica"] == {"status": "unavailable", "failed": "database"}
            # The next ones read the primary: a write there shows at once.
            async with journal_writes(owner_conn) as teacher:
                lesson = await teacher.lesson_of(child, on=TODAY)
                await teacher.add_mark(child, lesson_id=lesson["id"], work_title="Без реплики")
                shown = await _titles(client, tokens[PARENT], child, TODAY)
            assert shown == sorted([*before, "Без реплики"])
            bearer = {"Authorization": f"Bearer {leaving}"}
            assert (await client.post("/auth/logout", headers=bearer)).status_code == 204
        finally:
            await asyncio.to_thread(replica.start)
        for _ in range(100):  # the probe (every second) finds it back
            back = await _ready(client)
            if back["replica"]["status"] == "available":
                break
            await asyncio.sleep(0.1)
        assert back["status_code"] == 200 and back["replica"]["status"] == "available", back
        assert state.available
        print(f"replica stopped, started again, read again in {time.monotonic() - started:.2f} s")
        assert await _titles(client, tokens[PARENT], child, TODAY) == before


async def test_queries_read_the_replica_again_once_it_is_back(
    on_replica: httpx.AsyncClient,
    replica_app: Starlette,
    tokens: dict[str, str],
    owner_conn: asyncpg.Connection,
    replica_owner: asyncpg.Connection,
) -> None:
    assert replica_app.state.replica.available
    child = await _first_child(on_replica, tokens[PARENT])
    before = await _titles(on_replica, tokens[PARENT], child, TODAY)
    async with journal_writes(owner_conn) as teacher:
        await _pause(replica_owner)
        lesson = await teacher.lesson_of(child, on=TODAY)
        await teacher.add_mark(child, lesson_id=lesson["id"], work_title="Снова с реплики")
        assert await _titles(on_replica, tokens[PARENT], child, TODAY) == before


async def test_readiness_reports_the_replica_s_replay_lag(
    on_replica: httpx.AsyncClient,
    tokens: dict[str, str],
    owner_conn: asyncpg.Connection,
    replica_owner: asyncpg.Connection,
) -> None:
    # Other writers (the recorder's audit rows, an earlier test's clean-up) may still be
    # replaying: caught up once everything written so far is replayed.
    await wait_replayed(owner_conn, replica_owner)
    for _ in range(100):
        caught_up = await _ready(on_replica)
        if caught_up["replica"]["replay_lag_s"] == 0.0:
            break
        await asyncio.sleep(0.05)
    assert caught_up["replica"]["replay_lag_s"] == 0.0, caught_up
    child = await _first_child(on_replica, tokens[PARENT])
    async with journal_writes(owner_conn) as teacher:
        await _pause(replica_owner)
        paused_at = time.monotonic()
        await asyncio.sleep(0.5)
        lesson = await teacher.lesson_of(child, on=TODAY)
        await teacher.add_mark(child, lesson_id=lesson["id"], work_title="Отставание")
        for _ in range(100):  # the replica receives the write (it does not replay it)
            behind = await _ready(on_replica)
            if behind["replica"]["replay_lag_s"]:
                break
            await asyncio.sleep(0.05)
    lag = behind["replica"]["replay_lag_s"]
    assert behind["status_code"] == 200 and behind["replica"]["status"] == "available"
    assert isinstance(lag, float) and lag >= 0.5, behind
    print(f"replay lag reported: {lag:.2f} s ({time.monotonic() - paused_at:.2f} s paused)")


async def test_dashboard_sign_ins_read_the_primary(
    on_replica: httpx.AsyncClient,
    replica_app: Starlette,
    tokens: dict[str, str],
    owner_conn: asyncpg.Connection,
    replica_owner: asyncpg.Connection,
) -> None:
    school_id = await admin_school_id(owner_conn)
    login = await owner_conn.fetchval(
        "SELECT login FROM school.students WHERE school_id = $1 AND login IS NOT NULL "
        "ORDER BY id DESC LIMIT 1",
        school_id,
    )
    address = "198.51.100.56"
    today = datetime.now(UTC).date().isoformat()
    await _pause(replica_owner)
    transport = httpx.ASGITransport(app=replica_app, client=(address, 40000))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as c:
            failed = await c.post("/auth/login", json={"login": login, "password": "wrong-1"})
        assert failed.status_code == 401
        await replica_app.state.auth.recorder.flush()
        variables = {"schoolId": str(school_id), "from": today, "to": today}
        variables |= {"outcome": "INVALID_CREDENTIALS"}
        payload = await post_graphql(on_replica, tokens[ADMIN], SIGN_INS_QUERY, variables)
    finally:
        await owner_conn.execute(
            "DELETE FROM gateway.sign_in_throttle WHERE key = ANY($1::text[])",
            [f"login:{login}", f"address:{address}"],
        )
    assert "errors" not in payload, payload
    shown = payload["data"]["schoolDashboard"]["signIns"]["recentFailures"]
    assert any(item["login"] == login and item["method"] == "PASSWORD" for item in shown), shown


@strawberry.type
class _ReadQuery:
    @strawberry.field
    async def in_recovery(self, info: strawberry.Info[Context, None]) -> bool:
        return bool(await info.context.loaders.pool.fetchval("SELECT pg_is_in_recovery()"))


@strawberry.type
class _WriteMutation:
    @strawberry.field
    async def in_recovery(self, info: strawberry.Info[Context, None]) -> bool:
        return bool(await info.context.loaders.pool.fetchval("SELECT pg_is_in_recovery()"))


async def test_only_queries_run_on_the_replica(
    replica_app: Starlette, settings: Settings, pool: asyncpg.Pool, replica_pool: asyncpg.Pool
) -> None:
    """A mutation (the schema has none today) never runs on a read-only server."""
    schema = strawberry.Schema(query=_ReadQuery, mutation=_WriteMutation)
    reference = dataclasses.replace(settings, executor="reference", response_cache=False)
    endpoint = GraphQLEndpoint(schema, reference, replica_app.state.auth.recorder)
    replica_state = ReadReplica(None, pool=replica_pool)

    async def graphql(request: Request) -> Response:
        return await endpoint.handle(request, pool, replica_state)

    app = Starlette(routes=[Route("/graphql", graphql, methods=["POST"])])
    async with _client(app) as client:
        query = await post_graphql(client, None, "query { inRecovery }")
        mutation = await post_graphql(client, None, "mutation { inRecovery }")
    assert query == {"data": {"inRecovery": True}}
    assert mutation == {"data": {"inRecovery": False}}


def _serve_env(database_url: str, data_dir: Path, replica: Replica) -> dict[str, str]:
    """A `serve` process's environment: the test database, its replica, dev mode, TODAY."""
    return command_env(
        database_url,
        data_dir,
        DATABASE_REPLICA_URL=replica.url_like(database_url),
        SCHOOL_GATEWAY_DEV="1",
        SCHOOL_GATEWAY_TODAY=TODAY.isoformat(),
    )


async def test_serve_opens_the_replica_pool_from_the_environment(
    database_url: str,
    replica: Replica,
    tmp_path: Path,
    tokens: dict[str, str],
    owner_conn: asyncpg.Connection,
    replica_owner: asyncpg.Connection,
) -> None:
    env = _serve_env(database_url, tmp_path, replica)
    port = free_port()
    await wait_replayed(owner_conn, replica_owner)
    with serving(env, port):
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as node:
            ready = await _ready(node)
            assert ready["status_code"] == 200, ready
            assert ready["replica"]["status"] == "available", ready
            child = await _first_child(node, tokens[PARENT])
            before = await _titles(node, tokens[PARENT], child, TODAY)
            async with journal_writes(owner_conn) as teacher:
                await _pause(replica_owner)
                try:
                    lesson = await teacher.lesson_of(child, on=TODAY)
                    await teacher.add_mark(child, lesson_id=lesson["id"], work_title="Из serve")
                    assert await _titles(node, tokens[PARENT], child, TODAY) == before
                finally:
                    await replica_owner.execute("SELECT pg_wal_replay_resume()")
                await wait_replayed(owner_conn, replica_owner)
                shown = await _titles(node, tokens[PARENT], child, TODAY)
            assert shown == sorted([*before, "Из serve"])


def _stderr_line(process: subprocess.Popen[str], marker: str, timeout_s: float = 30.0) -> str:
    """The first line of the process's stderr that contains `marker` (it logs it before
    it serves), read as it comes (never waiting past `timeout_s`)."""
    assert process.stderr is not None
    descriptor, text = process.stderr.fileno(), ""
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        if not select.select([descriptor], [], [], left)[0]:
            break
        chunk = os.read(descriptor, 65536)
        if not chunk:
            break
        text += chunk.decode(errors="replace")
        found = [line for line in text.splitlines() if marker in line]
        if found:
            return found[0]
    raise AssertionError(f"no {marker!r} on stderr in {timeout_s} s:\n{text[-2000:]}")


async def test_a_node_starts_while_the_replica_is_down_and_reads_it_once_it_is_up(
    database_url: str,
    replica: Replica,
    tmp_path: Path,
    tokens: dict[str, str],
    owner_conn: asyncpg.Connection,
    replica_owner: asyncpg.Connection,
) -> None:
    await wait_replayed(owner_conn, replica_owner)
    env = _serve_env(database_url, tmp_path, replica)
    port = free_port()
    await asyncio.to_thread(replica.stop)
    try:
        with serving(env, port) as process:
            warning = await asyncio.to_thread(_stderr_line, process, "read replica unavailable")
            assert "WARNING" in warning and "primary" in warning, warning
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as node:
                down = await _ready(node)
                assert down["status_code"] == 200, down
                assert down["replica"] == {"status": "unavailable", "failed": "database"}
                child = await _first_child(node, tokens[PARENT])
                assert await _titles(node, tokens[PARENT], child, TODAY)
                await asyncio.to_thread(replica.start)
                for _ in range(100):  # the probe opens the pool once the replica answers
                    back = await _ready(node)
                    if back["replica"]["status"] == "available":
                        break
                    await asyncio.sleep(0.1)
                assert back["replica"]["status"] == "available", back
    finally:
        if not replica.running:
            await asyncio.to_thread(replica.start)


async def test_serve_warns_of_a_replica_dsn_that_is_not_in_recovery(
    database_url: str, tmp_path: Path, tokens: dict[str, str]
) -> None:
    env = command_env(database_url, tmp_path, DATABASE_REPLICA_URL=database_url)
    port = free_port()
    with serving(env, port) as process:
        warning = await asyncio.to_thread(_stderr_line, process, "DATABASE_REPLICA_URL")
        assert "not in recovery" in warning and "WARNING" in warning, warning
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as node:
            ready = await _ready(node)
    assert ready["status_code"] == 200 and ready["replica"]["status"] == "available", ready
    assert ready["replica"]["replay_lag_s"] is None  # a primary replays nothing


def test_serve_refuses_a_superuser_replica_dsn(
    database_url: str, replica: Replica, tmp_path: Path
) -> None:
    env = command_env(database_url, tmp_path, DATABASE_REPLICA_URL=replica.owner_url)
    result = subprocess.run(
        [COMMAND, "serve", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "superuser" in lines[0], result.stderr


async def test_analytics_read_the_replica_and_give_the_primary_s_figures(
    replica_app: Starlette, client: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    async with _client(replica_app) as on_replica:
        through_replica = await post_graphql(on_replica, tokens["regional-analyst"], ANALYTICS)
    assert "errors" not in through_replica, through_replica
    analytics = await replica_app.state.services.analytics.pool()
    assert await analytics.fetchval("SELECT pg_is_in_recovery()") is True
    direct = await post_graphql(client, tokens["regional-analyst"], ANALYTICS)
    assert (
        through_replica["data"]["regionalAnalytics"]["marks"]
        == direct["data"]["regionalAnalytics"]["marks"]
    )

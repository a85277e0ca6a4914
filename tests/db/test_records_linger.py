"""The recorder's linger: events arriving one at a time within `linger_s` are written by
ONE INSERT (one batch, one transaction: the rows share their `xmin`), every event exactly
once; a flush or close never waits for the linger; a full batch is written at once;
`linger_s=0` writes each event as soon as the writer wakes (one batch per event here).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime

import asyncpg
import pytest

from auth.store.audit import AccessEvent, Recorder, SignInEvent
from gateway.app import create_app
from gateway.core.settings import Settings
from tests.support.recorder_fixtures import (
    ATTACKER,
    account_id,
    open_closed_pool,
    sign_in_rows,
)

EVENTS = 5
GAP_S = 0.02  # between two events: the writer wakes in between (it did write each alone)


async def _enqueue_one_by_one(recorder: Recorder, identity: str, name: str, login: str) -> None:
    """EVENTS access events and EVENTS sign-in events, a pair every GAP_S."""
    for index in range(EVENTS):
        recorder.access(AccessEvent(datetime.now(UTC), identity, "PARENT", (index,), name))
        recorder.sign_in(SignInEvent(method="PASSWORD", outcome="SIGNED_IN", login=login))
        await asyncio.sleep(GAP_S)


async def _written(recorder: Recorder, count: int, *, within_s: float) -> float:
    """Poll (no flush) until `count` records are written; the seconds it took."""
    started = time.monotonic()
    async with asyncio.timeout(within_s):
        while True:
            if recorder.written >= count:
                break
            await asyncio.sleep(0.01)  # the writer sets no event a test could wait on
    return time.monotonic() - started


async def _stored(owner_conn: asyncpg.Connection, name: str) -> list[asyncpg.Record]:
    """The access rows of operation `name`: their students and their transaction (xmin)."""
    rows: list[asyncpg.Record] = await owner_conn.fetch(
        """SELECT student_ids, event_id, xmin::text AS xmin FROM gateway.access_audit
           WHERE operation_name = $1 ORDER BY id""",
        name,
    )
    return rows


def _names() -> tuple[str, str]:
    # Letters only: a tag with a run of digits may look like a SNILS or a phone, and the
    # recorder stores such a login masked (the test then finds no row by it: a flake).
    tag = uuid.uuid4().hex[:12].translate(str.maketrans("0123456789", "ghijklmnop"))
    return f"RecLinger_{tag}", f"rec.linger.{tag}"


async def test_events_within_the_linger_are_one_insert(
    pool: asyncpg.Pool, owner_conn: asyncpg.Connection
) -> None:
    identity = await account_id(pool, ATTACKER)
    name, login = _names()
    recorder = Recorder(lambda: pool, linger_s=1.0)
    await _enqueue_one_by_one(recorder, identity, name, login)
    assert recorder.written == 0 and recorder.pending == 2 * EVENTS  # still lingering
    await _written(recorder, 2 * EVENTS, within_s=5)  # no flush: the linger ends by itself
    assert recorder.batches == 1
    rows = await _stored(owner_conn, name)
    assert [row["student_ids"] for row in rows] == [[index] for index in range(EVENTS)]
    assert len({row["event_id"] for row in rows}) == EVENTS  # each event once
    assert len({row["xmin"] for row in rows}) == 1  # one statement, one transaction
    signed_in = await sign_in_rows(owner_conn, login)
    assert len(signed_in) == EVENTS
    xmins = await owner_conn.fetch(
        "SELECT DISTINCT xmin::text FROM gateway.sign_in_events WHERE login = $1", login
    )
    assert [row["xmin"] for row in xmins] == [rows[0]["xmin"]]  # the same INSERT
    await recorder.close()
    assert recorder.dropped == 0


async def test_flush_and_close_never_wait_for_the_linger(
    pool: asyncpg.Pool, owner_conn: asyncpg.Connection
) -> None:
    identity = await account_id(pool, ATTACKER)
    name, login = _names()
    recorder = Recorder(lambda: pool, linger_s=5.0)
    await _enqueue_one_by_one(recorder, identity, name, login)
    started = time.monotonic()
    async with asyncio.timeout(1):
        await recorder.flush()
    assert time.monotonic() - started < 1
    assert (recorder.written, recorder.batches) == (2 * EVENTS, 1)
    recorder.access(AccessEvent(datetime.now(UTC), identity, "PARENT", (EVENTS,), name))
    await asyncio.sleep(GAP_S)  # the writer lingers again
    started = time.monotonic()
    async with asyncio.timeout(1):
        await recorder.close()
    assert time.monotonic() - started < 1
    assert (recorder.written, recorder.batches, recorder.dropped) == (2 * EVENTS + 1, 2, 0)
    assert len(await _stored(owner_conn, name)) == EVENTS + 1


async def test_a_full_batch_is_written_without_waiting(
    pool: asyncpg.Pool, owner_conn: asyncpg.Connection
) -> None:
    identity = await account_id(pool, ATTACKER)
    name, login = _names()
    recorder = Recorder(lambda: pool, linger_s=5.0, batch_size=2 * EVENTS)
    await _enqueue_one_by_one(recorder, identity, name, login)
    assert await _written(recorder, 2 * EVENTS, within_s=1) < 1  # not 5 s
    assert recorder.batches == 1
    assert len({row["xmin"] for row in await _stored(owner_conn, name)}) == 1
    await recorder.close()


async def test_no_linger_writes_each_event_at_once(
    pool: asyncpg.Pool, owner_conn: asyncpg.Connection
) -> None:
    identity = await account_id(pool, ATTACKER)
    name = _names()[0]
    recorder = Recorder(lambda: pool, linger_s=0)
    for index in range(EVENTS):
        recorder.access(AccessEvent(datetime.now(UTC), identity, "PARENT", (index,), name))
        await _written(recorder, index + 1, within_s=5)  # no flush, no wait
    assert recorder.batches == EVENTS
    rows = await _stored(owner_conn, name)
    assert [row["student_ids"] for row in rows] == [[index] for index in range(EVENTS)]
    assert len({row["xmin"] for row in rows}) == EVENTS
    await recorder.close()


async def test_a_lingering_writer_still_waits_out_an_outage(
    database_url: str,
    settings: Settings,
    pool: asyncpg.Pool,
    owner_conn: asyncpg.Connection,
) -> None:
    """The database is down, then back: every event is written once, flush() in time."""
    identity = await account_id(pool, ATTACKER)
    name, login = _names()
    current = [await open_closed_pool(database_url, settings)]
    recorder = Recorder(lambda: current[0], linger_s=0.05, retry_first_s=0.01)
    await _enqueue_one_by_one(recorder, identity, name, login)
    await asyncio.sleep(0.2)  # lingered, tried, failed, retries
    assert recorder.written == 0 and recorder.pending == 2 * EVENTS
    current[0] = pool
    async with asyncio.timeout(5):
        await recorder.flush()
    await recorder.close()
    assert (recorder.written, recorder.dropped) == (2 * EVENTS, 0)
    assert len(await _stored(owner_conn, name)) == EVENTS
    assert len(await sign_in_rows(owner_conn, login)) == EVENTS


@pytest.mark.parametrize(("linger_ms", "linger_s"), [(None, 0.05), ("0", 0.0), ("250", 0.25)])
async def test_the_app_lingers_as_the_setting_says(
    settings: Settings, pool: asyncpg.Pool, linger_ms: str | None, linger_s: float
) -> None:
    env = {"SCHOOL_GATEWAY_DEV": "1"}
    if linger_ms is not None:
        env["SCHOOL_GATEWAY_AUDIT_LINGER_MS"] = linger_ms
    configured = replace(settings, audit_linger_ms=Settings.from_env(env).audit_linger_ms)
    recorder: Recorder = create_app(configured, pool=pool).state.auth.recorder
    assert recorder.linger_s == linger_s


def test_a_negative_or_endless_linger_is_refused(pool: asyncpg.Pool) -> None:
    for linger_s in (-0.1, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="linger_s"):
            Recorder(lambda: pool, linger_s=linger_s)

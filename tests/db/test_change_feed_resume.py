"""A subscription resumed with `since` while the dispatcher lags behind the log (held back
here by a lock on the registry table only its region read uses, the audience, as a slow
or busy dispatcher lags) gets each change once: its catch-up reads up to the dispatcher's
position, which must first cover the cursor, and the dispatcher's copies follow from
there. (Reading to the present instead gave the change twice: once from the catch-up,
once live.)"""

from __future__ import annotations

import asyncio
import contextlib
import time

import asyncpg
import httpx
import pytest

from auth.store.accounts import ensure_demo_account, load_viewer
from fixtures.demo import demo_account
from gateway.core.errors import ErrorCode
from resolvers.changes import dispatcher as dispatcher_module
from resolvers.changes.cursor import CursorError, Snapshot, at_snapshot
from resolvers.changes.loaders import read_region_page
from resolvers.changes.service import ChangeFeed
from resolvers.changes.subscription import StreamEnded
from resolvers.changes.types import MarkEvent
from tests.support.change_pages import changes_page
from tests.support.journal_writes import journal_writes
from tests.support.tokens import link_removed


async def test_a_resumed_subscription_gets_a_change_once(
    feed: ChangeFeed,
    client: httpx.AsyncClient,
    tokens: dict[str, str],
    pool: asyncpg.Pool,
    owner_url: str,
    owner_conn: asyncpg.Connection,
) -> None:
    viewer = await load_viewer(
        pool, await ensure_demo_account(pool, demo_account("parent-two-schools"))
    )
    assert viewer is not None
    kids = sorted(viewer.student_ids)
    first = await feed.subscribe(viewer, kids, None, expires_at=None, operation_name=None)
    first.close()  # the dispatcher runs
    since = (await changes_page(client, tokens["parent-two-schools"]))["cursor"]
    locker = await asyncpg.connect(owner_url)
    writer_conn = await asyncpg.connect(owner_url, server_settings={"lock_timeout": "5000"})
    try:
        async with journal_writes(writer_conn) as writer:
            lock = locker.transaction()
            await lock.start()
            await locker.execute("LOCK TABLE school.parent_students IN ACCESS EXCLUSIVE MODE")
            mark_id = await writer.add_mark(kids[0], value="3")  # the dispatcher's read waits
            await asyncio.sleep(0.3)
            opening = asyncio.ensure_future(
                feed.subscribe(viewer, kids, since, expires_at=None, operation_name=None)
            )
            await asyncio.sleep(0.3)
            early = None
            if opening.done():  # a subscription that does not wait for the dispatcher reads
                early = asyncio.ensure_future(anext(opening.result()))  # from its catch-up
                await asyncio.sleep(0.3)
            await lock.commit()  # the dispatcher reads and hands over
            resumed = await asyncio.wait_for(opening, 5)
            got = [await asyncio.wait_for(early or anext(resumed), 5)]
            with contextlib.suppress(TimeoutError):
                got.append(await asyncio.wait_for(anext(resumed), 2))
            resumed.close()
        assert all(isinstance(e, MarkEvent) for e in got), got
        assert [(e.mark_id, e.student_id) for e in got if isinstance(e, MarkEvent)] == [
            (str(mark_id), str(kids[0]))
        ]
    finally:
        await locker.close()
        await writer_conn.close()


async def test_a_catch_up_honours_a_link_removed_since_the_viewer_was_loaded(
    feed: ChangeFeed,
    client: httpx.AsyncClient,
    tokens: dict[str, str],
    pool: asyncpg.Pool,
    owner_conn: asyncpg.Connection,
) -> None:
    """The catch-up's pages are checked against the registries as the live copies are
    (a WebSocket may subscribe long after its viewer was loaded)."""
    account = demo_account("parent-two-schools")
    viewer = await load_viewer(pool, await ensure_demo_account(pool, account))
    assert viewer is not None and account.snils is not None
    kids = sorted(viewer.student_ids)
    since = (await changes_page(client, tokens["parent-two-schools"]))["cursor"]
    async with journal_writes(owner_conn) as writer:
        await writer.add_mark(kids[0], value="2")
        kept = await writer.add_mark(kids[1], value="4")
        async with link_removed(owner_conn, account.snils, kids[0]):
            resumed = await feed.subscribe(
                viewer, kids, since, expires_at=None, operation_name=None
            )
            got = [await asyncio.wait_for(anext(resumed), 5)]
            with contextlib.suppress(TimeoutError):
                got.append(await asyncio.wait_for(anext(resumed), 1))
            resumed.close()
    assert [(e.mark_id, e.student_id) for e in got if isinstance(e, MarkEvent)] == [
        (str(kept), str(kids[1]))
    ]
    assert len(got) == 1


async def test_a_stream_ends_when_its_credentials_expire(
    feed: ChangeFeed, pool: asyncpg.Pool
) -> None:
    """Without waiting for the sessions' recheck (300 s in this feed)."""
    viewer = await load_viewer(
        pool, await ensure_demo_account(pool, demo_account("parent-two-schools"))
    )
    assert viewer is not None
    subscription = await feed.subscribe(
        viewer, sorted(viewer.student_ids), None, expires_at=time.time() + 0.3, operation_name=None
    )
    try:
        with pytest.raises(StreamEnded) as ended:
            await asyncio.wait_for(subscription.next_event(0.5), 3)
            await asyncio.wait_for(subscription.next_event(0.5), 3)
    finally:
        subscription.close()
    assert ended.value.code is ErrorCode.TOKEN_EXPIRED


async def test_a_cursor_no_snapshot_of_this_database_covers_is_refused(
    feed: ChangeFeed, pool: asyncpg.Pool
) -> None:
    """A cursor naming transactions this database has not reached (another database
    signed with the same secret, or one restored from an older backup) is refused after
    at most two reads of the log, not waited on."""
    viewer = await load_viewer(
        pool, await ensure_demo_account(pool, demo_account("parent-two-schools"))
    )
    assert viewer is not None
    future = Snapshot(2**40, 2**40 + 5)
    cursor = feed.codec.encode(at_snapshot(future, int(time.time())))
    reads, started = feed.dispatcher.reads, time.monotonic()
    with pytest.raises(CursorError):
        await asyncio.wait_for(
            feed.subscribe(
                viewer, sorted(viewer.student_ids), cursor, expires_at=None, operation_name=None
            ),
            5,
        )
    assert time.monotonic() - started < 2  # not waited on (the settle timeout is 10 s)
    # Two reads for the cursor, and one more when another writer's notification (an
    # earlier test's clean-up) arrives meanwhile.
    assert feed.dispatcher.reads - reads <= 3
    assert feed.dispatcher.subscriptions == 0


async def test_a_change_written_before_a_subscription_opened_is_not_sent(
    feed: ChangeFeed,
    pool: asyncpg.Pool,
    owner_url: str,
    owner_conn: asyncpg.Connection,
) -> None:
    """Without a cursor a subscription starts when it is opened, even when the dispatcher
    has not yet read what was written just before (held back here as above)."""
    viewer = await load_viewer(
        pool, await ensure_demo_account(pool, demo_account("parent-two-schools"))
    )
    assert viewer is not None
    kids = sorted(viewer.student_ids)
    warm = await feed.subscribe(viewer, kids, None, expires_at=None, operation_name=None)
    warm.close()  # the dispatcher runs
    locker = await asyncpg.connect(owner_url)
    try:
        async with journal_writes(owner_conn) as writer:
            lock = locker.transaction()
            await lock.start()
            await locker.execute("LOCK TABLE school.parent_students IN ACCESS EXCLUSIVE MODE")
            await writer.add_mark(kids[0], value="2")  # before: the dispatcher waits
            opened = await feed.subscribe(viewer, kids, None, expires_at=None, operation_name=None)
            await lock.commit()
            after = await writer.add_mark(kids[0], value="5")
            got = [await asyncio.wait_for(anext(opened), 5)]
            with contextlib.suppress(TimeoutError):
                got.append(await asyncio.wait_for(anext(opened), 1))
            opened.close()
    finally:
        await locker.close()
    assert [(e.mark_id, e.action.value) for e in got if isinstance(e, MarkEvent)] == [
        (str(after), "added")
    ]
    assert len(got) == 1


async def test_a_dispatcher_that_fails_ends_its_streams_and_starts_again(
    feed: ChangeFeed,
    pool: asyncpg.Pool,
    owner_conn: asyncpg.Connection,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A bug in the dispatcher's loop (not a database error, which it retries) is logged,
    ends every stream SERVICE_UNAVAILABLE (their clients resume with their cursors), and
    the next subscription starts the loop again."""
    viewer = await load_viewer(
        pool, await ensure_demo_account(pool, demo_account("parent-two-schools"))
    )
    assert viewer is not None
    kids = sorted(viewer.student_ids)
    first = await feed.subscribe(viewer, kids, None, expires_at=None, operation_name=None)
    async with asyncio.timeout(5):  # the dispatcher's first read (at start) is done
        while not feed.dispatcher.reads:  # noqa: ASYNC110 (a counter of its task)
            await asyncio.sleep(0.01)

    async def broken(*args: object, **kwargs: object) -> object:
        raise KeyError("a kind this code does not know")

    monkeypatch.setattr(dispatcher_module, "read_region_page", broken)
    async with journal_writes(owner_conn) as writer:
        await writer.add_mark(kids[0])
        with pytest.raises(StreamEnded) as ended:
            await asyncio.wait_for(first.next_event(None), 5)
        assert ended.value.code is ErrorCode.SERVICE_UNAVAILABLE
        assert "change-dispatcher stopped" in caplog.text
        monkeypatch.setattr(dispatcher_module, "read_region_page", read_region_page)
        again = await feed.subscribe(viewer, kids, None, expires_at=None, operation_name=None)
        mark_id = await writer.add_mark(kids[0], value="3")
        event = await asyncio.wait_for(again.next_event(None), 5)
        again.close()
    assert isinstance(event, MarkEvent) and event.mark_id == str(mark_id)

"""A subscription resumed with `since` while the dispatcher lags behind the log (held back
here by a lock on the registry table only its region read uses, the audience, as a slow
or busy dispatcher lags) gets each change once: its catch-up reads up to the dispatcher's
position, which must first cover the cursor, and the dispatcher's copies follow from
there. (Reading to the present instead gave the change twice: once from the catch-up,
once live.)"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
from starlette.applications import Starlette

from auth.store.accounts import ensure_demo_account, load_viewer
from fixtures.demo import demo_account
from gateway.core.settings import Settings
from resolvers.changes.service import ChangeFeed
from resolvers.changes.types import MarkEvent
from tests.support.change_pages import changes_page
from tests.support.journal_writes import journal_writes


@pytest.fixture
async def feed(app: Starlette, settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[ChangeFeed]:
    changes = dataclasses.replace(settings.changes, recheck_s=300)
    own = ChangeFeed(
        dataclasses.replace(settings, changes=changes),
        lambda: pool,
        app.state.services.reference,
        app.state.auth.recorder,
    )
    try:
        yield own
    finally:
        await own.close()


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

"""The dispatcher's region pages under concurrent writers, and their cursors.

A subscription opened on the service (as the transports open them) receives what four
teachers commit in whatever order their transactions end: every mark once. The cursor
of a pushed event (a position of the dispatcher's region pages) resumes `diaryChanges`
(the viewer's pages) right after that event: the two kinds of pages agree on positions.
"""

from __future__ import annotations

import asyncio
import random

import asyncpg
import httpx
import pytest

from auth.store.accounts import load_viewer
from auth.tokens import verify_token
from gateway.core.settings import Settings
from resolvers.changes.service import ChangeFeed
from resolvers.changes.types import DiaryEvent, MarkEvent
from tests.support.change_pages import (
    Key,
    free_mark_ids,
    key,
    last_change_id,
    logged,
    page_to_end,
    students_of_classes,
    teacher_marks,
)
from tests.support.planted import planted_parent


def _key(event: DiaryEvent) -> Key:
    assert isinstance(event, MarkEvent), event
    return ("mark", int(event.mark_id), int(event.student_id), event.action.value)


async def test_a_subscriber_gets_concurrent_teachers_marks_once(
    feed: ChangeFeed,
    client: httpx.AsyncClient,
    owner_url: str,
    owner_conn: asyncpg.Connection,
    pool: asyncpg.Pool,
    settings: Settings,
) -> None:
    students = await students_of_classes(owner_conn, 4)
    first_id = await free_mark_ids(owner_conn)
    rng = random.Random(244)
    async with planted_parent(owner_conn, pool, settings, students, tag=244) as token:
        viewer = await load_viewer(pool, verify_token(settings, token).account_id)
        assert viewer is not None and viewer.student_ids == frozenset(students)
        subscription = await feed.subscribe(
            viewer, sorted(students), None, expires_at=None, operation_name="Live"
        )
        before = await last_change_id(owner_conn)
        try:
            writers = [
                teacher_marks(owner_url, s, first_id + i * 1000, rng)
                for i, s in enumerate(students)
            ]
            written = [mark_id for ids in await asyncio.gather(*writers) for mark_id in ids]
            expected = await logged(owner_conn, before, students)
            # Fewer than the queue holds: taken once the writers are done.
            pushed = [await asyncio.wait_for(anext(subscription), 10) for _ in expected]
            with pytest.raises(TimeoutError):  # nothing more comes
                await asyncio.wait_for(anext(subscription), 0.3)
            middle = pushed[len(pushed) // 3]
            resumed, _ = await page_to_end(client, token, middle.cursor, first=5)
        finally:
            subscription.close()
            await owner_conn.execute(
                "DELETE FROM school.marks WHERE id >= $1 AND id < $2", first_id, first_id + 4000
            )
    keys = [_key(event) for event in pushed]
    assert len(written) >= 4 * 8
    assert len(keys) == len(set(keys)) == len(expected)
    assert sorted(keys) == sorted(expected)
    after_middle = keys[len(keys) // 3 + 1 :]
    assert sorted(key(event) for event in resumed) == sorted(after_middle)

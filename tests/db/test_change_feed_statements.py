"""The change feed's database work does not grow with subscribers, children or page size.

The dispatcher reads the region's new changes with one statement per page, whatever the
number of subscriptions, and fans them out in memory: compared here with 1 and with 200
subscriptions (demo families' viewers, opened on the service as the transports do). A
`diaryChanges` request sends the same statements for one child or three, for a page of
2 events or of 50.

Statements are counted by `gateway.core.db.counting_statements`: the dispatcher's task
is started inside the counting block, so it keeps counting into it (its context is a
copy taken when the task was created), and a request over httpx's ASGI transport runs in
the test's task. The dispatcher is this test's own (a `ChangeFeed` of the app's settings,
reference data and recorder), so that no other test's subscriptions share it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import asyncpg
import httpx
import pytest

from auth.store.accounts import ensure_demo_account, load_viewer
from auth.viewer import Viewer
from fixtures.demo import demo_account
from gateway.core.db import StatementCounter, counting_statements
from gateway.core.settings import Settings
from resolvers.changes.service import ChangeFeed
from resolvers.changes.subscription import Subscription
from resolvers.changes.types import DiaryEvent, MarkEvent
from tests.support.change_pages import Key, changes_page, key, last_change_id, logged
from tests.support.journal_writes import JournalWriter, journal_writes
from tests.support.planted import planted_parent
from tests.support.statements import application_statements

FAMILIES = ("parent-two-schools", "parent-one-school", "student-older")


async def _viewers(pool: asyncpg.Pool) -> list[Viewer]:
    viewers = []
    for key_ in FAMILIES:
        viewer = await load_viewer(pool, await ensure_demo_account(pool, demo_account(key_)))
        assert viewer is not None and viewer.student_ids, key_
        viewers.append(viewer)
    return viewers


async def _subscribe(feed: ChangeFeed, viewer: Viewer) -> Subscription:
    return await feed.subscribe(
        viewer, sorted(viewer.student_ids), None, expires_at=None, operation_name="Counted"
    )


async def _take(subscription: Subscription, count: int) -> list[DiaryEvent]:
    return [await asyncio.wait_for(anext(subscription), 10) for _ in range(count)]


async def _one_transaction(writer: JournalWriter, viewers: Sequence[Viewer]) -> None:
    """A mark for each student of the viewers and homework for the first one's class, in
    one transaction (one notification)."""
    students = sorted({s for viewer in viewers for s in viewer.student_ids})
    async with writer.conn.transaction():
        for student in students:
            await writer.add_mark(student, value="4")
        await writer.add_homework(students[0], text="Повторить таблицу умножения")


def _key(event: DiaryEvent) -> Key:
    entity = getattr(event, "mark_id", None) or getattr(event, "homework_id", None)
    assert entity is not None, event
    kind = "mark" if isinstance(event, MarkEvent) else "homework"
    return (kind, int(entity), int(event.student_id), event.action.value)


async def _notification(
    writer: JournalWriter,
    feed: ChangeFeed,
    counter: StatementCounter,
    viewers: Sequence[Viewer],
    subscriptions: Sequence[Subscription],
) -> tuple[int, list[str]]:
    """Write once; every subscription gets exactly its students' changes, in order. The
    dispatcher's reads and the statements its listening loop sent meanwhile."""
    owner = writer.conn
    counter.statements.clear()
    reads = feed.dispatcher.reads
    before = await last_change_id(owner)
    await _one_transaction(writer, viewers)
    expected = {v.account_id: await logged(owner, before, sorted(v.student_ids)) for v in viewers}
    assert any(k[0] == "homework" for keys in expected.values() for k in keys)
    for subscription in subscriptions:
        mine = expected[subscription.viewer.account_id]
        events = await _take(subscription, len(mine))
        assert [_key(e) for e in events] == mine, subscription.viewer.display_name
    await asyncio.sleep(0.2)  # nothing more is read for this transaction
    for subscription in (subscriptions[0], subscriptions[-1]):
        with pytest.raises(TimeoutError):  # nor handed over
            await asyncio.wait_for(anext(subscription), 0.05)
    return feed.dispatcher.reads - reads, application_statements(counter)


async def test_one_read_per_notification_for_1_or_200_subscribers(
    feed: ChangeFeed, pool: asyncpg.Pool, owner_conn: asyncpg.Connection
) -> None:
    viewers = await _viewers(pool)
    subscriptions: list[Subscription] = []
    try:
        async with journal_writes(owner_conn) as writer:
            # The dispatcher's loop counts in a counter of its own, never a request's.
            counter = feed.dispatcher.statements
            counter.keep_text = True
            subscriptions.append(await _subscribe(feed, viewers[0]))
            await _notification(writer, feed, counter, viewers, subscriptions)  # warm
            one = await _notification(writer, feed, counter, viewers, subscriptions)
            for index in range(199):
                subscriptions.append(await _subscribe(feed, viewers[index % len(viewers)]))
            assert feed.dispatcher.subscriptions == 200
            many = await _notification(writer, feed, counter, viewers, subscriptions)
    finally:
        for subscription in subscriptions:
            subscription.close()
    assert feed.dispatcher.subscriptions == 0
    (one_reads, one_statements), (many_reads, many_statements) = one, many
    assert one_reads == many_reads == 1
    assert many_statements == one_statements
    assert len(one_statements) == 1 and "diary_api.diary_changes" in one_statements[0]


async def _pick_students(conn: asyncpg.Connection, count: int) -> list[int]:
    """Students of different classes (grades with marks)."""
    rows = await conn.fetch(
        """SELECT DISTINCT ON (s.class_id) s.id FROM school.students s
           JOIN school.classes c ON c.id = s.class_id
           WHERE c.grade BETWEEN 2 AND 11 ORDER BY s.class_id, s.id LIMIT $1""",
        count,
    )
    return [row["id"] for row in rows]


async def _counted_page(
    client: httpx.AsyncClient, token: str, since: str, first: int
) -> tuple[list[str], dict[str, Any]]:
    with counting_statements(keep_text=True) as counter:
        page = await changes_page(client, token, since=since, first=first)
    return application_statements(counter), page


async def _every_kind(writer: JournalWriter, students: Sequence[int]) -> None:
    for student in students:
        await writer.add_mark(student, value="5", work_title="Диктант")
        await writer.add_attendance(student, code="Н")
        await writer.add_homework(student, text="Упр. 7")
        lesson = await writer.lesson_of(student)
        await writer.set_topic(lesson["id"], "Повторение")
        await writer.move_lesson(lesson["id"], "каб. 301")
        await writer.set_final_mark(student, "4")


async def test_diary_changes_statements_do_not_grow(
    client: httpx.AsyncClient,
    owner_conn: asyncpg.Connection,
    pool: asyncpg.Pool,
    settings: Settings,
) -> None:
    students = await _pick_students(owner_conn, 3)
    assert len(students) == 3
    async with (
        planted_parent(owner_conn, pool, settings, students[:1], tag=241) as one,
        planted_parent(owner_conn, pool, settings, students, tag=242) as three,
    ):
        starts = [(await changes_page(client, token))["cursor"] for token in (one, three)]
        async with journal_writes(owner_conn) as writer:
            await _every_kind(writer, students)
            counted = [
                await _counted_page(client, token, since, first)
                for token, since in zip((one, three), starts, strict=True)
                for first in (2, 50)
            ]
    sizes = [len(page["events"]) for _, page in counted]
    assert sizes == [2, 6, 2, 18]
    assert {key(e)[0] for e in counted[3][1]["events"]} == {
        "mark", "attendance", "homework", "lesson_topic", "lesson", "final_mark"
    }  # fmt: skip
    statements = [texts for texts, _ in counted]
    for texts in statements[1:]:
        assert sorted(texts) == sorted(statements[0]), texts
    # The viewer's (token and scope) and the page's.
    assert len(statements[0]) == 2, statements[0]
    assert sum("diary_api.diary_changes" in text for text in statements[0]) == 1

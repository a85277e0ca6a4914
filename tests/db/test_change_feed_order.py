"""`diaryChanges` when transactions commit out of id order, or stay open across pages.

A change's id is given when it is written, its visibility when its transaction commits:
a reader that remembered "the last id seen" would skip the change of a transaction that
wrote first and committed last. These tests hold such transactions open on owner
connections of their own (two teachers' sessions in the journal) while a parent pages.
The stand-in's change-version rows are locked per student by a writing transaction, so
while one is held open the other teacher writes for the other child only.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from itertools import pairwise

import asyncpg
import httpx
import pytest

from gateway.core.settings import Settings
from tests.support.change_pages import (
    changes_page,
    children_of,
    free_mark_ids,
    key,
    last_change_id,
    logged,
    owner_connection,
    page_to_end,
    students_of_classes,
    teacher_marks,
)
from tests.support.journal_writes import journal_writes
from tests.support.planted import planted_parent

FAMILY = "parent-two-schools"


@pytest.fixture
async def teacher(
    owner_url: str, owner_conn: asyncpg.Connection
) -> AsyncIterator[asyncpg.Connection]:
    """An owner connection whose transaction the test holds open."""
    conn = await owner_connection(owner_url)
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
async def other_teacher(
    owner_url: str, owner_conn: asyncpg.Connection
) -> AsyncIterator[asyncpg.Connection]:
    """Another owner connection, writing (and committing) meanwhile."""
    conn = await owner_connection(owner_url)
    try:
        yield conn
    finally:
        await conn.close()


async def test_a_change_committed_late_is_not_skipped(
    client: httpx.AsyncClient,
    tokens: dict[str, str],
    owner_conn: asyncpg.Connection,
    teacher: asyncpg.Connection,
    other_teacher: asyncpg.Connection,
) -> None:
    token = tokens[FAMILY]
    kids = await children_of(client, token)
    start = await changes_page(client, token)
    before = await last_change_id(owner_conn)
    async with journal_writes(teacher) as slow, journal_writes(other_teacher) as quick:
        a = teacher.transaction()
        await a.start()
        try:
            mark_id = await slow.add_mark(kids[0], value="2")  # A writes first...
            record_id = await quick.add_attendance(kids[1])  # ...B commits first
            visible = await logged(owner_conn, before, kids)
            assert visible == [("attendance", record_id, kids[1], "added")]  # not A's yet
            between = await changes_page(client, token, since=start["cursor"])
            assert [key(e) for e in between["events"]] == [
                ("attendance", record_id, kids[1], "added")
            ]
        finally:
            await a.commit()
        assert await logged(owner_conn, before, kids) == [  # A's change has the lower id
            ("mark", mark_id, kids[0], "added"),
            ("attendance", record_id, kids[1], "added"),
        ]
        after = await changes_page(client, token, since=between["cursor"])
        assert [key(e) for e in after["events"]] == [("mark", mark_id, kids[0], "added")]
        assert after["events"][0]["mark"]["value"] == "2"
        final = await changes_page(client, token, since=after["cursor"])
        assert final["events"] == []
        # The event's own cursor resumes the same way as the page's.
        again = await changes_page(client, token, since=between["events"][0]["cursor"])
        assert [key(e) for e in again["events"]] == [("mark", mark_id, kids[0], "added")]


async def test_full_pages_around_a_late_commit_give_the_oldest_snapshot_first(
    client: httpx.AsyncClient,
    tokens: dict[str, str],
    owner_conn: asyncpg.Connection,
    teacher: asyncpg.Connection,
    other_teacher: asyncpg.Connection,
) -> None:
    """A page that fills up in the middle of what became visible, then a late commit:
    the rest of that first batch comes before the late change, then the newer ones."""
    token = tokens[FAMILY]
    kids = await children_of(client, token)
    start = await changes_page(client, token)
    async with journal_writes(teacher) as slow, journal_writes(other_teacher) as quick:
        a = teacher.transaction()
        await a.start()
        try:
            late = await slow.add_mark(kids[0], value="3")
            early = [await quick.add_attendance(kids[1]) for _ in range(5)]
            first = await changes_page(client, token, since=start["cursor"], first=3)
            assert first["hasMore"] is True
            assert [key(e)[1] for e in first["events"]] == early[:3]
        finally:
            await a.commit()
        newest = await slow.add_mark(kids[0], value="4")
        second = await changes_page(client, token, since=first["cursor"], first=3)
        third = await changes_page(client, token, since=second["cursor"], first=3)
        fourth = await changes_page(client, token, since=third["cursor"], first=3)
    assert [key(e)[:2] for e in second["events"]] == [
        ("attendance", early[3]),
        ("attendance", early[4]),
        ("mark", late),
    ]
    assert second["hasMore"] is True
    assert [key(e)[:2] for e in third["events"]] == [("mark", newest)]
    assert third["hasMore"] is False
    assert fourth["events"] == []


async def test_a_transaction_open_across_pages_loses_and_repeats_nothing(
    client: httpx.AsyncClient,
    tokens: dict[str, str],
    owner_conn: asyncpg.Connection,
    teacher: asyncpg.Connection,
    other_teacher: asyncpg.Connection,
) -> None:
    token = tokens[FAMILY]
    kids = await children_of(client, token)
    start = await changes_page(client, token)
    before = await last_change_id(owner_conn)
    delivered: list[tuple[str, int, int, str]] = []
    cursor = start["cursor"]
    async with journal_writes(teacher) as slow, journal_writes(other_teacher) as quick:
        a = teacher.transaction()
        await a.start()
        try:
            for round_ in range(5):
                await slow.add_mark(kids[0], value="5")  # held open throughout
                for i in range(4):
                    await quick.add_attendance(kids[1])
                    if i % 2:
                        await quick.add_homework(kids[1], text=f"Упр. {round_}{i}")
                page = await changes_page(client, token, since=cursor, first=3)
                delivered += [key(e) for e in page["events"]]
                cursor = page["cursor"]
        finally:
            await a.commit()
        await quick.add_mark(kids[0], value="3")  # after the commit: any student
        events, _ = await page_to_end(client, token, cursor, first=4)
        delivered += [key(e) for e in events]
        expected = await logged(owner_conn, before, kids)
    assert len(expected) == 5 * 7 + 1
    assert len(delivered) == len(set(delivered)) == len(expected)
    assert sorted(delivered) == sorted(expected)


async def test_concurrent_teachers_while_a_parent_polls(
    client: httpx.AsyncClient,
    owner_url: str,
    owner_conn: asyncpg.Connection,
    pool: asyncpg.Pool,
    settings: Settings,
) -> None:
    """Four teachers commit in whatever order their transactions end while a parent polls
    three events at a time: every mark comes once."""
    students = await students_of_classes(owner_conn, 4)
    first_id = await free_mark_ids(owner_conn)
    rng = random.Random(14)
    async with planted_parent(owner_conn, pool, settings, students, tag=243) as token:
        cursor = (await changes_page(client, token))["cursor"]
        before = await last_change_id(owner_conn)
        writers = [
            asyncio.create_task(teacher_marks(owner_url, s, first_id + i * 1000, rng))
            for i, s in enumerate(students)
        ]
        delivered: list[tuple[str, int, int, str]] = []
        try:
            while not all(task.done() for task in writers):
                page = await changes_page(client, token, since=cursor, first=3)
                delivered += [key(e) for e in page["events"]]
                cursor = page["cursor"]
                await asyncio.sleep(0.005)
            written = [mark_id for task in writers for mark_id in await task]
            events, _ = await page_to_end(client, token, cursor, first=3)
            delivered += [key(e) for e in events]
            expected = await logged(owner_conn, before, students)
        finally:
            await asyncio.gather(*writers, return_exceptions=True)
            await owner_conn.execute(
                "DELETE FROM school.marks WHERE id >= $1 AND id < $2", first_id, first_id + 4000
            )
    assert len(written) >= 4 * 8
    assert len(delivered) == len(set(delivered)) == len(expected)
    assert sorted(delivered) == sorted(expected)
    assert {k[1] for k in delivered} == set(written)
    # Commits did come out of id order (else this test proves little).
    ids = [expected.index(k) for k in delivered]
    assert any(later < earlier for earlier, later in pairwise(ids))

"""The stand-in's change log (fixtures/school_db.sql) as families see it through
`diaryChanges`: a row moved to another student is removed from the first one's diary
and added to the other's; a lesson write that changes nothing a family sees is not an
event."""

from __future__ import annotations

import asyncpg
import httpx

from tests.support.change_pages import changes_page, children_of, key, page_to_end
from tests.support.journal_writes import JournalWriter, journal_writes


async def test_a_mark_moved_to_another_student_leaves_one_diary_for_the_other(
    client: httpx.AsyncClient, tokens: dict[str, str], owner_conn: asyncpg.Connection
) -> None:
    """Removed from the first student's feed, added to the other's (one move, two views)."""
    token, other_token = tokens["parent-two-schools"], tokens["parent-one-school"]
    kids = await children_of(client, token)
    other = await children_of(client, other_token)
    async with journal_writes(owner_conn) as writer:
        mark_id = await writer.add_mark(kids[1], value="2")
        start, other_start = (
            await changes_page(client, token),
            await changes_page(client, other_token),
        )
        lesson = await writer.lesson_of(other[0])
        await owner_conn.execute(  # the teacher corrects the mark's student
            "UPDATE school.marks SET student_id = $2, lesson_id = $3, date = $4 WHERE id = $1",
            mark_id,
            other[0],
            lesson["id"],
            lesson["date"],
        )
        try:
            events, _ = await page_to_end(client, token, start["cursor"])
            other_events, _ = await page_to_end(client, other_token, other_start["cursor"])
        finally:
            await owner_conn.execute(
                "UPDATE school.marks SET student_id = $2 WHERE id = $1", mark_id, kids[1]
            )
    assert [key(e) for e in events] == [("mark", mark_id, kids[1], "removed")]
    assert [key(e) for e in other_events] == [("mark", mark_id, other[0], "added")]


async def test_a_lesson_write_that_changes_nothing_shown_is_not_an_event(
    client: httpx.AsyncClient, tokens: dict[str, str], owner_conn: asyncpg.Connection
) -> None:
    token = tokens["parent-two-schools"]
    kids = await children_of(client, token)
    lesson = await JournalWriter(owner_conn).lesson_of(kids[0])
    stamp = await owner_conn.fetchval(
        "SELECT updated_at FROM school.lessons WHERE id = $1", lesson["id"]
    )
    try:
        async with journal_writes(owner_conn) as writer:
            start = await changes_page(client, token)
            await owner_conn.execute(
                "UPDATE school.lessons SET updated_at = now() WHERE id = $1", lesson["id"]
            )
            await writer.move_lesson(lesson["id"], "к. 7")
            events, _ = await page_to_end(client, token, start["cursor"])
    finally:
        await owner_conn.execute(
            "UPDATE school.lessons SET updated_at = $2 WHERE id = $1", lesson["id"], stamp
        )
    assert [key(e) for e in events] == [("lesson", lesson["id"], kids[0], "changed")]

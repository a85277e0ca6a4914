"""The diary page shows changes without a reload: a teacher's mark written while the page is
open (through the owner connection, as the school system writes it) appears in the week
shown, marked as new, and the page's polite live region says it; a stream cut by the
gateway is resumed from the last event's cursor with nothing lost; a revoked session's
page goes to the sign-in page by itself.

The page keeps one graphql-sse stream: POST /graphql with `Accept: text/event-stream` and
the registered DiaryEvents document by its `documentId` (web/app/live.js). The module's
server keeps a queue of one event per subscriber, so that two events at once end a stream
with SLOW_CONSUMER: the way to cut a browser's stream from the test."""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Any

import asyncpg
import pytest
from playwright.async_api import Page, Request, expect

from auth.store.sessions import cookie_session_id, revoke_session
from tests.browser.test_diary import WEEK, children, open_diary
from tests.browser.test_pages import LOAD_TIMEOUT_MS, registered_hash
from tests.support.environment import GraphQL
from tests.support.journal_writes import journal_writes
from tests.support.live_server import LiveServer

# A change reaches the page within the dispatcher's reaction, the page's 0.3 s settling and
# one re-read of the week: seconds, not a reload.
ARRIVAL_TIMEOUT_MS = 10_000
NEW = re.compile(r"\bmark-new\b")


@pytest.fixture(scope="module")
def live_env() -> dict[str, str]:
    """As the demo (registered documents only for the cookie), and one queued event per
    subscriber: two events at once end the stream (SLOW_CONSUMER)."""
    return {"SCHOOL_GATEWAY_COOKIE_REGISTERED_ONLY": "1", "SCHOOL_GATEWAY_SUBSCRIPTION_QUEUE": "1"}


def graphql_requests(page: Page, live: LiveServer) -> tuple[list[Request], list[str]]:
    """The page's graphql-sse requests, and the names of its other requests to /graphql,
    as they are sent."""
    streams: list[Request] = []
    operations: list[str] = []

    def on_request(request: Request) -> None:
        if request.url != f"{live.url}/graphql":
            return
        if "text/event-stream" in (request.headers.get("accept") or ""):
            streams.append(request)
        else:
            operations.append(str((request.post_data_json or {}).get("operationName")))

    page.on("request", on_request)
    return streams, operations


async def held_lessons(conn: asyncpg.Connection, student_id: int) -> list[asyncpg.Record]:
    """The student's held lessons of the week the page shows, with their subjects."""
    monday = date.fromisoformat(WEEK)
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT l.id, l.date, subject.name AS subject
           FROM school.lessons l
           JOIN school.students s ON s.class_id = l.class_id
           JOIN school.subjects subject ON subject.id = l.subject_id
           WHERE s.id = $1 AND l.date BETWEEN $2 AND $3 AND l.status = 'held'
           ORDER BY l.date, l.number""",
        student_id,
        monday,
        monday + timedelta(days=6),
    )
    assert len(rows) >= 3, f"the week of {WEEK} has too few lessons for student {student_id}"
    return rows


async def open_live_diary(page: Page, live: LiveServer, gql: GraphQL) -> dict[str, Any]:
    """The diary open on the first child's current week with its stream open; the child."""
    await open_diary(page, live)
    child = (await children(gql))[0]
    await expect(page.locator("#children a[aria-current=page]")).to_have_text(child["fullName"])
    await expect(page.locator("#live-notice")).to_have_attribute(
        "data-live", "open", timeout=LOAD_TIMEOUT_MS
    )
    return child


async def test_a_new_mark_appears_and_is_announced_without_a_reload(
    live: LiveServer, page: Page, gql: GraphQL, owner_conn: asyncpg.Connection
) -> None:
    streams, operations = graphql_requests(page, live)
    child = await open_live_diary(page, live, gql)
    await expect(page.locator("#subjects [data-subject-id]").first).to_be_visible()
    # The week was read once, after the stream was open: nothing to read again.
    assert operations == ["DiaryChildren", "DiaryWeek", "DiaryAverages"]
    await page.evaluate("window.loadedOnce = true")  # gone if the page is loaded again
    lesson = (await held_lessons(owner_conn, int(child["id"])))[0]
    notice = page.locator("#live-notice")
    await expect(notice).to_have_attribute("role", "status")
    await expect(notice).to_have_attribute("aria-live", "polite")
    await expect(notice).to_have_text("")
    async with journal_writes(owner_conn) as journal:
        mark_id = await journal.add_mark(
            int(child["id"]), value="5", lesson_id=lesson["id"], work_title="Диктант"
        )
        entry = page.locator(f'[data-lesson-id="{lesson["id"]}"] [data-mark-id="{mark_id}"]')
        await expect(entry).to_be_visible(timeout=ARRIVAL_TIMEOUT_MS)
        await expect(entry).to_contain_text("За что: Диктант")
        await expect(entry).to_have_class(NEW)
        await expect(entry.locator(".mark-badge")).to_have_text("новая")
        await expect(notice).to_have_text(f"Новая отметка: 5 — {lesson['subject']}")
        # The week and the period's averages read again once, by their registered documents.
        assert operations[3:] == ["DiaryWeek", "DiaryAverages"]
    assert await page.evaluate("window.loadedOnce === true"), "the page was loaded again"
    # One stream, the registered document by its id (no query text), from now.
    assert len(streams) == 1
    body = streams[0].post_data_json
    assert body == {
        "operationName": "DiaryEvents",
        "variables": {"since": None},
        "documentId": f"sha256:{registered_hash('DiaryEvents')}",
    }


async def test_a_cut_stream_resumes_from_its_cursor_with_nothing_lost(
    live: LiveServer, page: Page, gql: GraphQL, owner_conn: asyncpg.Connection
) -> None:
    streams, _ = graphql_requests(page, live)
    child = await open_live_diary(page, live, gql)
    student = int(child["id"])
    first, second, third = (await held_lessons(owner_conn, student))[:3]
    notice = page.locator("#live-notice")
    async with journal_writes(owner_conn) as journal:
        one = await journal.add_mark(student, value="4", lesson_id=first["id"])
        await expect(page.locator(f'[data-mark-id="{one}"]')).to_have_class(
            NEW, timeout=ARRIVAL_TIMEOUT_MS
        )
        # Two marks in one commit: two events at once for a queue of one, so the gateway
        # ends the stream (SLOW_CONSUMER) and drops them; the page asks again after its
        # last event and gets both.
        async with owner_conn.transaction():
            two = await journal.add_mark(student, value="3", lesson_id=second["id"])
            three = await journal.add_mark(student, value="2", lesson_id=third["id"])
        for mark_id in (two, three):
            await expect(page.locator(f'[data-mark-id="{mark_id}"]')).to_have_class(
                NEW, timeout=ARRIVAL_TIMEOUT_MS
            )
        # Said, so the page had the events themselves (a stream from now would not).
        await expect(notice).to_contain_text(f"Новая отметка: 3 — {second['subject']}")
        await expect(notice).to_contain_text(f"Новая отметка: 2 — {third['subject']}")
    assert len(streams) == 2, [request.post_data_json for request in streams]
    first_body, resumed_body = (request.post_data_json or {} for request in streams)
    assert first_body["variables"] == {"since": None}
    assert isinstance(resumed_body["variables"]["since"], str), resumed_body


async def test_a_revoked_sessions_page_goes_to_sign_in_by_itself(
    live: LiveServer, page: Page, gql: GraphQL, pool: asyncpg.Pool
) -> None:
    await open_live_diary(page, live, gql)
    cookie = next(c["value"] for c in await page.context.cookies() if c["name"] == "sg_session")
    session = cookie_session_id(live.settings, cookie)
    assert session is not None and await revoke_session(pool, session) is not None
    # No click, no navigation: the stream ends with SESSION_REVOKED within the gateway's
    # re-check (2 s by default) and the page signs in again.
    await expect(page).to_have_url(
        re.compile(r"/auth/login\?return_to=%2Fdiary"), timeout=ARRIVAL_TIMEOUT_MS
    )
    await expect(page.locator("#login")).to_be_visible()

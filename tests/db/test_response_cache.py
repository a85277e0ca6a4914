"""The response cache: a repeated query is answered from memory, yet every write shows.

Each test asks through the real app as a planted parent, writes to the journal as a
teacher would (`owner_conn`, straight into the `school` tables), and reads again: the
very next request must show the change. A hit is recognised by the statements it sends
(the viewer's scope and the change versions only, no diary statement). Every change is
undone afterwards.
"""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from collections.abc import AsyncIterator, Callable
from dataclasses import fields
from datetime import date, timedelta
from typing import Any, ClassVar

import asyncpg
import httpx
import pytest
from starlette.applications import Starlette

from auth.store.audit import Recorder
from auth.viewer import Role, Viewer
from gateway.app import create_app
from gateway.core.db import counting_statements
from gateway.core.settings import Settings
from gateway.http.endpoint import GraphQLEndpoint
from gateway.http.response_cache import (
    MAX_BODY_BYTES,
    CachedResponse,
    ResponseCache,
    ResponseKey,
    ScopeGuesses,
    Speculation,
    _entry_bytes,
)
from tests.support.environment import TODAY
from tests.support.planted import planted_parent, post_graphql

MONDAY = TODAY - timedelta(days=TODAY.weekday())
WEEK = {"from": MONDAY.isoformat(), "to": (MONDAY + timedelta(days=6)).isoformat()}

WEEK_QUERY = """
query CachedWeek($from: Date!, $to: Date!) {
  myChildren {
    id fullName school { name }
    diary(from: $from, to: $to) {
      days { date lessons { id room status topic subject { name }
                            homework { text } marks { id value weight }
                            attendance { code minutesLate } } }
    }
  }
}
"""


class Asker:
    """Asks the week query as one token; tells hits from misses by the statements sent."""

    def __init__(self, client: httpx.AsyncClient, token: str, cache: ResponseCache) -> None:
        self.client = client
        self.token = token
        self.cache = cache
        self.statements: list[str] = []  # of the last request

    async def ask(self, query: str = WEEK_QUERY, **variables: Any) -> tuple[dict[str, Any], bool]:
        hits = self.cache.hits
        with counting_statements(keep_text=True) as counter:
            payload = await post_graphql(self.client, self.token, query, variables or WEEK)
        hit = self.cache.hits == hits + 1
        self.statements = list(counter.statements)
        diary_read = any("diary_api.students s" in text for text in counter.statements)
        assert not (hit and diary_read), "a hit reads no diary data"
        return payload, hit

    async def week(self) -> tuple[dict[str, Any], bool]:
        payload, hit = await self.ask()
        assert "errors" not in payload, payload
        return payload, hit


def lessons(payload: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """Every lesson of every child in the payload, by id."""
    return {
        int(lesson["id"]): lesson
        for child in payload["data"]["myChildren"]
        for day in child["diary"]["days"]
        for lesson in day["lessons"]
    }


@pytest.fixture(scope="module")
async def family(owner_conn: asyncpg.Connection) -> dict[str, int]:
    """A student with marks, homework and a topic at lessons of this week, and such a lesson."""
    row = await owner_conn.fetchrow(
        """SELECT st.id AS student_id, l.id AS lesson_id, l.date, l.class_id
           FROM school.students st
           JOIN school.lessons l ON l.class_id = st.class_id
           WHERE l.date BETWEEN $1 AND $2
             AND EXISTS (SELECT 1 FROM school.lesson_topics t WHERE t.lesson_id = l.id)
             AND EXISTS (SELECT 1 FROM school.homework h WHERE h.lesson_id = l.id)
             AND EXISTS (SELECT 1 FROM school.marks m
                         WHERE m.student_id = st.id AND m.lesson_id = l.id)
           ORDER BY st.id, l.id LIMIT 1""",
        MONDAY,
        MONDAY + timedelta(days=6),
    )
    assert row is not None, "the data set has a full diary this week"
    other = await owner_conn.fetchval(
        """SELECT st.id FROM school.students st
           WHERE st.school_id <> (SELECT school_id FROM school.students WHERE id = $1)
             AND EXISTS (SELECT 1 FROM school.marks m WHERE m.student_id = st.id)
           ORDER BY st.id LIMIT 1""",
        row["student_id"],
    )
    return {**dict(row), "other_student_id": other}


def response_cache(app: Starlette) -> ResponseCache:
    cache = endpoint(app).response_cache
    assert cache is not None
    return cache


@pytest.fixture
async def asker(
    app: Starlette,
    client: httpx.AsyncClient,
    owner_conn: asyncpg.Connection,
    pool: asyncpg.Pool,
    settings: Settings,
    family: dict[str, int],
) -> AsyncIterator[Asker]:
    students = [family["student_id"], family["other_student_id"]]
    async with planted_parent(owner_conn, pool, settings, students, tag=40) as token:
        yield Asker(client, token, response_cache(app))


def endpoint(app: Starlette) -> GraphQLEndpoint:
    found: GraphQLEndpoint = app.state.graphql_endpoint
    return found


async def test_the_cache_is_on_by_default(app: Starlette) -> None:
    assert Settings.from_env({"SCHOOL_GATEWAY_DEV": "1"}).response_cache is True
    off = Settings.from_env({"SCHOOL_GATEWAY_DEV": "1", "SCHOOL_GATEWAY_RESPONSE_CACHE": "0"})
    assert off.response_cache is False
    assert endpoint(app).response_cache is not None


async def test_a_repeated_query_is_a_hit_with_the_same_body(asker: Asker) -> None:
    first, _ = await asker.week()
    second, second_hit = await asker.week()
    assert second_hit and second == first
    assert len(first["data"]["myChildren"]) == 2
    assert lessons(first), "the week has lessons"


async def test_a_hit_is_audited_like_the_miss(
    asker: Asker, app: Starlette, owner_conn: asyncpg.Connection
) -> None:
    await asker.week()
    _, hit = await asker.week()
    assert hit
    recorder: Recorder = app.state.auth.recorder
    async with asyncio.timeout(10):
        await recorder.flush()
    rows = await owner_conn.fetch(
        """SELECT account_id, role, student_ids, operation_name FROM gateway.access_audit
           WHERE operation_name = 'CachedWeek' ORDER BY id DESC LIMIT 2"""
    )
    assert len(rows) == 2
    assert dict(rows[0]) == dict(rows[1])
    assert rows[0]["role"] == "PARENT" and len(rows[0]["student_ids"]) == 2


async def test_a_new_mark_then_its_update_then_its_deletion_show_at_once(
    asker: Asker, owner_conn: asyncpg.Connection, family: dict[str, Any]
) -> None:
    lesson_id = family["lesson_id"]
    await asker.week()
    mark_id = await owner_conn.fetchval("SELECT max(id) + 1 FROM school.marks")
    await owner_conn.execute(
        """INSERT INTO school.marks (id, student_id, lesson_id, date, work_type_id, value,
                                     numeric_value, weight)
           VALUES ($1, $2, $3, $4, (SELECT min(id) FROM school.work_types), '2', 2, 1)""",
        mark_id,
        family["student_id"],
        lesson_id,
        family["date"],
    )
    try:
        payload, hit = await asker.week()
        assert not hit
        marks = {m["id"]: m for m in lessons(payload)[lesson_id]["marks"]}
        assert marks[str(mark_id)]["value"] == "2"
        await owner_conn.execute("UPDATE school.marks SET value = '3' WHERE id = $1", mark_id)
        payload, hit = await asker.week()
        assert not hit
        marks = {m["id"]: m for m in lessons(payload)[lesson_id]["marks"]}
        assert marks[str(mark_id)]["value"] == "3"
    finally:
        await owner_conn.execute("DELETE FROM school.marks WHERE id = $1", mark_id)
    payload, hit = await asker.week()
    assert not hit
    assert str(mark_id) not in {m["id"] for m in lessons(payload)[lesson_id]["marks"]}
    _, hit = await asker.week()
    assert hit


PRIMARY_KEYS = {"lessons": "id", "lesson_topics": "lesson_id", "homework": "id", "subjects": "id"}


def _room(lesson: dict[str, Any]) -> Any:
    return lesson["room"]


def _topic(lesson: dict[str, Any]) -> Any:
    return lesson["topic"]


def _homework(lesson: dict[str, Any]) -> Any:
    return lesson["homework"][0]["text"]


def _subject(lesson: dict[str, Any]) -> Any:
    return lesson["subject"]["name"]


@pytest.mark.parametrize(
    ("table", "column", "key", "read"),
    [
        ("lessons", "room", "id", _room),
        ("lesson_topics", "topic", "lesson_id", _topic),
        ("homework", "text", "lesson_id", _homework),
        ("subjects", "name", "id", _subject),
    ],
)
async def test_a_changed_lesson_topic_homework_or_subject_shows_at_once(
    asker: Asker,
    owner_conn: asyncpg.Connection,
    family: dict[str, Any],
    table: str,
    column: str,
    key: str,
    read: Callable[[dict[str, Any]], Any],
) -> None:
    lesson_id = family["lesson_id"]
    key_value = lesson_id
    if table == "subjects":
        key_value = await owner_conn.fetchval(
            "SELECT subject_id FROM school.lessons WHERE id = $1", lesson_id
        )
    value = f"Изменено: {table}"
    await asker.week()
    _, hit = await asker.week()
    assert hit
    old = await owner_conn.fetch(
        f"SELECT {PRIMARY_KEYS[table]} AS pk, {column} AS old FROM school.{table} WHERE {key} = $1",
        key_value,
    )
    assert old
    await owner_conn.execute(
        f"UPDATE school.{table} SET {column} = $2 WHERE {key} = $1", key_value, value
    )
    try:
        payload, hit = await asker.week()
        assert not hit
        assert read(lessons(payload)[lesson_id]) == value
    finally:
        for row in old:
            await owner_conn.execute(
                f"UPDATE school.{table} SET {column} = $2 WHERE {PRIMARY_KEYS[table]} = $1",
                row["pk"],
                row["old"],
            )
    payload, hit = await asker.week()
    assert not hit
    assert read(lessons(payload)[lesson_id]) != value


async def test_new_attendance_shows_at_once(
    asker: Asker, owner_conn: asyncpg.Connection, family: dict[str, Any]
) -> None:
    lesson_id = family["lesson_id"]
    existing = await owner_conn.fetchrow(
        "SELECT * FROM school.attendance WHERE student_id = $1 AND lesson_id = $2",
        family["student_id"],
        lesson_id,
    )
    await owner_conn.execute(
        "DELETE FROM school.attendance WHERE student_id = $1 AND lesson_id = $2",
        family["student_id"],
        lesson_id,
    )
    try:
        payload, _ = await asker.week()
        assert lessons(payload)[lesson_id]["attendance"] is None
        _, hit = await asker.week()
        assert hit
        await owner_conn.execute(
            """INSERT INTO school.attendance (id, student_id, lesson_id, date, code, minutes_late)
               VALUES ((SELECT max(id) + 1 FROM school.attendance), $1, $2, $3, 'О', 7)""",
            family["student_id"],
            lesson_id,
            family["date"],
        )
        payload, hit = await asker.week()
        assert not hit
        assert lessons(payload)[lesson_id]["attendance"] == {"code": "О", "minutesLate": 7}
    finally:
        await owner_conn.execute(
            "DELETE FROM school.attendance WHERE student_id = $1 AND lesson_id = $2",
            family["student_id"],
            lesson_id,
        )
        if existing is not None:
            columns = list(existing.keys())
            await owner_conn.execute(
                f"INSERT INTO school.attendance ({', '.join(columns)}) "
                f"VALUES ({', '.join(f'${n}' for n in range(1, len(columns) + 1))})",
                *existing.values(),
            )


async def test_a_removed_parent_child_link_shows_at_once(
    asker: Asker, owner_conn: asyncpg.Connection, family: dict[str, Any]
) -> None:
    payload, _ = await asker.week()
    assert len(payload["data"]["myChildren"]) == 2
    _, hit = await asker.week()
    assert hit
    link = await owner_conn.fetchrow(
        """SELECT ps.parent_id, ps.student_id FROM school.parent_students ps
           JOIN school.parents p ON p.id = ps.parent_id
           WHERE ps.student_id = $1 AND p.last_name = 'Проверкина'""",
        family["other_student_id"],
    )
    assert link is not None
    await owner_conn.execute(
        "DELETE FROM school.parent_students WHERE parent_id = $1 AND student_id = $2",
        link["parent_id"],
        link["student_id"],
    )
    try:
        payload, hit = await asker.week()
        assert not hit
        assert [c["id"] for c in payload["data"]["myChildren"]] == [str(family["student_id"])]
    finally:
        await owner_conn.execute(
            "INSERT INTO school.parent_students (parent_id, student_id) VALUES ($1, $2)",
            link["parent_id"],
            link["student_id"],
        )


async def test_another_family_never_gets_the_cached_answer(
    asker: Asker,
    app: Starlette,
    client: httpx.AsyncClient,
    owner_conn: asyncpg.Connection,
    pool: asyncpg.Pool,
    settings: Settings,
    family: dict[str, Any],
) -> None:
    mine, _ = await asker.week()
    async with planted_parent(
        owner_conn, pool, settings, [family["other_student_id"]], tag=41
    ) as token:
        theirs, hit = await Asker(client, token, response_cache(app)).week()
    assert not hit
    assert [c["id"] for c in theirs["data"]["myChildren"]] == [str(family["other_student_id"])]
    assert theirs != mine


async def test_errors_are_never_cached(asker: Asker, family: dict[str, Any]) -> None:
    query = "query Other($id: ID!) { student(id: $id) { id fullName } }"
    outsider = str(family["student_id"] + 1)
    for _ in range(2):
        payload, hit = await asker.ask(query, id=outsider)
        assert not hit
        assert payload["errors"][0]["extensions"]["code"] == "FORBIDDEN"
        assert payload["data"] == {"student": None}


async def test_other_variables_are_another_entry(asker: Asker) -> None:
    await asker.week()
    last_week = {
        "from": (MONDAY - timedelta(days=7)).isoformat(),
        "to": (MONDAY - timedelta(days=1)).isoformat(),
    }
    payload, hit = await asker.ask(**last_week)
    assert not hit
    days = [day["date"] for day in payload["data"]["myChildren"][0]["diary"]["days"]]
    assert days[0] == last_week["from"]


def test_the_cache_is_bounded() -> None:
    small = CachedResponse("v", b"1234", ())
    per_entry = _entry_bytes(0, small)  # the body, plus an estimate of the key and entry
    assert per_entry > len(small.body)
    cache = ResponseCache(max_entries=2, max_bytes=2 * per_entry + 3)
    for n in range(3):
        cache.put(n, small)
    assert len(cache) == 2 and cache.get(0, "v") is None and cache.get(2, "v") is not None
    assert cache.bytes == 2 * per_entry
    cache.put(3, CachedResponse("v", b"12345678", ()))  # 4 bytes more: only one fits
    assert len(cache) == 1 and cache.bytes == per_entry + 4
    assert cache.get(3, "w") is None, "other versions are a miss"
    cache.put(4, CachedResponse("v", b"x" * (MAX_BODY_BYTES + 1), ()))
    assert 4 not in cache, "a body over the limit is not kept"


async def test_unused_variables_and_extensions_are_not_in_the_key(asker: Asker) -> None:
    """Issue 9, item 3: a 1 MB variable the operation does not define pinned ~1 MB per
    entry (its whole text was in the key); now the key is a fixed-size digest of the
    variables the operation uses, and answers are shared whatever else is sent."""
    await asker.week()
    cache = asker.cache
    entries, held = len(cache), cache.bytes
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n in range(20):
            padding = f"{n}" + "ы" * 450_000  # ~0.9 MB of UTF-8 each time, never the same
            response = await asker.client.post(
                "/graphql",
                json={
                    "query": WEEK_QUERY,
                    "variables": {**WEEK, "unused": padding},
                    "extensions": {"trace": padding[:1000]},
                },
                headers={"Authorization": f"Bearer {asker.token}"},
            )
            assert response.status_code == 200 and "errors" not in response.json()
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    print(
        f"20 requests with a 1 MB unused variable: cache {held} -> {cache.bytes} bytes, "
        f"{entries} -> {len(cache)} entries, traced memory +{grown / 2**20:.2f} MiB"
    )
    assert cache.hits >= 20 and len(cache) == entries and cache.bytes == held
    assert grown < 10 * 2**20, grown
    for key in list(cache._entries._entries):
        assert isinstance(key, ResponseKey) and len(key.request) == 32


async def test_the_key_follows_the_variables_the_operation_uses(asker: Asker) -> None:
    await asker.week()
    _, hit = await asker.ask(WEEK_QUERY.replace("CachedWeek", "CachedWeekRenamed"), **WEEK)
    assert not hit, "another text is another entry"
    _, hit = await asker.ask(WEEK_QUERY, **WEEK, other="value")
    assert hit, "a variable the operation does not define changes nothing"
    _, hit = await asker.ask(WEEK_QUERY, **{**WEEK, "to": WEEK["from"]})
    assert not hit, "a variable the operation uses does"


async def test_every_journal_table_is_change_tracked(owner_conn: asyncpg.Connection) -> None:
    untracked = await owner_conn.fetch(
        """SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = 'school' AND c.relkind = 'r'
             AND NOT EXISTS (SELECT 1 FROM pg_trigger t
                             WHERE t.tgrelid = c.oid AND t.tgname LIKE 'versions%')"""
    )
    assert [row["relname"] for row in untracked] == []


async def test_a_known_token_reads_the_versions_once_alongside_its_viewer(asker: Asker) -> None:
    await asker.week()
    payload, hit = await asker.ask()
    assert hit and "errors" not in payload
    versions = [text for text in asker.statements if "diary_api.student_versions" in text]
    assert len(versions) == 1


async def test_a_wrong_guess_is_not_used() -> None:
    async def versions() -> str:
        return "guessed"

    speculation = Speculation(frozenset({1, 2}), versions())
    assert await speculation.versions_for(frozenset({1})) is None
    assert await speculation.versions_for(frozenset({1, 2})) == "guessed"
    await speculation.settle()


async def test_an_unused_failed_guess_is_settled_quietly() -> None:
    async def versions() -> str:
        raise asyncpg.QueryCanceledError("canceling statement due to statement timeout")

    speculation = Speculation(frozenset({1}), versions())
    await speculation.settle()  # no exception, no "never retrieved" warning


def test_guesses_are_bounded_and_forgotten() -> None:
    guesses = ScopeGuesses(size=2)
    viewers = [
        Viewer(account_id=str(n), role=Role.PARENT, display_name="", student_ids=frozenset({n}))
        for n in range(3)
    ]
    for n, viewer in enumerate(viewers):
        guesses.remember(f"Bearer {n}", viewer)
    assert guesses.get("Bearer 0") is None and guesses.get("Bearer 2") == viewers[2]
    guesses.remember("Bearer 2", None)
    assert guesses.get("Bearer 2") is None and guesses.get(None) is None


async def test_a_request_not_cached_reads_its_versions_once(asker: Asker) -> None:
    await asker.week()
    last_week = {
        "from": (MONDAY - timedelta(days=7)).isoformat(),
        "to": (MONDAY - timedelta(days=1)).isoformat(),
    }
    _, hit = await asker.ask(**last_week)  # a known token, an answer not cached: no guess
    assert not hit
    versions = [text for text in asker.statements if "diary_api.student_versions" in text]
    assert len(versions) == 1


class _MidnightSettings(Settings):
    """Settings whose today() is Sunday on the first call, then Monday once, then Sunday:
    midnight passing between a request's cache key and its execution, then a clock
    seen from another process (or a test) that is still on Sunday."""

    days: ClassVar[list[date]] = []

    def today(self) -> date:
        return self.days.pop(0) if self.days else MONDAY - timedelta(days=1)


async def test_the_key_and_the_execution_share_one_today(
    owner_conn: asyncpg.Connection, pool: asyncpg.Pool, settings: Settings, family: dict[str, int]
) -> None:
    sunday = MONDAY - timedelta(days=1)
    clock = _MidnightSettings(**{f.name: getattr(settings, f.name) for f in fields(settings)})
    transport = httpx.ASGITransport(app=create_app(clock, pool=pool))
    _MidnightSettings.days = [sunday, MONDAY]
    query = "{ myChildren { diary { from to } } }"
    async with (
        planted_parent(owner_conn, pool, settings, [family["student_id"]], tag=41) as token,
        httpx.AsyncClient(transport=transport, base_url="http://testserver") as client,
    ):
        first = await post_graphql(client, token, query)
        second = await post_graphql(client, token, query)
    # Sunday's default window is the week that ends on it, in both answers (never
    # Monday's week stored under Sunday's key).
    expected = {"from": (sunday - timedelta(days=6)).isoformat(), "to": sunday.isoformat()}
    assert first["data"]["myChildren"] == [{"diary": expected}], first
    assert second == first


async def test_every_graphql_answer_is_no_store(
    asker: Asker, client: httpx.AsyncClient, settings: Settings
) -> None:
    """A viewer's answer, from the cache or not, and the errors, are never stored by a
    shared or browser cache (the review found no Cache-Control on them)."""
    headers = {"Accept": "application/json", "Authorization": f"Bearer {asker.token}"}
    body = {"query": WEEK_QUERY, "variables": WEEK}
    hits = asker.cache.hits
    answers = [await client.post("/graphql", json=body, headers=headers) for _ in range(2)]
    assert asker.cache.hits >= hits + 1, "the second answer came from the cache"
    answers.append(await client.post("/graphql", json={"query": "{ nope }"}, headers=headers))
    bad_token = {**headers, "Authorization": "Bearer not-a-token"}
    answers.append(await client.post("/graphql", json=body, headers=bad_token))
    answers.append(await client.put("/graphql", json=body, headers=headers))
    answers.append(await client.post("/graphql", json=body, headers={"Accept": "image/png"}))
    statuses = [answer.status_code for answer in answers]
    assert statuses == [200, 200, 200, 401, 405, 406]
    assert "errors" not in answers[1].json() and answers[1].json() == answers[0].json()
    assert [answer.headers.get("cache-control") for answer in answers] == ["no-store"] * 6

"""The gateway's records: the access audit through real HTTP, append-only tables,
sign-in events stored masked, and the recorder's behaviour off the request path and when
the database is down. Rows are told apart from other tests' rows by a unique operation
name / login per test (tests/support/recorder_fixtures.py).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest
from starlette.applications import Starlette

from auth.store.audit import AccessEvent, Recorder, SignInEvent, sign_in_row
from fixtures.demo import demo_account
from gateway.core import identifiers as snils
from gateway.core.db import counting_statements
from gateway.core.identifiers import masked_phone
from gateway.core.settings import Settings
from gateway.http.protocol import JSON
from tests.support.environment import GraphQL
from tests.support.journal import family_student_ids
from tests.support.planted import error_codes
from tests.support.recorder_fixtures import (
    ATTACKER,
    VICTIM_FAMILY,
    account_id,
    assert_no_personal_data,
    audit_rows,
    op,
    open_closed_pool,
    sign_in_rows,
)


@pytest.fixture
def recorder(app: Starlette) -> Recorder:
    """The application's own recorder (the one gateway.http.endpoint writes to)."""
    app_recorder: Recorder = app.state.auth.recorder
    return app_recorder


@pytest.fixture
async def closed_pool(database_url: str, settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    """A real pool to the test database, already closed: the database is 'down'."""
    yield await open_closed_pool(database_url, settings)


# --- the access audit, through HTTP --------------------------------------------------


async def test_a_diary_query_writes_one_row_with_exactly_the_students_returned(
    gql: GraphQL,
    owner_conn: asyncpg.Connection,
    pool: asyncpg.Pool,
    recorder: Recorder,
) -> None:
    first, *_others = await family_student_ids(owner_conn, ATTACKER)
    name = op("Diary")
    before = datetime.now(UTC)
    payload = await gql(
        f'query {name}($id: ID!) {{ student(id: $id) {{ id diary(from: "2026-11-23", '
        'to: "2026-11-29") { lessons { id } marks { value } } } }',
        {"id": str(first)},
        account=ATTACKER,
    )
    assert "errors" not in payload, payload
    assert payload["data"]["student"]["id"] == str(first)
    rows = await audit_rows(owner_conn, recorder, name)
    assert len(rows) == 1
    (row,) = rows
    assert row["account_id"] == await account_id(pool, ATTACKER)
    assert row["role"] == "PARENT"
    assert row["student_ids"] == [first]
    assert row["operation_name"] == name
    assert before - timedelta(seconds=1) <= row["at"] <= datetime.now(UTC)


async def test_a_parent_of_two_schools_is_audited_for_both_children(
    gql: GraphQL,
    owner_conn: asyncpg.Connection,
    pool: asyncpg.Pool,
    recorder: Recorder,
) -> None:
    expected = await family_student_ids(owner_conn, VICTIM_FAMILY)
    schools = await owner_conn.fetchval(
        "SELECT count(DISTINCT school_id) FROM school.students WHERE id = ANY($1::int[])",
        expected,
    )
    assert len(expected) == 2 and schools == 2
    name = op("TwoSchools")
    payload = await gql(
        f"query {name} {{ myChildren {{ id diary {{ marks {{ value }} }} }} }}",
        account=VICTIM_FAMILY,
    )
    returned = sorted(int(child["id"]) for child in payload["data"]["myChildren"])
    assert returned == expected
    (row,) = await audit_rows(owner_conn, recorder, name)
    assert row["student_ids"] == expected
    assert row["account_id"] == await account_id(pool, VICTIM_FAMILY)
    assert row["role"] == "PARENT"


async def test_a_student_is_audited_as_a_student(
    gql: GraphQL, owner_conn: asyncpg.Connection, recorder: Recorder
) -> None:
    (own,) = await family_student_ids(owner_conn, "student-young")
    name = op("Student")
    payload = await gql(f"query {name} {{ myChildren {{ id }} }}", account="student-young")
    assert payload["data"]["myChildren"] == [{"id": str(own)}]
    (row,) = await audit_rows(owner_conn, recorder, name)
    assert (row["role"], row["student_ids"]) == ("STUDENT", [own])


async def test_only_the_own_child_is_audited_when_a_foreign_one_is_refused(
    gql: GraphQL, owner_conn: asyncpg.Connection, recorder: Recorder
) -> None:
    (own, *_) = await family_student_ids(owner_conn, ATTACKER)
    (victim, *_) = await family_student_ids(owner_conn, VICTIM_FAMILY)
    name = op("Mixed")
    payload = await gql(
        f"query {name}($own: ID!, $victim: ID!) {{ own: student(id: $own) {{ id "
        "diary { lessons { id } } } victim: student(id: $victim) { id diary { lessons { id } } } }",
        {"own": str(own), "victim": str(victim)},
        account=ATTACKER,
    )
    assert error_codes(payload) == ["FORBIDDEN"]
    assert payload["data"]["victim"] is None
    (row,) = await audit_rows(owner_conn, recorder, name)
    assert row["student_ids"] == [own]


async def test_a_forbidden_only_request_writes_no_row_and_returns_no_data(
    gql: GraphQL, owner_conn: asyncpg.Connection, recorder: Recorder
) -> None:
    for victim in await family_student_ids(owner_conn, VICTIM_FAMILY):
        name = op("Forbidden")
        payload = await gql(
            f"query {name}($id: ID!) {{ student(id: $id) {{ id diary {{ marks {{ value }} }} }} }}",
            {"id": str(victim)},
            account=ATTACKER,
        )
        assert error_codes(payload) == ["FORBIDDEN"]
        assert payload["data"] == {"student": None}
        assert await audit_rows(owner_conn, recorder, name) == []


async def test_an_anonymous_request_writes_no_row(
    gql: GraphQL, owner_conn: asyncpg.Connection, recorder: Recorder
) -> None:
    (victim, *_) = await family_student_ids(owner_conn, VICTIM_FAMILY)
    for query in (
        "query NAME { myChildren { id } }",
        f'query NAME {{ student(id: "{victim}") {{ id diary {{ lessons {{ id }} }} }} }}',
    ):
        name = op("Anonymous")
        payload = await gql(query.replace("NAME", name))
        assert set(error_codes(payload)) == {"UNAUTHENTICATED"}
        assert not payload["data"] or all(value is None for value in payload["data"].values())
        assert await audit_rows(owner_conn, recorder, name) == []


@pytest.mark.parametrize("account", ["parent-one-school", "school-admin", "parent-unregistered"])
async def test_a_request_without_student_data_writes_no_row(
    gql: GraphQL, owner_conn: asyncpg.Connection, recorder: Recorder, account: str
) -> None:
    name = op("Viewer")
    payload = await gql(f"query {name} {{ viewer {{ role displayName }} }}", account=account)
    assert payload["data"]["viewer"]["displayName"] == demo_account(account).full_name
    assert await audit_rows(owner_conn, recorder, name) == []


async def test_an_empty_family_writes_no_row(
    gql: GraphQL, owner_conn: asyncpg.Connection, recorder: Recorder
) -> None:
    name = op("Nobody")
    payload = await gql(f"query {name} {{ myChildren {{ id }} }}", account="parent-unregistered")
    assert payload == {"data": {"myChildren": []}}
    assert await audit_rows(owner_conn, recorder, name) == []


async def test_get_requests_are_audited_too(
    client: httpx.AsyncClient,
    tokens: dict[str, str],
    owner_conn: asyncpg.Connection,
    recorder: Recorder,
) -> None:
    (own,) = await family_student_ids(owner_conn, "student-young")
    name = op("Get")
    response = await client.get(
        "/graphql",
        params={"query": f"query {name} {{ myChildren {{ id fullName }} }}"},
        headers={
            "Authorization": f"Bearer {tokens['student-young']}",
            "Accept": "application/json",
        },
    )
    assert response.status_code == 200, response.text
    (row,) = await audit_rows(owner_conn, recorder, name)
    assert row["student_ids"] == [own]


# --- append-only ----------------------------------------------------------------------


@pytest.mark.parametrize("table", ["gateway.access_audit", "gateway.sign_in_events"])
@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE {table} SET at = now()",
        "DELETE FROM {table}",
        "TRUNCATE {table}",
    ],
)
async def test_the_gateway_role_cannot_change_or_remove_records(
    pool: asyncpg.Pool, table: str, statement: str
) -> None:
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
        await pool.execute(statement.format(table=table))


async def test_the_gateway_role_can_append_and_read(pool: asyncpg.Pool) -> None:
    recorder = Recorder(lambda: pool)
    login = f"rec.append.{uuid.uuid4().hex[:8]}"
    recorder.sign_in(SignInEvent(method="PASSWORD", outcome="INVALID_CREDENTIALS", login=login))
    await recorder.close()
    assert recorder.written == 1
    count = await pool.fetchval(
        "SELECT count(*) FROM gateway.sign_in_events WHERE login = $1", login
    )
    assert count == 1


# --- sign-in events -------------------------------------------------------------------


async def test_sign_in_events_are_stored_masked(
    pool: asyncpg.Pool, owner_conn: asyncpg.Connection
) -> None:
    person = demo_account(VICTIM_FAMILY)
    assert person.snils is not None and person.phone is not None
    login = f"rec.masked.{uuid.uuid4().hex[:8]}"
    identity = await account_id(pool, VICTIM_FAMILY)
    at = datetime(2026, 11, 27, 8, 30, tzinfo=UTC)
    recorder = Recorder(lambda: pool)
    recorder.sign_in(
        SignInEvent(
            method="ESIA",
            outcome="SIGNED_IN",
            snils=snils.formatted(person.snils),
            phone=person.phone,
            login=login,
            school_ids=(3, 1),
            account_id=identity,
            client_address="192.0.2.7",
            at=at,
        )
    )
    recorder.sign_in(SignInEvent(method="ESIA", outcome="NOT_IN_REGISTRY", login=login))
    await recorder.close()
    first, second = await sign_in_rows(owner_conn, login)
    assert {key: value for key, value in first.items() if key != "id"} == {
        "at": at,
        "method": "ESIA",
        "outcome": "SIGNED_IN",
        "masked_snils": snils.masked(person.snils),
        "masked_phone": "+7912***02",
        "login": login,
        "school_ids": [1, 3],  # sorted
        "account_id": identity,
        "client_address": "192.0.2.7",
    }
    stored = " ".join(str(value) for value in first.values())
    assert person.snils not in stored and snils.formatted(person.snils) not in stored
    assert person.phone not in stored
    assert (second["outcome"], second["masked_snils"], second["school_ids"]) == (
        "NOT_IN_REGISTRY",
        None,
        [],
    )


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("smirnov.petr", "smirnov.petr"),
        ("246-813-579 94", "***"),  # a parent's SNILS typed into the school login form
        ("24681357994", "***"),
        ("+7 912 555-01-02", "***"),
        ("8(912)5550102", "***"),
        ("ivanov 04.03.2012", "ivanov ***"),
        ("3f2a1b0c-1234-4abc-9def-012345678901", "3f2a1b0c-1234-4abc-9def-012345678901"),
        ("x" * 100, "x" * 64),
    ],
)
def test_a_login_that_is_personal_data_is_stored_masked(typed: str, stored: str) -> None:
    row = sign_in_row(SignInEvent(method="PASSWORD", outcome="INVALID_CREDENTIALS", login=typed))
    assert row is not None and row.login == stored


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+79125550101", "+7912***01"),
        ("8 (912) 555-01-02", "+7912***02"),
        ("79125550103", "+7912***03"),
        ("555-01-04", "***04"),
        ("12", "***"),
        ("", ""),
        (None, ""),
    ],
)
def test_masked_phone(raw: str | None, expected: str) -> None:
    assert masked_phone(raw) == expected


async def test_bad_events_are_dropped_without_failing_the_caller(
    pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = Recorder(lambda: pool)
    recorder.sign_in(SignInEvent(method="TELEPATHY", outcome="SIGNED_IN", snils="11223344595"))
    recorder.access(
        AccessEvent(
            at=datetime.now(UTC),
            account_id="not-a-uuid",
            role="PARENT",
            student_ids=(1,),
            operation_name=None,
        )
    )
    recorder.access(
        AccessEvent(
            at=datetime.now(UTC),
            account_id=str(uuid.uuid4()),
            role="PARENT",
            student_ids=(),
            operation_name=None,
        )
    )
    assert recorder.pending == 0
    await recorder.close()
    assert "11223344595" not in caplog.text


# --- the recorder off the request path ------------------------------------------------


async def test_the_writer_never_counts_against_the_request_that_started_it(
    pool: asyncpg.Pool,
) -> None:
    recorder = Recorder(lambda: pool)
    with counting_statements() as counter:
        recorder.sign_in(SignInEvent(method="PASSWORD", outcome="SIGNED_IN", login="rec.ctx"))
        assert counter.count == 0  # enqueueing sends nothing
        await recorder.flush()
    assert recorder.written == 1
    assert counter.count == 0
    await recorder.close()


async def test_a_batch_is_one_statement(pool: asyncpg.Pool, owner_conn: asyncpg.Connection) -> None:
    identity = await account_id(pool, ATTACKER)
    name = op("Batch")
    login = f"rec.batch.{uuid.uuid4().hex[:8]}"
    statements: list[str] = []

    def watch(record: asyncpg.connection.LoggedQuery) -> None:
        statements.append(record.query)

    async with pool.acquire() as conn:
        conn.add_query_logger(watch)
        try:
            recorder = Recorder(lambda: _SingleConnectionPool(conn))
            for index in range(50):
                recorder.access(AccessEvent(datetime.now(UTC), identity, "PARENT", (index,), name))
                recorder.sign_in(SignInEvent(method="PASSWORD", outcome="SIGNED_IN", login=login))
            await recorder.close()
        finally:
            conn.remove_query_logger(watch)
    assert len(statements) == 1
    assert len(await audit_rows(owner_conn, recorder, name)) == 50
    assert len(await sign_in_rows(owner_conn, login)) == 50


async def test_a_batch_written_again_after_a_lost_acknowledgement_counts_once(
    pool: asyncpg.Pool, owner_conn: asyncpg.Connection
) -> None:
    """The database committed the batch but the connection died before the answer (a
    crash mid-statement): the recorder retries, and every event is still stored once."""
    identity = await account_id(pool, ATTACKER)
    name = op("LostAck")
    login = f"rec.lostack.{uuid.uuid4().hex[:8]}"
    lossy = _AcknowledgementLost(pool)
    recorder = Recorder(lambda: lossy, retry_first_s=0.01)
    for index in range(20):
        recorder.access(AccessEvent(datetime.now(UTC), identity, "PARENT", (index,), name))
        recorder.sign_in(SignInEvent(method="PASSWORD", outcome="SIGNED_IN", login=login))
    async with asyncio.timeout(10):
        await recorder.flush()
    await recorder.close()
    assert lossy.executed == 2  # committed, "lost", written again
    assert len(await audit_rows(owner_conn, recorder, name)) == 20
    assert len(await sign_in_rows(owner_conn, login)) == 20


class _AcknowledgementLost:
    """The real pool, except that the first statement's answer is lost after its commit."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self.executed = 0

    async def execute(self, query: str, *args: object) -> str:
        result: str = await self._pool.execute(query, *args)
        self.executed += 1
        if self.executed == 1:
            raise asyncpg.ConnectionDoesNotExistError("connection was closed in the middle")
        return result


class _SingleConnectionPool:
    """One real connection standing in for the pool (to watch the statements it sends)."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def execute(self, query: str, *args: object) -> str:
        result: str = await self._conn.execute(query, *args)
        return result


async def test_database_down_drops_oldest_and_never_blocks(
    pool: asyncpg.Pool,
    closed_pool: asyncpg.Pool,
    owner_conn: asyncpg.Connection,
    caplog: pytest.LogCaptureFixture,
) -> None:
    current = [closed_pool]
    recorder = Recorder(lambda: current[0], max_queued=3, retry_first_s=0.01)
    tag = uuid.uuid4().hex[:8]
    person = demo_account(ATTACKER)
    caplog.set_level(logging.DEBUG)
    for index in range(5):
        recorder.sign_in(
            SignInEvent(
                method="ESIA",
                outcome="ESIA_UNAVAILABLE",
                snils=person.snils,
                phone=person.phone,
                login=f"rec.down.{tag}.{index}",
            )
        )
    assert recorder.dropped == 2 and recorder.pending == 3
    drops = [r.getMessage() for r in caplog.records if "oldest records dropped" in r.getMessage()]
    assert drops == ["recorder queue full (3): oldest records dropped, 1 dropped so far"]
    await asyncio.sleep(0.1)  # the writer tries, fails, and backs off
    assert recorder.written == 0 and recorder.pending == 3
    assert "database unavailable" in caplog.text
    current[0] = pool  # the database is back
    async with asyncio.timeout(10):
        await recorder.flush()
    await recorder.close()
    logins = await owner_conn.fetch(
        "SELECT login FROM gateway.sign_in_events WHERE login LIKE $1 ORDER BY id",
        f"rec.down.{tag}.%",
    )
    assert [row["login"] for row in logins] == [f"rec.down.{tag}.{index}" for index in (2, 3, 4)]
    assert recorder.written == 3
    assert_no_personal_data(caplog.records, [person.snils or "", person.phone or ""])


async def test_close_gives_up_on_a_dead_database_in_time(
    closed_pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = Recorder(lambda: closed_pool, retry_first_s=0.01, close_timeout_s=0.2)
    recorder.access(AccessEvent(datetime.now(UTC), str(uuid.uuid4()), "PARENT", (1, 2), "X"))
    async with asyncio.timeout(3):
        await recorder.close()
    assert recorder.pending == 0 and recorder.dropped == 1 and recorder.written == 0
    assert "1 records could not be written" in caplog.text


async def test_a_closed_recorder_starts_again_on_the_next_event(pool: asyncpg.Pool) -> None:
    recorder = Recorder(lambda: pool)
    await recorder.close()
    recorder.sign_in(SignInEvent(method="REFRESH", outcome="SIGNED_IN", login="rec.again"))
    await recorder.flush()
    assert recorder.written == 1
    await recorder.close()
    await recorder.close()  # idempotent


# --- sign-in events through HTTP --------------------------------------------------------


@pytest.fixture
async def own_address_client(
    app: Starlette,
) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    """A client with an address of its own, so throttling by address touches no other test."""
    address = f"198.51.100.{uuid.uuid4().int % 250 + 1}"
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as client:
        yield client, address


async def test_password_sign_ins_are_recorded(
    own_address_client: tuple[httpx.AsyncClient, str],
    owner_conn: asyncpg.Connection,
    pool: asyncpg.Pool,
    recorder: Recorder,
) -> None:
    client, address = own_address_client
    unknown = f"rec.nobody.{uuid.uuid4().hex[:8]}"
    response = await client.post(
        "/auth/login", json={"login": unknown, "password": "x"}, headers={"Accept": JSON}
    )
    assert response.status_code == 401, response.text
    await recorder.flush()
    (failed,) = await sign_in_rows(owner_conn, unknown)
    assert (failed["method"], failed["outcome"], failed["client_address"]) == (
        "PASSWORD",
        "INVALID_CREDENTIALS",
        address,
    )
    assert (failed["school_ids"], failed["account_id"]) == ([], None)

    (student_id,) = await family_student_ids(owner_conn, "student-young")
    school_id = await owner_conn.fetchval(
        "SELECT school_id FROM school.students WHERE id = $1", student_id
    )
    login = demo_account("student-young").login
    assert login is not None
    before = await owner_conn.fetchval(
        "SELECT coalesce(max(id), 0) FROM gateway.sign_in_events WHERE login = $1", login
    )
    # A lockout left by a throttling test would refuse the right password: start clean.
    await owner_conn.execute(
        "DELETE FROM gateway.sign_in_throttle WHERE key = $1", f"login:{login.casefold()}"
    )
    response = await client.post(
        "/auth/login",
        json={"login": login, "password": demo_account("student-young").password},
        headers={"Accept": JSON},
    )
    assert response.status_code == 200, response.text
    await recorder.flush()
    rows = [row for row in await sign_in_rows(owner_conn, login) if row["id"] > before]
    assert [(row["outcome"], row["school_ids"]) for row in rows] == [("SIGNED_IN", [school_id])]
    assert rows[0]["account_id"] == await account_id(pool, "student-young")

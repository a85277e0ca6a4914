"""Password sign-in of students under 14.5 over real HTTP: tokens, cookies, age, throttling.

Throttling tests build their own application with small limits (the shared fixtures'
limits stay untouched) and each uses client addresses of its own, so their counters
and recorded events do not meet other tests'. Planted changes are restored.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from datetime import date, timedelta
from typing import Any

import asyncpg
import httpx
from starlette.applications import Starlette

from auth.signin.password import may_use_password, password_sign_in_ends
from fixtures.demo import demo_account
from gateway.core.errors import MESSAGES, ErrorCode
from gateway.core.settings import Settings
from tests.support.environment import TODAY
from tests.support.esia_flow import last_event_id
from tests.support.journal import family_student_ids
from tests.support.password_signin import (
    LOGIN_URL,
    ORIGIN,
    PLANTED_PASSWORD,
    PlantedStudent,
    code_of,
    forget_throttle,
    sign_in_json,
    throttled_app,
)
from tests.support.planted import error_codes, post_graphql

YOUNG = demo_account("student-young")
DEMO_PASSWORD = "Dnevnik-2026"
ME = "{ viewer { role displayName } myChildren { id fullName } }"
ONE_STUDENT = "query($id: ID!) { student(id: $id) { id fullName } }"


async def events_since(
    owner_conn: asyncpg.Connection, app: Starlette, first_id: int, address: str
) -> list[asyncpg.Record]:
    await app.state.auth.recorder.flush()
    rows: list[asyncpg.Record] = await owner_conn.fetch(
        """SELECT outcome, method, login, school_ids, account_id::text AS account_id,
                  masked_snils, masked_phone, client_address
           FROM gateway.sign_in_events WHERE id > $1 AND client_address = $2 ORDER BY id""",
        first_id,
        address,
    )
    return rows


def test_age_rule_dates() -> None:
    """14 years and 6 calendar months, clamped to the month's end like relativedelta."""
    assert password_sign_in_ends(date(2012, 5, 27)) == date(2026, 11, 27)
    assert password_sign_in_ends(date(2012, 8, 31)) == date(2027, 2, 28)
    assert password_sign_in_ends(date(2012, 2, 29)) == date(2026, 8, 29)
    assert password_sign_in_ends(date(2011, 8, 29)) == date(2026, 2, 28)
    assert password_sign_in_ends(date(2012, 12, 31)) == date(2027, 6, 30)
    assert may_use_password(date(2012, 5, 28), date(2026, 11, 27))
    assert not may_use_password(date(2012, 5, 27), date(2026, 11, 27))


async def test_login_page(client: httpx.AsyncClient) -> None:
    response = await client.get(LOGIN_URL, params={"return_to": "/graphql?tab=1"})
    assert response.status_code == 200
    page = response.text
    for text in ('name="login"', 'name="password"', 'type="password"', "Логин", "Пароль"):
        assert text in page
    assert "Вход для пользователей старше 14,5 лет" in page
    assert 'href="/auth/esia/login?return_to=%2Fgraphql%3Ftab%3D1"' in page
    assert 'name="return_to" value="/graphql?tab=1"' in page
    assert response.headers["x-frame-options"] == "DENY"
    assert 'class="error"' not in page

    failed = await client.get(LOGIN_URL, params={"error": "ESIA_DENIED"})
    assert MESSAGES[ErrorCode.ESIA_DENIED] in failed.text
    foreign = await client.get(
        LOGIN_URL, params={"error": "<script>x</script>", "return_to": "https://evil.example/"}
    )
    assert "<script>x" not in foreign.text and "evil.example" not in foreign.text
    assert 'class="error"' not in foreign.text


async def test_young_student_api_sign_in(
    app: Starlette, client: httpx.AsyncClient, owner_conn: asyncpg.Connection
) -> None:
    first = await last_event_id(owner_conn)
    response, body = await sign_in_json(client, str(YOUNG.login), DEMO_PASSWORD)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    assert body["token_type"] == "Bearer" and body["refresh_token"]
    assert body["expires_in"] > 0
    token = body["access_token"]

    (own_id,) = await family_student_ids(owner_conn, "student-young")
    me = await post_graphql(client, token, ME)
    assert me["data"] == {
        "viewer": {"role": "STUDENT", "displayName": YOUNG.full_name},
        "myChildren": [{"id": str(own_id), "fullName": YOUNG.full_name}],
    }
    assert (await post_graphql(client, token, ONE_STUDENT, {"id": str(own_id)}))["data"]["student"][
        "id"
    ] == str(own_id)
    sister, victim = (
        (await family_student_ids(owner_conn, "parent-one-school"))[1],
        (await family_student_ids(owner_conn, "parent-two-schools"))[0],
    )
    for other in (sister, victim):
        foreign = await post_graphql(client, token, ONE_STUDENT, {"id": str(other)})
        assert error_codes(foreign) == ["FORBIDDEN"]
        assert foreign["data"] is None or foreign["data"]["student"] is None

    school_id = await owner_conn.fetchval(
        "SELECT school_id FROM school.students WHERE id = $1", own_id
    )
    events = await events_since(owner_conn, app, first, "127.0.0.1")
    signed = [e for e in events if e["login"] == YOUNG.login]
    assert [e["outcome"] for e in signed] == ["SIGNED_IN"]
    assert signed[0]["method"] == "PASSWORD" and list(signed[0]["school_ids"]) == [school_id]
    assert signed[0]["account_id"] is not None
    assert signed[0]["masked_snils"] is None and signed[0]["masked_phone"] is None


async def test_young_student_browser_sign_in(app: Starlette, client: httpx.AsyncClient) -> None:
    response = await client.post(
        LOGIN_URL,
        data={"login": str(YOUNG.login), "password": DEMO_PASSWORD, "return_to": "/graphql?x=1"},
        headers={"Origin": ORIGIN, "Accept": "text/html"},
    )
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/graphql?x=1"
    set_cookie = response.headers["set-cookie"].lower()
    assert set_cookie.startswith("sg_session=") and "httponly" in set_cookie
    assert "samesite=lax" in set_cookie
    cookie = response.cookies["sg_session"]
    me = await client.post(
        "/graphql",
        json={"query": "{ viewer { role displayName } }"},
        headers={"Cookie": f"sg_session={cookie}", "Origin": ORIGIN},
    )
    assert me.json()["data"]["viewer"] == {"role": "STUDENT", "displayName": YOUNG.full_name}

    foreign = await client.post(
        LOGIN_URL,
        data={"login": str(YOUNG.login), "password": DEMO_PASSWORD},
        headers={"Origin": "https://evil.example"},
    )
    assert foreign.status_code == 403 and "sg_session" not in foreign.headers.get("set-cookie", "")
    assert "CSRF_REJECTED" in foreign.text


async def test_wrong_password_and_unknown_login(
    settings: Settings, pool: asyncpg.Pool, owner_conn: asyncpg.Connection
) -> None:
    address = "198.51.100.10"
    first = await last_event_id(owner_conn)
    (own_id,) = await family_student_ids(owner_conn, "student-young")
    school_id = await owner_conn.fetchval(
        "SELECT school_id FROM school.students WHERE id = $1", own_id
    )
    async with throttled_app(settings, pool) as (app, make_client), make_client(address) as client:
        wrong, wrong_body = await sign_in_json(client, str(YOUNG.login), "Dnevnik-2025")
        unknown, unknown_body = await sign_in_json(client, "nobody.here", DEMO_PASSWORD)
        assert wrong.status_code == unknown.status_code == 401
        assert wrong_body == unknown_body
        assert code_of(wrong_body) == "INVALID_CREDENTIALS"
        assert wrong_body["errors"][0]["message"] == MESSAGES[ErrorCode.INVALID_CREDENTIALS]

        page = await client.post(
            LOGIN_URL,
            data={"login": "nobody.here", "password": "x"},
            headers={"Accept": "text/html"},
        )
        assert page.status_code == 401 and 'name="password"' in page.text
        assert MESSAGES[ErrorCode.INVALID_CREDENTIALS] in page.text and "sg_session" not in str(
            page.headers
        )
        empty, empty_body = await sign_in_json(client, "", "")
        assert empty.status_code == 400 and code_of(empty_body) == "BAD_USER_INPUT"

        events = await events_since(owner_conn, app, first, address)
    assert [(e["outcome"], e["login"], list(e["school_ids"])) for e in events] == [
        ("INVALID_CREDENTIALS", YOUNG.login, [school_id]),
        ("INVALID_CREDENTIALS", "nobody.here", []),
        ("INVALID_CREDENTIALS", "nobody.here", []),
        ("BAD_USER_INPUT", None, []),
    ]
    assert all(e["account_id"] is None and e["masked_snils"] is None for e in events)
    await forget_throttle(owner_conn, f"login:{YOUNG.login}", "login:nobody.here")


async def test_unknown_login_costs_as_much_as_wrong_password(
    settings: Settings, pool: asyncpg.Pool, owner_conn: asyncpg.Connection
) -> None:
    address = "198.51.100.11"
    keys = (f"login:{YOUNG.login}", "login:nobody.timing", f"address:{address}")
    timings: dict[str, list[float]] = {"wrong": [], "unknown": []}
    async with throttled_app(settings, pool) as (_, make_client), make_client(address) as client:
        await sign_in_json(client, "nobody.warmup", "x")  # the dummy hash is made once
        for _ in range(4):
            for kind, login in (("wrong", str(YOUNG.login)), ("unknown", "nobody.timing")):
                await forget_throttle(owner_conn, *keys)  # no progressive delay
                started = time.perf_counter()
                response, _ = await sign_in_json(client, login, "Not-the-password-1")
                timings[kind].append(time.perf_counter() - started)
                assert response.status_code == 401
    await forget_throttle(owner_conn, *keys, "login:nobody.warmup")
    wrong, unknown = statistics.median(timings["wrong"]), statistics.median(timings["unknown"])
    assert wrong > 0.005 and unknown > 0.005, timings  # argon2 ran for both
    assert max(wrong, unknown) / min(wrong, unknown) < 3, timings


async def test_age_boundary_day(
    client: httpx.AsyncClient,
    app: Starlette,
    owner_conn: asyncpg.Connection,
    planted: PlantedStudent,
) -> None:
    """On the day before turning 14.5 the password works; on that day ESIA only."""
    day_before = date(2012, 5, 28)  # turns 14.5 on 2026-11-28, "today" + 1
    boundary = date(2012, 5, 27)  # turns 14.5 on 2026-11-27, "today"
    assert password_sign_in_ends(day_before) == TODAY + timedelta(days=1)
    assert password_sign_in_ends(boundary) == TODAY
    set_birth = "UPDATE school.students SET birth_date = $2 WHERE id = $1"
    first = await last_event_id(owner_conn)

    await owner_conn.execute(set_birth, planted.student_id, day_before)
    allowed, body = await sign_in_json(client, planted.login, PLANTED_PASSWORD)
    assert allowed.status_code == 200, body

    await owner_conn.execute(set_birth, planted.student_id, boundary)
    refused, refused_body = await sign_in_json(client, planted.login, PLANTED_PASSWORD)
    assert refused.status_code == 403 and code_of(refused_body) == "STUDENT_MUST_USE_ESIA"
    assert "14,5" in refused_body["errors"][0]["message"]
    assert "Госуслуги" in refused_body["errors"][0]["message"]
    wrong, wrong_body = await sign_in_json(client, planted.login, "Wrong-2026")
    assert wrong.status_code == 401 and code_of(wrong_body) == "INVALID_CREDENTIALS"
    page = await client.post(
        LOGIN_URL,
        data={"login": planted.login, "password": PLANTED_PASSWORD},
        headers={"Accept": "text/html"},
    )
    assert page.status_code == 403 and "/auth/esia/login" in page.text
    assert "sg_session" not in page.headers.get("set-cookie", "")

    events = await events_since(owner_conn, app, first, "127.0.0.1")
    mine = [(e["outcome"], list(e["school_ids"])) for e in events if e["login"] == planted.login]
    assert mine == [
        ("SIGNED_IN", [planted.school_id]),
        ("STUDENT_MUST_USE_ESIA", [planted.school_id]),
        ("INVALID_CREDENTIALS", [planted.school_id]),
        ("STUDENT_MUST_USE_ESIA", [planted.school_id]),
    ]


async def test_lockout_per_login(
    settings: Settings,
    pool: asyncpg.Pool,
    owner_conn: asyncpg.Connection,
    planted: PlantedStudent,
) -> None:
    addresses = ("198.51.100.20", "198.51.100.21", "198.51.100.22")
    first = await last_event_id(owner_conn)
    limits = {"login_max_failures": 3, "lockout_seconds": 2}
    async with throttled_app(settings, pool, **limits) as (app, make_client):
        for address in addresses:  # spread over addresses: the login's counter locks
            async with make_client(address) as client:
                response, body = await sign_in_json(client, planted.login, "Wrong-1")
                assert response.status_code == 401 and code_of(body) == "INVALID_CREDENTIALS"
        async with make_client(addresses[0]) as client:
            locked, locked_body = await sign_in_json(client, planted.login, PLANTED_PASSWORD)
            assert locked.status_code == 429 and code_of(locked_body) == "SIGN_IN_LOCKED"
            assert 1 <= int(locked.headers["retry-after"]) <= 2
            assert locked_body["errors"][0]["message"] == MESSAGES[ErrorCode.SIGN_IN_LOCKED]
            other, _ = await sign_in_json(client, planted.login.upper(), PLANTED_PASSWORD)
            assert other.status_code == 429  # case variants share the counter
            page = await client.post(
                LOGIN_URL,
                data={"login": planted.login, "password": PLANTED_PASSWORD},
                headers={"Accept": "text/html"},
            )
            assert page.status_code == 429 and "retry-after" in page.headers
            await asyncio.sleep(2.1)
            after, _ = await sign_in_json(client, planted.login, PLANTED_PASSWORD)
            assert after.status_code == 200
        events = await events_since(owner_conn, app, first, addresses[0])
    assert [e["outcome"] for e in events] == [
        "INVALID_CREDENTIALS",
        "SIGN_IN_LOCKED",
        "SIGN_IN_LOCKED",
        "SIGN_IN_LOCKED",
        "SIGNED_IN",
    ]
    assert all(list(e["school_ids"]) == [planted.school_id] for e in events[:2])
    assert (
        await owner_conn.fetchval(
            "SELECT count(*) FROM gateway.sign_in_throttle WHERE key = $1", f"login:{planted.login}"
        )
        == 0
    )


async def test_success_resets_the_login_counter(
    settings: Settings,
    pool: asyncpg.Pool,
    owner_conn: asyncpg.Connection,
    planted: PlantedStudent,
) -> None:
    address = "198.51.100.40"
    limits = {"login_max_failures": 3, "lockout_seconds": 60}
    key = f"login:{planted.login}"
    async with (
        throttled_app(settings, pool, **limits) as (_, make_client),
        make_client(address) as client,
    ):
        for _ in range(2):
            response, _ = await sign_in_json(client, planted.login, "Wrong-1")
            assert response.status_code == 401
        assert (
            await owner_conn.fetchval(
                "SELECT failures FROM gateway.sign_in_throttle WHERE key = $1", key
            )
            == 2
        )
        started = time.perf_counter()
        ok, _ = await sign_in_json(client, planted.login, PLANTED_PASSWORD)
        assert ok.status_code == 200
        assert time.perf_counter() - started >= 0.2  # delayed after two failures
        client.cookies.clear()  # stay an untrusted client: no device cookie
        assert (
            await owner_conn.fetchval(
                "SELECT count(*) FROM gateway.sign_in_throttle WHERE key = $1", key
            )
            == 0
        )
        for _ in range(2):  # two more failures: not locked, the counter restarted
            response, _ = await sign_in_json(client, planted.login, "Wrong-1")
            assert response.status_code == 401
        again, _ = await sign_in_json(client, planted.login, PLANTED_PASSWORD)
        assert again.status_code == 200
    # The address kept only the failures: successes gave their attempts back.
    assert (
        await owner_conn.fetchval(
            "SELECT failures FROM gateway.sign_in_throttle WHERE key = $1", f"address:{address}"
        )
        == 4
    )
    await forget_throttle(owner_conn, f"address:{address}")


async def test_parallel_guesses_cannot_outrun_the_lock(
    settings: Settings,
    pool: asyncpg.Pool,
    owner_conn: asyncpg.Connection,
    planted: PlantedStudent,
) -> None:
    """Attempts are counted before the check: of 8 simultaneous guesses only 3 are checked."""
    address = "198.51.100.50"
    limits = {"login_max_failures": 3, "lockout_seconds": 60}
    async with (
        throttled_app(settings, pool, **limits) as (_, make_client),
        make_client(address) as client,
    ):
        results = await asyncio.gather(
            *(sign_in_json(client, planted.login, f"Guess-{n}") for n in range(8))
        )
    statuses = sorted(response.status_code for response, _ in results)
    assert statuses == [401] * 3 + [429] * 5
    await forget_throttle(owner_conn, f"address:{address}")


async def test_overlong_return_to_is_ignored_not_an_error(client: httpx.AsyncClient) -> None:
    """A deep link too long to keep falls back to / (the landing page); the sign-in still
    succeeds."""
    response = await client.post(
        LOGIN_URL,
        data={"login": str(YOUNG.login), "password": DEMO_PASSWORD, "return_to": "/x" * 1500},
        headers={"Origin": ORIGIN, "Accept": "text/html"},
    )
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/"
    assert response.cookies["sg_session"]


async def test_malformed_sign_in_requests(client: httpx.AsyncClient) -> None:
    """Refused before any password check, with stable codes."""
    cases: list[tuple[dict[str, Any], int, str]] = [
        (
            {"content": b"{not json", "headers": {"Content-Type": "application/json"}},
            400,
            "BAD_REQUEST",
        ),
        ({"json": ["smirnov.petr", "x"]}, 400, "BAD_REQUEST"),
        ({"json": {"login": "a" * 101, "password": "x"}}, 400, "BAD_USER_INPUT"),
        ({"json": {"login": "smirnov.petr", "password": 123}}, 400, "BAD_USER_INPUT"),
        (
            {"content": b"login=a", "headers": {"Content-Type": "text/plain"}},
            415,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
        (
            {"content": b"x" * 9000, "headers": {"Content-Type": "application/json"}},
            413,
            "PAYLOAD_TOO_LARGE",
        ),
    ]
    for request, status, code in cases:
        response = await client.post(LOGIN_URL, **request)
        assert response.status_code == status, (request, response.text)
        assert code_of(response.json()) == code
    too_many = await client.post(LOGIN_URL, data={f"f{n}": "x" for n in range(20)})
    assert too_many.status_code == 400 and "Код: BAD_REQUEST" in too_many.text  # a page
    foreign = await client.post(
        LOGIN_URL,
        data={"login": "smirnov.petr", "password": DEMO_PASSWORD},
        headers={"Referer": "https://evil.example/page", "Accept": "text/html"},
    )
    assert foreign.status_code == 403 and "CSRF_REJECTED" in foreign.text


async def test_a_new_sign_in_ends_the_browsers_previous_session(
    client: httpx.AsyncClient, settings: Settings, owner_conn: asyncpg.Connection
) -> None:
    """Issue 9, item 15: the form sign-in in a browser that still has a session cookie
    revokes that session; the new cookie works."""
    name = settings.auth.session_cookie
    form = {"login": str(YOUNG.login), "password": DEMO_PASSWORD}
    headers = {"Origin": ORIGIN, "Accept": "text/html"}
    first = await client.post(LOGIN_URL, data=form, headers=headers)
    assert first.status_code == 303
    old_cookie = first.cookies[name]
    second = await client.post(LOGIN_URL, data=form, headers=headers)
    assert second.status_code == 303
    new_cookie = second.cookies[name]
    assert new_cookie != old_cookie
    query = {"query": ME}
    old = await client.post(
        "/graphql", json=query, headers={"Origin": ORIGIN, "Cookie": f"{name}={old_cookie}"}
    )
    assert old.status_code == 401 and error_codes(old.json()) == ["SESSION_REVOKED"]
    new = await client.post(
        "/graphql", json=query, headers={"Origin": ORIGIN, "Cookie": f"{name}={new_cookie}"}
    )
    assert new.status_code == 200 and new.json()["data"]["viewer"]["role"] == "STUDENT"
    await forget_throttle(owner_conn, f"login:{YOUNG.login}")

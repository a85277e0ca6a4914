"""Throttling that slows guessing but cannot lock anyone out (issue 9, item 12).

Over real HTTP, the real application and PostgreSQL:

- a school's NAT address with 100 failed sign-ins of other logins still lets a correct
  password in, after a capped delay (before: 30 failures locked the address for 15
  minutes, the right password included);
- a login locked by 5 failures from elsewhere still admits its own known browser (a
  device cookie from an earlier success), while a browser without one gets 429
  SIGN_IN_LOCKED with Retry-After; a device cookie of login A gives nothing for login
  B; forged, tampered and re-labelled cookies are ignored;
- a device cookie used for failures is locked itself, never the login for others.

Each test uses client addresses of its own (TEST-NET-3) and removes its counters.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import httpx
from argon2 import PasswordHasher
from starlette.applications import Starlette

from auth.signin.device_cookie import (
    COOKIE_PATH,
    cookie_name,
    issue_device_cookie,
    normalized_login,
)
from auth.signin.password import add_months
from fixtures.demo import DEMO_ACCOUNTS
from gateway.core.settings import Settings
from tests.support.environment import TODAY
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

# argon2 at the generator's parameters costs ~0.2 s of CPU per check; the 100 failed
# attempts of other logins check cheap hashes instead (the parameters live in the hash).
CHEAP_HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


@asynccontextmanager
async def planted_students(
    owner_conn: asyncpg.Connection, count: int, password: str, hasher: PasswordHasher
) -> AsyncIterator[list[PlantedStudent]]:
    """`count` generated students (not the `planted` one) given `password` and an age of
    12; restored afterwards, their throttle counters removed."""
    demo_logins = [c.login for a in DEMO_ACCOUNTS for c in a.children if c.login]
    rows = await owner_conn.fetch(
        """SELECT id, school_id, login, birth_date, password_hash FROM school.students
           WHERE login IS NOT NULL AND login <> ALL($1::text[]) ORDER BY id DESC LIMIT $2""",
        demo_logins,
        count,
    )
    assert len(rows) == count
    hashed = await asyncio.to_thread(hasher.hash, password)
    await owner_conn.execute(
        "UPDATE school.students SET password_hash = $2, birth_date = $3 WHERE id = ANY($1)",
        [row["id"] for row in rows],
        hashed,
        add_months(TODAY, -12 * 12),
    )
    try:
        yield [PlantedStudent(row["id"], row["school_id"], row["login"]) for row in rows]
    finally:
        await owner_conn.executemany(
            "UPDATE school.students SET password_hash = $2, birth_date = $3 WHERE id = $1",
            [(row["id"], row["password_hash"], row["birth_date"]) for row in rows],
        )
        await forget_throttle(owner_conn, *(f"login:{row['login']}" for row in rows))


@asynccontextmanager
async def client_at(app: Starlette, address: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client (with its own cookie jar) whose requests come from `address`."""
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    async with httpx.AsyncClient(transport=transport, base_url=ORIGIN) as client:
        yield client


async def sign_in_form(client: httpx.AsyncClient, login: str, password: str) -> httpx.Response:
    """The browser form (a page or a 303 with cookies)."""
    return await client.post(
        LOGIN_URL,
        data={"login": login, "password": password},
        headers={"Origin": ORIGIN, "Accept": "text/html"},
    )


async def lock_login(app: Starlette, login: str, address: str, failures: int = 5) -> None:
    """`failures` wrong passwords from `address`: the login is then locked for others."""
    async with client_at(app, address) as attacker:
        for n in range(failures):
            response, body = await sign_in_json(attacker, login, f"Guess-{n}")
            assert response.status_code == 401, body
        locked, body = await sign_in_json(attacker, login, "Guess-again")
        assert locked.status_code == 429 and code_of(body) == "SIGN_IN_LOCKED"


async def throttle_row(owner_conn: asyncpg.Connection, key: str) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await owner_conn.fetchrow(
        "SELECT failures, locked_until > now() AS locked FROM gateway.sign_in_throttle "
        "WHERE key = $1",
        key,
    )
    return row


def device_nonce(value: str) -> str:
    return value.split(".")[2]


async def forget_devices(owner_conn: asyncpg.Connection, *values: str) -> None:
    await forget_throttle(owner_conn, *(f"device:{device_nonce(v)}" for v in values))


# --- an address is slowed down, never locked ----------------------------------------------


async def test_school_address_with_100_failures_still_signs_in(
    settings: Settings,
    pool: asyncpg.Pool,
    owner_conn: asyncpg.Connection,
    planted: PlantedStudent,
) -> None:
    school = "203.0.113.10"
    cap = settings.auth.max_delay_ms / 1000
    async with (
        planted_students(owner_conn, 25, "Right-2026", CHEAP_HASHER) as classmates,
        throttled_app(settings, pool) as (app, _),
    ):
        async with client_at(app, school) as room:  # one mistyping class, or an attacker
            started = time.perf_counter()
            results = await asyncio.gather(
                *(sign_in_json(room, s.login, f"Typo-{n}") for s in classmates for n in range(4))
            )
            flood_seconds = time.perf_counter() - started
        assert Counter(response.status_code for response, _ in results) == {401: 100}
        address = await throttle_row(owner_conn, f"address:{school}")
        assert address is not None and (address["failures"], address["locked"]) == (100, None)
        async with client_at(app, school) as newcomer:  # a browser never used before
            started = time.perf_counter()
            ok, body = await sign_in_json(newcomer, planted.login, PLANTED_PASSWORD)
            wall = time.perf_counter() - started
        print(
            f"100 failures from one address in {flood_seconds:.2f} s; the right password "
            f"then signed in after {wall:.2f} s (delay cap {cap:.1f} s)"
        )
        assert ok.status_code == 200 and body["access_token"], body
        assert cap * 0.9 <= wall < cap + 10  # slowed by the capped delay, never refused
        after = await throttle_row(owner_conn, f"address:{school}")
        assert after is not None and after["failures"] == 100  # the success gave its count back
    await forget_throttle(owner_conn, f"address:{school}", f"login:{planted.login}")


# --- device cookies -----------------------------------------------------------------------


async def test_a_logins_lockout_does_not_stop_its_known_browser(
    settings: Settings,
    pool: asyncpg.Pool,
    owner_conn: asyncpg.Connection,
    planted: PlantedStudent,
) -> None:
    home, attacker, library = "203.0.113.20", "203.0.113.21", "203.0.113.22"
    async with throttled_app(settings, pool, lockout_seconds=60) as (app, _):
        async with client_at(app, home) as browser:
            first = await sign_in_form(browser, planted.login, PLANTED_PASSWORD)
            assert first.status_code == 303, first.text
            name = cookie_name(settings, planted.login)
            set_cookie = next(v for v in first.headers.get_list("set-cookie") if v.startswith(name))
            flags = {part.strip().lower() for part in set_cookie.split(";")[1:]}
            assert {"httponly", "samesite=strict", f"path={COOKIE_PATH}"} <= flags
            assert f"max-age={settings.auth.device_cookie_ttl_seconds}" in flags
            device = browser.cookies[name]
            assert normalized_login(planted.login) not in name  # the name does not show it

            await lock_login(app, planted.login, attacker)
            async with client_at(app, library) as stranger:
                refused, body = await sign_in_json(stranger, planted.login, PLANTED_PASSWORD)
                assert refused.status_code == 429 and code_of(body) == "SIGN_IN_LOCKED"
                assert 50 <= int(refused.headers["retry-after"]) <= 60
                page = await sign_in_form(stranger, planted.login, PLANTED_PASSWORD)
                assert page.status_code == 429 and "SIGN_IN_LOCKED" in page.text

            again = await sign_in_form(browser, planted.login, PLANTED_PASSWORD)
            assert again.status_code == 303, again.text  # its own browser goes on
            renewed = browser.cookies[name]
            assert device_nonce(renewed) != device_nonce(device)  # a fresh cookie each time
            api, tokens = await sign_in_json(browser, planted.login, PLANTED_PASSWORD)
            assert api.status_code == 200 and tokens["access_token"]

        async with client_at(app, library) as stranger:  # the lock stays for the others
            still, body = await sign_in_json(stranger, planted.login, PLANTED_PASSWORD)
            assert still.status_code == 429 and code_of(body) == "SIGN_IN_LOCKED"
        login_row = await throttle_row(owner_conn, f"login:{planted.login}")
        assert login_row is not None and login_row["locked"]
    await forget_throttle(owner_conn, *(f"address:{a}" for a in (home, attacker, library)))
    await forget_devices(owner_conn, device, renewed)


async def test_device_cookies_are_per_login_and_cannot_be_forged(
    settings: Settings,
    pool: asyncpg.Pool,
    owner_conn: asyncpg.Connection,
    planted: PlantedStudent,
) -> None:
    home, attacker, elsewhere = "203.0.113.30", "203.0.113.31", "203.0.113.32"
    async with (
        planted_students(owner_conn, 1, "Login-B-2026", CHEAP_HASHER) as (other,),
        throttled_app(settings, pool, lockout_seconds=60) as (app, _),
    ):
        async with client_at(app, home) as browser:
            ok, _ = await sign_in_json(browser, planted.login, PLANTED_PASSWORD)
            assert ok.status_code == 200
            name_a = cookie_name(settings, planted.login)
            value_a = browser.cookies[name_a]
        await lock_login(app, planted.login, attacker)
        await lock_login(app, other.login, attacker)

        name_b = cookie_name(settings, other.login)
        credentials = {"A": (planted.login, PLANTED_PASSWORD), "B": (other.login, "Login-B-2026")}
        _, login_part, nonce, issued, signature = value_a.split(".")
        b_part = issue_device_cookie(settings, other.login).value.split(".")[1]
        flipped = signature[:-1] + ("A" if signature[-1] != "A" else "B")
        foreign = dataclasses.replace(settings, jwt_secret="another-secret-" * 4)
        long_ago = int(time.time()) - 200 * 86400
        attempts = {  # case: (cookie name, cookie value, whose sign-in)
            "A's cookie, B's login": (name_a, value_a, "B"),
            "A's cookie named as B's": (name_b, value_a, "B"),
            "A's cookie relabelled to B": (
                name_b,
                f"d1.{b_part}.{nonce}.{issued}.{signature}",
                "B",
            ),
            "tampered signature": (name_a, f"d1.{login_part}.{nonce}.{issued}.{flipped}", "A"),
            "tampered time": (name_a, f"d1.{login_part}.{nonce}.9{issued}.{signature}", "A"),
            "another secret": (name_a, issue_device_cookie(foreign, planted.login).value, "A"),
            "expired": (
                name_a,
                issue_device_cookie(settings, planted.login, now=long_ago).value,
                "A",
            ),
        }
        for case, (name, value, whose) in attempts.items():
            login, password = credentials[whose]
            async with client_at(app, elsewhere) as forger:
                forger.cookies.set(name, value, domain="127.0.0.1", path=COOKIE_PATH)
                response, body = await sign_in_json(forger, login, password)
            assert response.status_code == 429, (case, body)
            assert code_of(body) == "SIGN_IN_LOCKED", case
        async with client_at(app, elsewhere) as owner:  # control: the genuine cookie works
            owner.cookies.set(name_a, value_a, domain="127.0.0.1", path=COOKIE_PATH)
            genuine, _ = await sign_in_json(owner, planted.login, PLANTED_PASSWORD)
            assert genuine.status_code == 200
            renewed = owner.cookies[name_a]
    await forget_throttle(owner_conn, *(f"address:{a}" for a in (home, attacker, elsewhere)))
    await forget_devices(owner_conn, value_a, renewed)


async def test_a_device_cookies_failures_lock_only_that_cookie(
    settings: Settings,
    pool: asyncpg.Pool,
    owner_conn: asyncpg.Connection,
    planted: PlantedStudent,
) -> None:
    home, school = "203.0.113.40", "203.0.113.41"
    async with throttled_app(settings, pool, lockout_seconds=60) as (app, _):
        async with client_at(app, home) as browser:
            ok, _ = await sign_in_json(browser, planted.login, PLANTED_PASSWORD)
            assert ok.status_code == 200
            device = browser.cookies[cookie_name(settings, planted.login)]
            for n in range(settings.auth.device_max_failures):
                response, _ = await sign_in_json(browser, planted.login, f"Wrong-{n}")
                assert response.status_code == 401
            locked, body = await sign_in_json(browser, planted.login, PLANTED_PASSWORD)
            assert locked.status_code == 429 and code_of(body) == "SIGN_IN_LOCKED"
            assert "retry-after" in locked.headers
        device_row = await throttle_row(owner_conn, f"device:{device_nonce(device)}")
        assert device_row is not None and device_row["locked"]
        assert await throttle_row(owner_conn, f"login:{planted.login}") is None
        async with client_at(app, school) as other_browser:  # the login is not locked
            fine, _ = await sign_in_json(other_browser, planted.login, PLANTED_PASSWORD)
            assert fine.status_code == 200
    await forget_throttle(owner_conn, f"address:{home}", f"address:{school}")
    await forget_devices(owner_conn, device)


async def test_an_address_lock_left_by_the_old_throttle_is_ignored(
    settings: Settings,
    pool: asyncpg.Pool,
    owner_conn: asyncpg.Connection,
    planted: PlantedStudent,
) -> None:
    """Rows written before the upgrade could lock an address; they no longer refuse."""
    school = "203.0.113.50"
    await owner_conn.execute(
        """INSERT INTO gateway.sign_in_throttle (key, failures, window_started, locked_until)
           VALUES ($1, 30, now(), now() + interval '15 minutes')""",
        f"address:{school}",
    )
    async with throttled_app(settings, pool) as (app, _), client_at(app, school) as newcomer:
        ok, body = await sign_in_json(newcomer, planted.login, PLANTED_PASSWORD)
    assert ok.status_code == 200, body
    row = await throttle_row(owner_conn, f"address:{school}")
    assert row is not None and not row["locked"]
    await forget_throttle(owner_conn, f"address:{school}")

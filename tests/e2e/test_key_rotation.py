"""Signing keys rotate without logging anyone out (issue 15).

Two live nodes of the real application over the test database — node A reloads the key
set every second, node B only every hour (it learns new kids from the tokens it sees) —
and the real `school-gateway rotate-signing-key` / `signing-keys` commands. Every test
starts and ends with an empty gateway.signing_keys (key "0", the secret itself, current),
which is what every other test of the run expects.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import secrets
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from joserfc import jwt
from joserfc.jwk import OctKey

from auth.signing_keys import key_loader, keys_ready
from auth.store.accounts import ended_sessions, ensure_demo_account
from auth.store.sessions import ClientKind, start_session
from auth.store.signing_keys import rotate
from fixtures.demo import demo_account
from fixtures.generate import SeedSummary
from gateway.app import create_app
from gateway.core.db import counting_statements
from gateway.core.settings import Settings
from gateway.core.signing_keys import LEGACY_KID, SigningKeys, SigningKeySettings, derive_key
from tests.support.cli_process import run_command, run_school_gateway
from tests.support.environment import JWT_SECRET, gateway_env
from tests.support.live_server import LiveServer, live_server
from tests.support.password_signin import PLANTED_PASSWORD, PlantedStudent
from tests.support.tokens import token_claims

VIEWER = {"query": "query Me { viewer { role } }"}
PARENT = "parent-one-school"
# Long enough for a rotation by a real process and the checks after it.
SHORT_S = 12


@pytest.fixture
async def empty_key_table(owner_conn: asyncpg.Connection) -> AsyncIterator[None]:
    await owner_conn.execute("DELETE FROM gateway.signing_keys")
    try:
        yield
    finally:
        await owner_conn.execute("DELETE FROM gateway.signing_keys")


def kid_of(token: str) -> Any:
    header = token.split(".")[0]
    return orjson.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4))).get("kid")


def signed(kid: str | None, claims: dict[str, Any], *, key: bytes | None = None) -> str:
    """A token signed with `kid`'s key (or `key`), `kid` in its header (none: no kid)."""
    header: dict[str, Any] = {"alg": "HS256"} if kid is None else {"alg": "HS256", "kid": kid}
    secret = key if key is not None else derive_key(JWT_SECRET, kid or LEGACY_KID)
    return jwt.encode(header, claims, OctKey.import_key(secret))


def with_header(token: str, header: dict[str, Any]) -> str:
    """`token` with another header, its payload and signature unchanged."""
    encoded = base64.urlsafe_b64encode(orjson.dumps(header)).rstrip(b"=").decode()
    return ".".join([encoded, *token.split(".")[1:]])


async def answer(
    client: httpx.AsyncClient, token: str | None = None, *, cookie: str | None = None
) -> tuple[int, Any]:
    """POST the viewer query; the status and the viewer's role, or the error codes."""
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    if cookie is not None:
        headers |= {"Cookie": f"sg_session={cookie}", "Origin": str(client.base_url).rstrip("/")}
    response = await client.post("/graphql", json=VIEWER, headers=headers)
    body = response.json()
    if body.get("errors"):
        return response.status_code, [error["extensions"]["code"] for error in body["errors"]]
    return response.status_code, body["data"]["viewer"]["role"]


def cli(
    database_url: str, data_dir: Path, *args: str, owner_url: str | None = None
) -> tuple[int, Any, str]:
    """`school-gateway ARGS --json` as a real process: exit code, parsed stdout, stderr;
    with `owner_url` as DATABASE_OWNER_URL (a rotation writes as the schema owner)."""
    if owner_url is None:
        done = run_school_gateway(database_url, data_dir, *args, "--json")
    else:
        done = run_command([*args, "--json"], gateway_env(database_url, data_dir, owner_url))
    return done.returncode, orjson.loads(done.stdout) if done.stdout else None, done.stderr


async def eventually(check: Callable[[], bool], within_s: float = 10) -> None:
    """Wait until `check()` holds (a node's background reload)."""
    deadline = time.monotonic() + within_s
    while not check():
        assert time.monotonic() < deadline, f"not within {within_s} s"
        await asyncio.sleep(0.1)


@dataclasses.dataclass
class Nodes:
    a: LiveServer
    b: LiveServer
    to_a: httpx.AsyncClient
    to_b: httpx.AsyncClient


@pytest.fixture
async def nodes(
    database_url: str, data_dir: Path, pool: asyncpg.Pool, empty_key_table: None
) -> AsyncIterator[Nodes]:
    env = gateway_env(database_url, data_dir)
    async with (
        live_server({**env, "SCHOOL_GATEWAY_SIGNING_KEYS_RELOAD_S": "1"}, pool) as a,
        live_server({**env, "SCHOOL_GATEWAY_SIGNING_KEYS_RELOAD_S": "3600"}, pool) as b,
        httpx.AsyncClient(base_url=a.url, timeout=30) as to_a,
        httpx.AsyncClient(base_url=b.url, timeout=30) as to_b,
    ):
        yield Nodes(a, b, to_a, to_b)


async def sign_in(client: httpx.AsyncClient, student: PlantedStudent) -> str:
    response = await client.post(
        "/auth/login", json={"login": student.login, "password": PLANTED_PASSWORD}
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


async def test_tokens_outlive_one_rotation_and_a_second_node_learns_the_new_key(
    nodes: Nodes,
    pool: asyncpg.Pool,
    database_url: str,
    owner_url: str,
    data_dir: Path,
    planted: PlantedStudent,
) -> None:
    a, b = nodes.a, nodes.b
    account_id = await ensure_demo_account(pool, demo_account(PARENT))
    api = await start_session(
        pool, a.settings, account_id=account_id, kind=ClientKind.API, method="DEV_TOKEN"
    )
    browser = await start_session(
        pool, a.settings, account_id=account_id, kind=ClientKind.BROWSER, method="DEV_TOKEN"
    )
    before, cookie = api.access_token, browser.cookie_value or ""
    assert kid_of(before) == LEGACY_KID and kid_of(cookie) == LEGACY_KID
    # A token of before kids existed (no kid, so key "0"'s), expiring in SHORT_S seconds.
    short_exp = int(time.time()) + SHORT_S
    short = signed(None, token_claims(sub=account_id, sid=api.session_id, exp=short_exp))

    code, first, _ = cli(database_url, data_dir, "rotate-signing-key", owner_url=owner_url)
    assert code == 0 and first["previous"] == LEGACY_KID and first["retired"] is None, first
    new_kid = first["current"]

    # Tokens and the browser's cookie of before the rotation: valid on both nodes.
    for client in (nodes.to_a, nodes.to_b):
        assert await answer(client, before) == (200, "PARENT")
        assert await answer(client, short) == (200, "PARENT")
        assert await answer(client, cookie=cookie) == (200, "PARENT")

    # Node A picks the new key up within its reload interval and signs with it.
    await eventually(lambda: a.settings.signing_keys.keys.current == new_kid)
    issued_after = await sign_in(nodes.to_a, planted)
    assert kid_of(issued_after) == new_kid

    # Node B has not reloaded (an hour's interval): the unknown kid makes it reload once.
    assert b.settings.signing_keys.keys.current == LEGACY_KID
    reloads = b.settings.signing_keys.reloads
    assert await answer(nodes.to_b, issued_after) == (200, "STUDENT")
    assert b.settings.signing_keys.reloads == reloads + 1
    assert await answer(nodes.to_b, issued_after) == (200, "STUDENT")
    assert b.settings.signing_keys.reloads == reloads + 1  # known now: no more reloads

    # The short token of before the rotation stays valid until it expires, then expires.
    assert await answer(nodes.to_b, short) == (200, "PARENT")
    await asyncio.sleep(max(0.0, short_exp + 1 - time.time()))
    assert await answer(nodes.to_a, short) == (401, ["TOKEN_EXPIRED"])

    # A second rotation within the longest token lifetime is refused, unless forced.
    code, _, stderr = cli(database_url, data_dir, "rotate-signing-key", owner_url=owner_url)
    assert code == 1 and "refused" in stderr and "--force" in stderr, stderr
    code, listed, _ = cli(database_url, data_dir, "signing-keys")
    assert [(key["kid"], key["state"]) for key in listed] == [
        (new_kid, "current"),
        (LEGACY_KID, "previous"),
    ]
    text = run_school_gateway(database_url, data_dir, "signing-keys").stdout.splitlines()
    assert [line.split()[:2] for line in text] == [
        ["KID", "STATE"],
        [new_kid, "current"],
        [LEGACY_KID, "previous"],
    ]
    code, second, _ = cli(
        database_url, data_dir, "rotate-signing-key", "--force", owner_url=owner_url
    )
    assert code == 0 and (second["previous"], second["retired"]) == (new_kid, LEGACY_KID)

    # Key "0" is two rotations back: its unexpired tokens are refused; an expired one is
    # still told TOKEN_EXPIRED (a client refreshes as it would have); key one back works.
    await eventually(lambda: a.settings.signing_keys.keys.current == second["current"])
    assert await answer(nodes.to_a, before) == (401, ["UNAUTHENTICATED"])
    assert await answer(nodes.to_a, cookie=cookie) == (401, ["UNAUTHENTICATED"])
    assert await answer(nodes.to_a, short) == (401, ["TOKEN_EXPIRED"])
    assert await answer(nodes.to_a, issued_after) == (200, "STUDENT")


@pytest.fixture
async def fresh_node(
    settings: Settings, pool: asyncpg.Pool, empty_key_table: None
) -> AsyncIterator[tuple[Settings, httpx.AsyncClient]]:
    """The application with a key set of its own, never loaded (no lifespan over ASGI),
    reloading for unknown kids at most once a second."""
    keys = SigningKeys(SigningKeySettings(reload_s=30, unknown_kid_s=1))
    own = dataclasses.replace(settings, signing_keys=keys)
    app = create_app(own, pool=pool)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as c:
            yield own, c
    finally:
        await app.state.auth.recorder.close()
        await app.state.services.close()


async def test_a_flood_of_made_up_kids_reads_the_key_set_once_a_second(
    fresh_node: tuple[Settings, httpx.AsyncClient], seeded: SeedSummary
) -> None:
    _, client = fresh_node
    claims = token_claims()
    flood = [signed(kid, claims) for kid in (secrets.token_hex(8) for _ in range(60))]
    with counting_statements(keep_text=True) as counter:
        started = time.monotonic()
        answers = await asyncio.gather(*(answer(client, token) for token in flood))
        elapsed = time.monotonic() - started
    assert all(reply == (401, ["UNAUTHENTICATED"]) for reply in answers), answers[:3]
    key_reads = [text for text in counter.statements if "gateway.signing_keys" in text]
    # One reload at once, then at most one per second (60 without the limit).
    assert 1 <= len(key_reads) <= 1 + int(elapsed), (len(key_reads), elapsed)
    assert elapsed < 5


async def test_tampered_kids_and_alg_none_are_refused(
    fresh_node: tuple[Settings, httpx.AsyncClient],
    pool: asyncpg.Pool,
    owner_conn: asyncpg.Connection,
) -> None:
    own, client = fresh_node
    conn = owner_conn  # the gateway's role may only read the key set
    first = await rotate(conn, min_age_s=0, force=False)  # "0" previous
    second = await rotate(conn, min_age_s=0, force=True)  # "0" retired
    rotation = await rotate(conn, min_age_s=0, force=True)  # the first kid retired
    assert (rotation.previous, rotation.retired) == (second.current, first.current)
    await keys_ready(own, pool)
    account_id = await ensure_demo_account(pool, demo_account(PARENT))
    issued = await start_session(
        pool, own, account_id=account_id, kind=ClientKind.API, method="DEV_TOKEN"
    )
    token = issued.access_token
    assert kid_of(token) == rotation.current
    assert await answer(client, token) == (200, "PARENT")

    claims = token_claims(sub=account_id, sid=issued.session_id)
    refused = {
        "kid of the previous key": with_header(token, {"alg": "HS256", "kid": LEGACY_KID}),
        "no kid (key 0's)": with_header(token, {"alg": "HS256"}),
        "an unknown kid": with_header(token, {"alg": "HS256", "kid": secrets.token_hex(8)}),
        "a kid that is no kid": with_header(token, {"alg": "HS256", "kid": "../../etc/passwd"}),
        "a numeric kid": with_header(token, {"alg": "HS256", "kid": 0}),
        "alg none": with_header(token, {"alg": "none", "kid": rotation.current}).rsplit(".", 1)[0]
        + ".",
        "the secret as the current key": signed(rotation.current, claims, key=JWT_SECRET.encode()),
        "another secret's key": signed(
            rotation.current, claims, key=derive_key("x" * 40, rotation.current)
        ),
    }
    # Correctly signed for the kid they name, so only the kid's state can refuse them.
    unknown = secrets.token_hex(8)
    refused |= {
        "an unknown kid, signed with its derived key": signed(unknown, claims),
        'kid "0" signed with the secret, "0" retired': signed(LEGACY_KID, claims),
        "no kid, signed with the secret": signed(None, claims),
        "a retired kid, signed with its key, unexpired": signed(first.current, claims),
        "HS512 with the current key": jwt.encode(
            {"alg": "HS512", "kid": rotation.current},
            claims,
            OctKey.import_key(derive_key(JWT_SECRET, rotation.current)),
            algorithms=["HS512"],
        ),
    }
    for what, forged in refused.items():
        assert await answer(client, forged) == (401, ["UNAUTHENTICATED"]), what
    # The same claims signed the same way with an accepted kid pass: what refused the
    # ones above is their kid (or alg), not their signature or claims.
    assert await answer(client, token) == (200, "PARENT")
    assert await answer(client, signed(second.current, claims)) == (200, "PARENT")
    assert await answer(client, signed(rotation.current, claims)) == (200, "PARENT")


async def test_logout_with_an_expired_token_of_a_retired_key_ends_what_it_was_given(
    fresh_node: tuple[Settings, httpx.AsyncClient],
    pool: asyncpg.Pool,
    owner_conn: asyncpg.Connection,
) -> None:
    own, client = fresh_node
    account_id = await ensure_demo_account(pool, demo_account(PARENT))
    api = await start_session(
        pool, own, account_id=account_id, kind=ClientKind.API, method="DEV_TOKEN"
    )
    assert api.refresh_token is not None and kid_of(api.access_token) == LEGACY_KID
    expired = signed(
        LEGACY_KID, token_claims(sub=account_id, sid=api.session_id, exp=int(time.time()) - 60)
    )
    await rotate(owner_conn, min_age_s=0, force=False)
    await rotate(owner_conn, min_age_s=0, force=True)  # "0" retired
    await own.signing_keys.reload(key_loader(pool))
    browser = await start_session(
        pool, own, account_id=account_id, kind=ClientKind.BROWSER, method="ESIA"
    )
    assert browser.cookie_value is not None
    bearer = {"Authorization": f"Bearer {expired}"}

    # The bearer alone: refused as before (nothing else to end).
    alone = await client.post("/auth/logout", headers=bearer)
    code = alone.json()["errors"][0]["extensions"]["code"]
    assert (alone.status_code, code) == (401, "UNAUTHENTICATED"), alone.text
    assert await ended_sessions(pool, [api.session_id, browser.session_id]) == set()

    # With the refresh token and the cookie: both sessions end all the same (the API
    # session through its refresh token: the bearer names it but is refused). Not checked
    # through /auth/token: its sign-in event would count in other tests of this account.
    response = await client.post(
        "/auth/logout",
        headers={**bearer, "Cookie": f"{own.auth.session_cookie}={browser.cookie_value}"},
        data={"refresh_token": api.refresh_token},
    )
    assert response.status_code == 204, response.text
    assert await ended_sessions(pool, [api.session_id, browser.session_id]) == {
        api.session_id,
        browser.session_id,
    }


async def test_only_the_owner_writes_the_key_set(
    pool: asyncpg.Pool, database_url: str, data_dir: Path, empty_key_table: None
) -> None:
    # The gateway's role reads the key set and cannot write it.
    assert await pool.fetch("SELECT kid FROM gateway.signing_keys") == []
    for statement in (
        "INSERT INTO gateway.signing_keys (kid, state) VALUES ('aaaaaaaaaaaaaaaa', 'current')",
        "UPDATE gateway.signing_keys SET state = 'current'",
        "DELETE FROM gateway.signing_keys",
    ):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await pool.execute(statement)
    # So the rotation logs in as the owner: with only the gateway's DSN it is refused.
    code, _, stderr = cli(database_url, data_dir, "rotate-signing-key")
    assert code == 2 and "DATABASE_OWNER_URL" in stderr, stderr
    code, listed, _ = cli(database_url, data_dir, "signing-keys")  # reading is the gateway's
    assert (code, listed) == (0, [])

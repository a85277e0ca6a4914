"""Bearer tokens and viewer resolution: signatures, expiry, and a scope read fresh per request."""

from __future__ import annotations

import base64
import dataclasses
import json
import time
import uuid
from typing import Any

import asyncpg
import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import OctKey

from auth.requests import authenticate
from auth.store.accounts import ensure_demo_account, load_viewer
from auth.tokens import AUDIENCE, ISSUER, issue_token, verify_token
from auth.viewer import Role
from fixtures.demo import DEMO_ACCOUNTS, demo_account
from gateway.core.db import create_pool
from gateway.core.errors import ApiError, ErrorCode, HttpError
from gateway.core.settings import Settings
from tests.support.tokens import link_removed, registry_children, sign_token, token_claims

VIEWER_QUERY = "{ viewer { id role displayName } }"


def _b64(value: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


def _code(settings: Settings, token: str) -> str:
    with pytest.raises(ApiError) as caught:
        verify_token(settings, token)
    extensions = caught.value.extensions or {}
    return str(extensions["code"])


def test_issued_token_has_the_documented_claims(settings: Settings) -> None:
    account_id, session_id = str(uuid.uuid4()), str(uuid.uuid4())
    before = int(time.time())
    token = issue_token(settings, account_id=account_id, session_id=session_id)
    decoded = jwt.decode(token, OctKey.import_key(settings.jwt_secret), algorithms=["HS256"])
    assert decoded.header["alg"] == "HS256"
    claims = decoded.claims
    assert (claims["iss"], claims["aud"], claims["sub"]) == (ISSUER, AUDIENCE, account_id)
    assert (claims["typ"], claims["sid"]) == ("access", session_id)
    assert before <= claims["iat"] <= int(time.time())
    assert claims["exp"] - claims["iat"] == settings.jwt_ttl_seconds
    assert len(claims["jti"]) == 32
    verified = verify_token(settings, token)
    assert (verified.account_id, verified.session_id) == (account_id, session_id)
    assert verified.expires_at == claims["exp"]
    assert issue_token(settings, account_id=account_id, session_id=session_id) != token  # jti


def test_expired_token_has_its_own_code(settings: Settings) -> None:
    past = int(time.time()) - 3600
    assert (
        _code(settings, sign_token(settings, token_claims(iat=past - 60, exp=past)))
        == "TOKEN_EXPIRED"
    )


@pytest.mark.parametrize(
    ("label", "overrides"),
    [
        ("wrong issuer", {"iss": "somebody-else"}),
        ("wrong audience", {"aud": "another-service"}),
        ("no expiry", {"exp": None}),
        ("no subject", {"sub": None}),
        ("subject is not an account id", {"sub": "42"}),
        ("no session", {"sid": None}),
        ("session is not a session id", {"sid": "7"}),
        ("no token type", {"typ": None}),
        ("a session cookie used as an access token", {"typ": "session"}),
        ("issued in the future", {"iat": int(time.time()) + 3600}),
    ],
)
def test_tokens_with_wrong_claims_are_refused(
    settings: Settings, label: str, overrides: dict[str, Any]
) -> None:
    assert _code(settings, sign_token(settings, token_claims(**overrides))) == "UNAUTHENTICATED", (
        label
    )


def test_garbage_tampered_and_foreign_tokens_are_refused(settings: Settings) -> None:
    good = issue_token(settings, account_id=str(uuid.uuid4()), session_id=str(uuid.uuid4()))
    header, _payload, signature = good.split(".")
    other_payload = sign_token(settings, token_claims()).split(".")[1]
    unsigned = ".".join(
        (_b64({"alg": "none", "typ": "JWT"}), _b64(token_claims()), "")
    )  # alg=none must never be accepted
    for token in (
        "garbage",
        "a.b.c",
        "",
        f"{header}.{other_payload}.{signature}",  # payload swapped, signature kept
        good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB"),
        sign_token(settings, token_claims(), secret="another-secret-another-secret-0123456789"),
        unsigned,
        "x" * 5000,
    ):
        assert _code(settings, token) == "UNAUTHENTICATED", token[:40]


async def test_http_401_for_bad_and_expired_tokens(
    client: httpx.AsyncClient, settings: Settings, tokens: dict[str, str]
) -> None:
    past = int(time.time()) - 10
    expired = sign_token(settings, token_claims(iat=past - 60, exp=past))
    unknown = issue_token(settings, account_id=str(uuid.uuid4()), session_id=str(uuid.uuid4()))
    # A real session named together with another account: the pair must match.
    real = verify_token(settings, tokens["parent-one-school"])
    other = verify_token(settings, tokens["parent-two-schools"])
    mixed = issue_token(settings, account_id=other.account_id, session_id=real.session_id)
    cases = [
        (f"Bearer {expired}", "TOKEN_EXPIRED"),
        ("Bearer garbage", "UNAUTHENTICATED"),
        (f"Bearer {unknown}", "UNAUTHENTICATED"),
        (f"Bearer {mixed}", "UNAUTHENTICATED"),
        (f"Basic {tokens['parent-one-school']}", "UNAUTHENTICATED"),
        ("Bearer ", "UNAUTHENTICATED"),
    ]
    for authorization, code in cases:
        for accept in ("application/json", "application/graphql-response+json"):
            response = await client.post(
                "/graphql",
                json={"query": VIEWER_QUERY},
                headers={"Authorization": authorization, "Accept": accept},
            )
            assert response.status_code == 401, authorization
            assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
            assert response.headers["content-type"] == f"{accept}; charset=utf-8"
            body = response.json()
            assert "data" not in body
            assert [e["extensions"]["code"] for e in body["errors"]] == [code]


async def test_missing_token_is_an_anonymous_viewer(client: httpx.AsyncClient) -> None:
    response = await client.post("/graphql", json={"query": VIEWER_QUERY})
    assert response.status_code == 200
    body = response.json()
    assert body["data"] == {"viewer": None}
    assert body["errors"][0]["extensions"]["code"] == ErrorCode.UNAUTHENTICATED.value
    assert body["errors"][0]["path"] == ["viewer"]


@pytest.mark.parametrize("account", DEMO_ACCOUNTS, ids=lambda account: account.key)
async def test_every_demo_account_signs_in(
    client: httpx.AsyncClient, tokens: dict[str, str], account: Any
) -> None:
    response = await client.post(
        "/graphql",
        json={"query": VIEWER_QUERY},
        headers={"Authorization": f"Bearer {tokens[account.key]}"},
    )
    assert response.status_code == 200, response.text
    viewer = response.json()["data"]["viewer"]
    assert viewer["role"] == account.role
    assert viewer["displayName"] == account.full_name
    uuid.UUID(viewer["id"])


async def test_ensure_demo_account_is_idempotent(pool: asyncpg.Pool) -> None:
    account = demo_account("parent-two-schools")
    first = await ensure_demo_account(pool, account)
    assert await ensure_demo_account(pool, account) == first
    count = await pool.fetchval(
        "SELECT count(*) FROM gateway.accounts WHERE role = 'PARENT' AND snils = $1",
        account.snils,
    )
    assert count == 1


async def test_viewer_read_over_the_statement_timeout_is_503_timeout(
    database_url: str,
    settings: Settings,
    tokens: dict[str, str],
    owner_conn: asyncpg.Connection,
) -> None:
    """A valid token whose session cannot be read in time: 503 TIMEOUT, not 401 or 500."""
    quick = dataclasses.replace(
        settings, statement_timeout_ms=200, pool_min_size=1, pool_max_size=1
    )
    slow_pool = await create_pool(database_url, quick)
    locked = owner_conn.transaction()
    await locked.start()
    try:
        await owner_conn.execute("LOCK TABLE gateway.sessions IN ACCESS EXCLUSIVE MODE")
        with pytest.raises(HttpError) as caught:
            await authenticate(f"Bearer {tokens['parent-one-school']}", settings, slow_pool)
    finally:
        await locked.rollback()
        await slow_pool.close()
    assert (caught.value.status, caught.value.code) == (503, ErrorCode.TIMEOUT)


async def test_scope_of_each_role(pool: asyncpg.Pool, owner_conn: asyncpg.Connection) -> None:
    merged = demo_account("parent-two-schools")
    viewer = await load_viewer(pool, await ensure_demo_account(pool, merged))
    assert viewer is not None and viewer.role is Role.PARENT
    assert merged.snils is not None
    expected = await registry_children(owner_conn, merged.snils)
    assert viewer.student_ids == expected
    schools = await owner_conn.fetch(
        "SELECT DISTINCT school_id FROM school.students WHERE id = ANY($1)", list(expected)
    )
    assert len(expected) == 2 and len(schools) == 2  # one merged account over two schools
    assert viewer.school_ids == frozenset()

    young = await load_viewer(pool, await ensure_demo_account(pool, demo_account("student-young")))
    assert young is not None and young.role is Role.STUDENT
    login_owner = await owner_conn.fetchval(
        "SELECT id FROM school.students WHERE login = $1", demo_account("student-young").login
    )
    assert young.student_ids == {login_owner}

    unregistered = await load_viewer(
        pool, await ensure_demo_account(pool, demo_account("parent-unregistered"))
    )
    assert unregistered is not None and unregistered.student_ids == frozenset()

    admin = await load_viewer(pool, await ensure_demo_account(pool, demo_account("school-admin")))
    assert admin is not None and admin.role is Role.SCHOOL_ADMIN
    admin_school = await owner_conn.fetchval(
        "SELECT school_id FROM school.staff WHERE snils = $1", demo_account("school-admin").snils
    )
    assert admin.school_ids == {admin_school} and admin.student_ids == frozenset()

    analyst = await load_viewer(
        pool, await ensure_demo_account(pool, demo_account("regional-analyst"))
    )
    assert analyst is not None and analyst.role is Role.REGIONAL_ANALYST
    assert analyst.student_ids == frozenset() and analyst.school_ids == frozenset()

    assert await load_viewer(pool, str(uuid.uuid4())) is None


async def test_removed_link_vanishes_on_the_next_request(
    client: httpx.AsyncClient, tokens: dict[str, str], owner_conn: asyncpg.Connection
) -> None:
    account = demo_account("parent-one-school")
    assert account.snils is not None
    headers = {"Authorization": f"Bearer {tokens[account.key]}"}
    query = {"query": "{ myChildren { id } }"}

    async def children() -> set[int]:
        response = await client.post("/graphql", json=query, headers=headers)
        assert response.status_code == 200, response.text
        return {int(child["id"]) for child in response.json()["data"]["myChildren"]}

    before = await children()
    assert before == await registry_children(owner_conn, account.snils)
    removed = min(before)
    async with link_removed(owner_conn, account.snils, removed):
        assert await children() == before - {removed}
        forbidden = await client.post(
            "/graphql",
            json={
                "query": "query($id: ID!) { student(id: $id) { id } }",
                "variables": {"id": str(removed)},
            },
            headers=headers,
        )
        assert forbidden.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert await children() == before

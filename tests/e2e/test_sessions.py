"""Sessions over real HTTP and the real database: refresh rotation and replay, logout,
expiry codes, the browser cookie session and its CSRF defence, scope following the
registry, and another family's credentials never reaching a child.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from starlette.applications import Starlette

from auth.store.accounts import ensure_demo_account
from auth.store.audit import SIGNED_IN
from auth.store.sessions import (
    ClientKind,
    IssuedSession,
    hash_refresh_token,
    safe_return_to,
    signed_in_response,
    start_session,
)
from auth.tokens import issue_session_cookie, verify_token
from fixtures.demo import demo_account
from gateway.core.db import counting_statements
from gateway.core.settings import Settings
from tests.support.environment import gateway_env
from tests.support.statements import application_statements
from tests.support.tokens import link_removed, registry_children, sign_token, token_claims

VIEWER_QUERY = "{ viewer { id role } }"
CHILDREN_QUERY = "{ myChildren { id } }"
STUDENT_QUERY = "query($id: ID!) { student(id: $id) { id fullName } }"
FOREIGN_ORIGIN = "https://evil.example"


async def _session(
    pool: asyncpg.Pool, settings: Settings, key: str, kind: ClientKind = ClientKind.API
) -> IssuedSession:
    account_id = await ensure_demo_account(pool, demo_account(key))
    method = "ESIA" if kind is ClientKind.BROWSER else "DEV_TOKEN"
    return await start_session(pool, settings, account_id=account_id, kind=kind, method=method)


def _origin(settings: Settings) -> str:
    return settings.auth.public_url


def _cookie_headers(settings: Settings, issued: IssuedSession, **extra: str) -> dict[str, str]:
    assert issued.cookie_value is not None
    headers = {"Cookie": f"{settings.auth.session_cookie}={issued.cookie_value}"}
    headers.update(extra)
    return headers


async def _graphql(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    query: str = VIEWER_QUERY,
    variables: dict[str, Any] | None = None,
) -> httpx.Response:
    body: dict[str, Any] = {"query": query}
    if variables is not None:
        body["variables"] = variables
    return await client.post("/graphql", json=body, headers=headers)


def _codes(response: httpx.Response) -> list[str]:
    return [error["extensions"]["code"] for error in response.json().get("errors", [])]


async def _refresh(
    client: httpx.AsyncClient, token: str, *, as_json: bool = False
) -> httpx.Response:
    params = {"grant_type": "refresh_token", "refresh_token": token}
    if as_json:
        return await client.post("/auth/token", json=params)
    return await client.post("/auth/token", data=params)


async def _sign_in_events(
    app: Starlette, owner_conn: asyncpg.Connection, account_id: str
) -> list[str]:
    await app.state.auth.recorder.flush()
    rows = await owner_conn.fetch(
        "SELECT outcome FROM gateway.sign_in_events "
        "WHERE method = 'REFRESH' AND account_id = $1::uuid ORDER BY id",
        account_id,
    )
    return [row["outcome"] for row in rows]


# --- refresh tokens ------------------------------------------------------------------


async def test_refresh_rotates_the_pair(
    app: Starlette,
    client: httpx.AsyncClient,
    pool: asyncpg.Pool,
    settings: Settings,
    owner_conn: asyncpg.Connection,
) -> None:
    issued = await _session(pool, settings, "parent-one-school")
    assert issued.refresh_token is not None and issued.cookie_value is None
    response = await _refresh(client, issued.refresh_token)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "refresh_token"}
    assert body["token_type"] == "Bearer" and body["expires_in"] == settings.jwt_ttl_seconds
    assert body["refresh_token"] != issued.refresh_token
    assert verify_token(settings, body["access_token"]).session_id == issued.session_id
    viewer = await _graphql(client, {"Authorization": f"Bearer {body['access_token']}"})
    assert viewer.json()["data"]["viewer"]["id"] == issued.account_id
    rows = await owner_conn.fetch(
        "SELECT token_hash, used_at IS NOT NULL AS used FROM gateway.refresh_tokens "
        "WHERE session_id = $1::uuid ORDER BY issued_at, used_at NULLS LAST",
        issued.session_id,
    )
    stored = {bytes(row["token_hash"]): row["used"] for row in rows}
    assert stored == {
        hash_refresh_token(issued.refresh_token): True,
        hash_refresh_token(body["refresh_token"]): False,
    }  # only hashes are stored; the used one is marked
    again = await _refresh(client, body["refresh_token"], as_json=True)  # JSON works too
    assert again.status_code == 200, again.text
    events = await _sign_in_events(app, owner_conn, issued.account_id)
    assert events == [SIGNED_IN, SIGNED_IN]


async def test_replayed_refresh_token_revokes_the_session(
    app: Starlette,
    client: httpx.AsyncClient,
    pool: asyncpg.Pool,
    settings: Settings,
    owner_conn: asyncpg.Connection,
) -> None:
    issued = await _session(pool, settings, "parent-two-schools")
    assert issued.refresh_token is not None
    first = (await _refresh(client, issued.refresh_token)).json()
    bearer = {"Authorization": f"Bearer {first['access_token']}"}
    assert (await _graphql(client, bearer)).status_code == 200
    replay = await _refresh(client, issued.refresh_token)
    assert replay.status_code == 400
    body = replay.json()
    assert body["error"] == "invalid_grant" and body["code"] == "REFRESH_TOKEN_INVALID"
    assert body["message"].startswith("Токен обновления")
    after = await _graphql(client, bearer)
    assert after.status_code == 401
    assert _codes(after) == ["SESSION_REVOKED"] and "data" not in after.json()
    # The legitimate successor is dead too: the whole session is revoked.
    assert (await _refresh(client, first["refresh_token"])).json()["code"] == (
        "REFRESH_TOKEN_INVALID"
    )
    events = await _sign_in_events(app, owner_conn, issued.account_id)
    assert events == [SIGNED_IN, "SESSION_REVOKED", "REFRESH_TOKEN_INVALID"]


async def test_unknown_expired_and_malformed_refresh_requests(
    client: httpx.AsyncClient,
    pool: asyncpg.Pool,
    settings: Settings,
    owner_conn: asyncpg.Connection,
) -> None:
    unknown = await _refresh(client, "not-a-token-we-issued")
    assert (unknown.status_code, unknown.json()["code"]) == (400, "REFRESH_TOKEN_INVALID")
    issued = await _session(pool, settings, "student-young")
    assert issued.refresh_token is not None
    await owner_conn.execute(
        "UPDATE gateway.refresh_tokens SET expires_at = now() - interval '1 second' "
        "WHERE session_id = $1::uuid",
        issued.session_id,
    )
    expired = await _refresh(client, issued.refresh_token)
    assert (expired.status_code, expired.json()["code"]) == (400, "REFRESH_TOKEN_INVALID")
    # An expired (never used) token is not a replay: the session itself stays valid.
    still = await _graphql(client, {"Authorization": f"Bearer {issued.access_token}"})
    assert still.status_code == 200
    wrong_grant = await client.post("/auth/token", data={"grant_type": "password"})
    assert wrong_grant.status_code == 400
    assert wrong_grant.json()["error"] == "unsupported_grant_type"
    missing = await client.post("/auth/token", data={"grant_type": "refresh_token"})
    assert (missing.status_code, missing.json()["error"]) == (400, "invalid_request")
    text = await client.post("/auth/token", content=b"x", headers={"Content-Type": "text/plain"})
    assert text.status_code == 415


# --- logout and expiry ---------------------------------------------------------------


async def test_bearer_logout_revokes_the_session(
    client: httpx.AsyncClient, pool: asyncpg.Pool, settings: Settings
) -> None:
    issued = await _session(pool, settings, "parent-one-school")
    assert issued.refresh_token is not None
    bearer = {"Authorization": f"Bearer {issued.access_token}"}
    assert (await _graphql(client, bearer)).status_code == 200
    logout = await client.post("/auth/logout", headers=bearer)
    assert logout.status_code == 204
    after = await _graphql(client, bearer)
    assert (after.status_code, _codes(after)) == (401, ["SESSION_REVOKED"])
    assert after.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    refreshed = await _refresh(client, issued.refresh_token)
    assert refreshed.json()["code"] == "REFRESH_TOKEN_INVALID"
    assert (await client.post("/auth/logout", headers=bearer)).status_code == 204  # idempotent
    assert (await client.post("/auth/logout")).status_code == 401


async def test_logout_accepts_a_just_expired_access_token(
    client: httpx.AsyncClient, pool: asyncpg.Pool, settings: Settings
) -> None:
    issued = await _session(pool, settings, "parent-one-school")
    past = int(time.time()) - 60
    claims = token_claims(sub=issued.account_id, sid=issued.session_id, iat=past - 900, exp=past)
    logout = await client.post(
        "/auth/logout", headers={"Authorization": f"Bearer {sign_token(settings, claims)}"}
    )
    assert logout.status_code == 204
    after = await _graphql(client, {"Authorization": f"Bearer {issued.access_token}"})
    assert _codes(after) == ["SESSION_REVOKED"]
    forged = sign_token(settings, claims, secret="another-secret-another-secret-0123456789")
    refused = await client.post("/auth/logout", headers={"Authorization": f"Bearer {forged}"})
    assert refused.status_code == 401
    assert refused.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_a_session_cookie_or_client_token_is_no_access_token(
    client: httpx.AsyncClient, pool: asyncpg.Pool, settings: Settings
) -> None:
    """Token kinds never stand in for each other: a browser's cookie value sent as a
    bearer token, or a machine client's token at logout, is refused and revokes nothing."""
    browser = await _session(pool, settings, "parent-one-school", ClientKind.BROWSER)
    as_bearer = {"Authorization": f"Bearer {browser.cookie_value}"}
    refused = await _graphql(client, as_bearer)
    assert (refused.status_code, _codes(refused)) == (401, ["UNAUTHENTICATED"])
    assert (await client.post("/auth/logout", headers=as_bearer)).status_code == 401
    client_token = sign_token(
        settings, token_claims(typ="client", sub=str(uuid.uuid4()), sid=None, scope="diary:read")
    )
    logout = await client.post("/auth/logout", headers={"Authorization": f"Bearer {client_token}"})
    assert logout.status_code == 401
    still = await _graphql(client, _cookie_headers(settings, browser, Origin=_origin(settings)))
    assert still.status_code == 200 and still.json()["data"]["viewer"]["id"] == browser.account_id


async def test_logout_by_refresh_token_alone(
    client: httpx.AsyncClient, pool: asyncpg.Pool, settings: Settings
) -> None:
    issued = await _session(pool, settings, "student-young")
    assert issued.refresh_token is not None
    logout = await client.post("/auth/logout", data={"refresh_token": issued.refresh_token})
    assert logout.status_code == 204
    after = await _graphql(client, {"Authorization": f"Bearer {issued.access_token}"})
    assert _codes(after) == ["SESSION_REVOKED"]


async def test_expired_access_token_is_told_apart(
    client: httpx.AsyncClient,
    pool: asyncpg.Pool,
    settings: Settings,
    owner_conn: asyncpg.Connection,
) -> None:
    issued = await _session(pool, settings, "parent-one-school")
    past = int(time.time()) - 5
    claims = token_claims(sub=issued.account_id, sid=issued.session_id, iat=past - 60, exp=past)
    expired = await _graphql(client, {"Authorization": f"Bearer {sign_token(settings, claims)}"})
    assert (expired.status_code, _codes(expired)) == (401, ["TOKEN_EXPIRED"])
    forged = await _graphql(client, {"Authorization": "Bearer forged"})
    assert (forged.status_code, _codes(forged)) == (401, ["UNAUTHENTICATED"])
    # An expired session (not revoked) ends its still-valid access tokens too.
    await owner_conn.execute(
        "UPDATE gateway.sessions SET expires_at = now() - interval '1 second' WHERE id = $1::uuid",
        issued.session_id,
    )
    ended = await _graphql(client, {"Authorization": f"Bearer {issued.access_token}"})
    assert (ended.status_code, _codes(ended)) == (401, ["SESSION_REVOKED"])


async def test_the_session_is_checked_in_the_viewer_statement(
    client: httpx.AsyncClient, pool: asyncpg.Pool, settings: Settings
) -> None:
    api = await _session(pool, settings, "parent-two-schools")
    browser = await _session(pool, settings, "parent-two-schools", ClientKind.BROWSER)
    for headers in (
        {"Authorization": f"Bearer {api.access_token}"},
        _cookie_headers(settings, browser, Origin=_origin(settings)),
    ):
        with counting_statements(keep_text=True) as counter:
            response = await _graphql(client, headers)
        assert response.status_code == 200
        touching = [
            text
            for text in application_statements(counter)
            if "gateway.sessions" in text or "gateway.accounts" in text
        ]
        assert len(touching) == 1, touching  # one statement: session + account + scope
        assert "gateway.sessions" in touching[0] and "diary_api.parent_links" in touching[0]


# --- browser cookie session ----------------------------------------------------------


async def test_cookie_session_posts_graphql_from_an_allowed_origin(
    client: httpx.AsyncClient, pool: asyncpg.Pool, settings: Settings
) -> None:
    issued = await _session(pool, settings, "parent-two-schools", ClientKind.BROWSER)
    assert issued.refresh_token is None and issued.cookie_value is not None
    for extra in ({"Origin": _origin(settings)}, {"Referer": _origin(settings) + "/graphql"}):
        response = await _graphql(client, _cookie_headers(settings, issued, **extra))
        assert response.status_code == 200, response.text
        assert response.json()["data"]["viewer"] == {"id": issued.account_id, "role": "PARENT"}
    # A bearer token, when present, is what counts (the cookie is ignored).
    other = await _session(pool, settings, "student-young")
    both = _cookie_headers(settings, issued, Authorization=f"Bearer {other.access_token}")
    response = await _graphql(client, both)
    assert response.json()["data"]["viewer"]["id"] == other.account_id


SAME = "same-origin"
JSON_BODY = '{"query": "{ myChildren { id } }"}'


@pytest.mark.parametrize(
    ("label", "origin_headers", "content_type", "content"),
    [
        ("foreign origin", {"Origin": FOREIGN_ORIGIN}, "application/json", JSON_BODY),
        ("opaque origin", {"Origin": "null"}, "application/json", JSON_BODY),
        ("no origin nor referer", {}, "application/json", JSON_BODY),
        ("foreign referer", {"Referer": FOREIGN_ORIGIN + "/x"}, "application/json", JSON_BODY),
        ("form", {"Origin": SAME}, "application/x-www-form-urlencoded", "query=%7B%7D"),
        ("text/plain", {"Origin": SAME}, "text/plain", JSON_BODY),
        ("multipart", {"Origin": SAME}, "multipart/form-data; boundary=x", "--x--"),
        ("no content type", {"Origin": SAME}, None, JSON_BODY),
    ],
)
async def test_csrf_attempts_with_a_cookie_are_rejected(
    client: httpx.AsyncClient,
    pool: asyncpg.Pool,
    settings: Settings,
    label: str,
    origin_headers: dict[str, str],
    content_type: str | None,
    content: str,
) -> None:
    issued = await _session(pool, settings, "parent-one-school", ClientKind.BROWSER)
    headers = _cookie_headers(settings, issued, Accept="application/json")
    for name, value in origin_headers.items():
        headers[name] = _origin(settings) if value == SAME else value
    if content_type is not None:
        headers["Content-Type"] = content_type
    response = await client.post("/graphql", content=content, headers=headers)
    assert response.status_code == 403, label
    body = response.json()
    assert "data" not in body, label
    assert [e["extensions"]["code"] for e in body["errors"]] == ["CSRF_REJECTED"], label


async def test_get_with_only_a_cookie_is_anonymous(
    client: httpx.AsyncClient, pool: asyncpg.Pool, settings: Settings
) -> None:
    issued = await _session(pool, settings, "parent-one-school", ClientKind.BROWSER)
    headers = _cookie_headers(settings, issued, Origin=_origin(settings), Accept="application/json")
    response = await client.get("/graphql", params={"query": CHILDREN_QUERY}, headers=headers)
    assert response.status_code == 200
    assert response.json()["data"] is None
    assert _codes(response) == ["UNAUTHENTICATED"]


async def test_bad_cookies_are_refused_and_cleared(
    client: httpx.AsyncClient, pool: asyncpg.Pool, settings: Settings
) -> None:
    issued = await _session(pool, settings, "parent-one-school", ClientKind.BROWSER)
    name = settings.auth.session_cookie
    past = int(time.time()) - 5
    cases = [
        ("garbage", "UNAUTHENTICATED"),
        (issued.access_token, "UNAUTHENTICATED"),  # an access token is not a cookie
        (
            issue_session_cookie(
                settings,
                account_id=issued.account_id,
                session_id=issued.session_id,
                expires_at=past,
            ),
            "TOKEN_EXPIRED",
        ),
    ]
    for value, code in cases:
        headers = {"Cookie": f"{name}={value}", "Origin": _origin(settings)}
        response = await _graphql(client, headers)
        assert (response.status_code, _codes(response)) == (401, [code]), value[:20]
        assert response.headers["set-cookie"].startswith(f'{name}=""; ')
        assert "Max-Age=0" in response.headers["set-cookie"]


async def test_cookie_logout_is_csrf_checked_and_revokes(
    client: httpx.AsyncClient, pool: asyncpg.Pool, settings: Settings
) -> None:
    issued = await _session(pool, settings, "parent-one-school", ClientKind.BROWSER)
    post_headers = _cookie_headers(settings, issued, Origin=_origin(settings))
    for bad in ({"Origin": FOREIGN_ORIGIN}, {}):
        headers = _cookie_headers(settings, issued, Accept="application/json", **bad)
        refused = await client.post("/auth/logout", headers=headers)
        assert refused.status_code == 403
        assert refused.json()["errors"][0]["extensions"]["code"] == "CSRF_REJECTED"
    assert (await _graphql(client, post_headers)).status_code == 200  # still signed in
    logout = await client.post(
        "/auth/logout",
        data={"return_to": "/graphql?signed_out=1"},
        headers={**post_headers, "Accept": "text/html"},
    )
    assert logout.status_code == 303
    assert logout.headers["location"] == "/graphql?signed_out=1"
    cleared = logout.headers["set-cookie"]
    assert cleared.startswith(f'{settings.auth.session_cookie}=""; ') and "Max-Age=0" in cleared
    after = await _graphql(client, post_headers)
    assert (after.status_code, _codes(after)) == (401, ["SESSION_REVOKED"])


async def test_cookie_flags_and_redirect(pool: asyncpg.Pool, settings: Settings) -> None:
    issued = await _session(pool, settings, "parent-one-school", ClientKind.BROWSER)
    response = signed_in_response(settings, issued, return_to="https://evil.example/x")
    assert response.status_code == 303 and response.headers["location"] == "/"
    local = response.headers["set-cookie"]
    assert local.startswith(f"{settings.auth.session_cookie}={issued.cookie_value}; ")
    attributes = {part.strip().lower() for part in local.split(";")[1:]}
    assert {"httponly", "path=/", "samesite=lax"} <= attributes
    assert f"max-age={settings.auth.session_ttl_seconds}" in attributes
    assert "secure" not in attributes  # public URL on 127.0.0.1
    env = gateway_env(settings.database_url, settings.data_dir)
    env["SCHOOL_GATEWAY_PUBLIC_URL"] = "https://dnevnik.example.ru"
    public = Settings.from_env(env)
    assert public.auth.cookie_secure
    secure = signed_in_response(public, issued, return_to="/graphql?x=1")
    assert secure.headers["location"] == "/graphql?x=1"
    attributes = {part.strip().lower() for part in secure.headers["set-cookie"].split(";")[1:]}
    assert {"httponly", "secure", "samesite=lax", "path=/"} <= attributes


async def test_api_sign_in_response(pool: asyncpg.Pool, settings: Settings) -> None:
    issued = await _session(pool, settings, "student-young")
    response = signed_in_response(settings, issued, return_to="/ignored")
    assert response.status_code == 200 and "set-cookie" not in response.headers
    assert response.headers["cache-control"] == "no-store"
    assert orjson.loads(bytes(response.body)) == {
        "access_token": issued.access_token,
        "token_type": "Bearer",
        "expires_in": settings.jwt_ttl_seconds,
        "refresh_token": issued.refresh_token,
    }


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "/"),
        ("", "/"),
        ("/graphql?a=1#b", "/graphql?a=1#b"),
        ("/auth/login", "/auth/login"),
        ("//evil.example/x", "/"),
        ("/\\evil.example", "/"),
        ("https://evil.example/", "/"),
        ("javascript:alert(1)", "/"),
        ("graphql", "/"),
        ("/\t/evil.example", "/"),
        ("/" + "a" * 3000, "/"),
    ],
)
def test_safe_return_to(value: str | None, expected: str) -> None:
    assert safe_return_to(value) == expected


async def test_start_session_refuses_unknown_methods(
    pool: asyncpg.Pool, settings: Settings
) -> None:
    with pytest.raises(ValueError, match="unknown sign-in method"):
        await start_session(
            pool, settings, account_id=str(uuid.uuid4()), kind=ClientKind.API, method="MAGIC"
        )


# --- scope and isolation -------------------------------------------------------------


async def test_removed_link_vanishes_for_a_cookie_session(
    client: httpx.AsyncClient,
    pool: asyncpg.Pool,
    settings: Settings,
    owner_conn: asyncpg.Connection,
) -> None:
    account = demo_account("parent-two-schools")
    assert account.snils is not None
    issued = await _session(pool, settings, account.key, ClientKind.BROWSER)
    headers = _cookie_headers(settings, issued, Origin=_origin(settings))

    async def children() -> set[int]:
        response = await _graphql(client, headers, CHILDREN_QUERY)
        assert response.status_code == 200, response.text
        return {int(child["id"]) for child in response.json()["data"]["myChildren"]}

    before = await children()
    assert before == await registry_children(owner_conn, account.snils) and len(before) == 2
    removed = max(before)
    async with link_removed(owner_conn, account.snils, removed):
        assert await children() == before - {removed}
        response = await _graphql(client, headers, STUDENT_QUERY, {"id": str(removed)})
        assert _codes(response) == ["FORBIDDEN"]
        assert response.json()["data"] == {"student": None}
    assert await children() == before


async def test_another_familys_token_and_cookie_never_reach_a_child(
    client: httpx.AsyncClient,
    pool: asyncpg.Pool,
    settings: Settings,
    owner_conn: asyncpg.Connection,
) -> None:
    victim = demo_account("parent-two-schools")
    assert victim.snils is not None
    children = await registry_children(owner_conn, victim.snils)
    api = await _session(pool, settings, "parent-one-school")
    browser = await _session(pool, settings, "parent-one-school", ClientKind.BROWSER)
    own = await registry_children(owner_conn, demo_account("parent-one-school").snils or "")
    assert children and not children & own
    credentials = [
        {"Authorization": f"Bearer {api.access_token}"},
        _cookie_headers(settings, browser, Origin=_origin(settings)),
    ]
    for headers in credentials:
        for child in sorted(children):
            response = await _graphql(client, headers, STUDENT_QUERY, {"id": str(child)})
            assert response.status_code == 200
            assert response.json()["data"] == {"student": None}
            assert _codes(response) == ["FORBIDDEN"]
        mine = await _graphql(client, headers, CHILDREN_QUERY)
        assert {int(c["id"]) for c in mine.json()["data"]["myChildren"]} == own
    # A token naming the victim's account with the attacker's session is refused.
    forged = sign_token(settings, token_claims(sub=str(uuid.uuid4()), sid=api.session_id))
    response = await _graphql(client, {"Authorization": f"Bearer {forged}"})
    assert (response.status_code, _codes(response)) == (401, ["UNAUTHENTICATED"])


async def test_logout_with_a_bearer_token_and_a_cookie_revokes_both(
    client: httpx.AsyncClient, pool: asyncpg.Pool, settings: Settings
) -> None:
    """Issue 9, item 15: both sessions end, not only the bearer's; the cookie is cleared."""
    api = await _session(pool, settings, "parent-one-school")
    browser = await _session(pool, settings, "parent-two-schools", ClientKind.BROWSER)
    bearer = {"Authorization": f"Bearer {api.access_token}"}
    cookie = _cookie_headers(settings, browser, Origin=_origin(settings))
    assert (await _graphql(client, bearer)).status_code == 200
    assert (await _graphql(client, cookie)).status_code == 200
    logout = await client.post("/auth/logout", headers={**bearer, **cookie})
    assert logout.status_code == 204
    assert logout.headers["set-cookie"].startswith(f'{settings.auth.session_cookie}=""; ')
    for headers in (bearer, cookie):
        after = await _graphql(client, headers)
        assert (after.status_code, _codes(after)) == (401, ["SESSION_REVOKED"])

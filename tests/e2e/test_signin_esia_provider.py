"""ESIA sign-in beyond the happy path's provider: the real provider unreachable, the start
throttled per address, a new sign-in ending the browser's previous session (live server,
real redirects through the development identity provider)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx

from auth.signin.esia import (
    CommandSigner,
    secret_text,
)
from fixtures.demo import demo_account
from gateway.app import create_app
from gateway.core.errors import ErrorCode
from gateway.core.identifiers import formatted
from gateway.core.settings import Settings
from tests.support.environment import gateway_env
from tests.support.esia_flow import (
    API,
    BROWSER,
    FAMILY_QUERY,
    assert_page,
    esia_flow,
    events_after,
    graphql,
    last_event_id,
)
from tests.support.live_server import LiveServer, live_server
from tests.support.signers import ECHO_SIGNER

# -- provider failures and configuration ---------------------------------------------------


def _env(database_url: str, data_dir: Path, **extra: str) -> dict[str, str]:
    return {**gateway_env(database_url, data_dir), **extra}


async def test_provider_down_is_esia_unavailable(
    database_url: str, data_dir: Path, pool: asyncpg.Pool, owner_conn: asyncpg.Connection
) -> None:
    env = _env(
        database_url,
        data_dir,
        SCHOOL_GATEWAY_DEV_IDP="0",
        SCHOOL_GATEWAY_ESIA_URL="http://127.0.0.1:9",  # discard port: nothing listens
        SCHOOL_GATEWAY_ESIA_CLIENT_ID="SCHOOLGW",
        SCHOOL_GATEWAY_ESIA_SIGNER_COMMAND=ECHO_SIGNER,
        SCHOOL_GATEWAY_ESIA_TIMEOUT="2",
    )
    async with live_server(env, pool) as server:
        async with httpx.AsyncClient(base_url=server.url, headers=BROWSER, timeout=30) as client:
            start = await client.get("/auth/esia/login", params={"return_to": "/x"})
            assert start.status_code == 302
            target = urlsplit(start.headers["location"])
            assert target.netloc == "127.0.0.1:9" and target.path == "/aas/oauth2/v2/ac"
            query = {k: v[0] for k, v in parse_qs(target.query).items()}
            assert query["client_id"] == "SCHOOLGW" and query["response_type"] == "code"
            assert query["access_type"] == "online" and query["nonce"]
            assert "code_challenge" not in query  # ESIA does not describe PKCE
            assert query["redirect_uri"] == server.url + "/auth/esia/callback"
            # The secret is what the signer returned for ESIA's text.
            text = secret_text(
                "SCHOOLGW",
                query["scope"],
                query["timestamp"],
                query["state"],
                query["redirect_uri"],
            )
            signed = await CommandSigner(ECHO_SIGNER, 5).sign(text)
            assert query["client_secret"] == signed
            since = await last_event_id(owner_conn)
            answer = await client.get(
                "/auth/esia/callback", params={"state": query["state"], "code": "c"}
            )
        assert_page(answer, ErrorCode.ESIA_UNAVAILABLE, 503)
        (event,) = await events_after(server, owner_conn, since)
        assert event["outcome"] == "ESIA_UNAVAILABLE"


# -- issue 9, item 15: the start is throttled; a new sign-in ends the previous session -----


async def test_esia_start_is_throttled_per_address(
    settings: Settings, pool: asyncpg.Pool, owner_conn: asyncpg.Connection
) -> None:
    """Over `esia_starts_per_minute` starts from one address: 429 RATE_LIMITED with
    Retry-After and a Russian page or JSON; other addresses are not affected."""
    busy, quiet = "203.0.113.60", "203.0.113.61"
    auth = dataclasses.replace(settings.auth, esia_starts_per_minute=3)
    app = create_app(dataclasses.replace(settings, auth=auth), pool=pool)

    def client_at(address: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, client=(address, 40000))
        return httpx.AsyncClient(transport=transport, base_url=settings.auth.public_url)

    try:
        async with client_at(busy) as client:
            starts = [(await client.get("/auth/esia/login")).status_code for _ in range(3)]
            assert starts == [302, 302, 302]
            refused = await client.get("/auth/esia/login", headers=API)
            assert refused.status_code == 429
            assert 1 <= int(refused.headers["retry-after"]) <= 60
            (error,) = refused.json()["errors"]
            assert error["extensions"]["code"] == "RATE_LIMITED"
            assert "Слишком много попыток входа через Госуслуги" in error["message"]
            page = await client.get("/auth/esia/login", headers=BROWSER)
            assert page.status_code == 429 and "Код: RATE_LIMITED" in page.text
            assert "retry-after" in page.headers and "set-cookie" not in page.headers
        async with client_at(quiet) as client:
            assert (await client.get("/auth/esia/login")).status_code == 302
    finally:
        await app.state.auth.recorder.close()
        await owner_conn.execute(
            "DELETE FROM gateway.sign_in_throttle WHERE key = ANY($1::text[])",
            [f"esia:{busy}", f"esia:{quiet}"],
        )


async def test_a_new_sign_in_ends_the_browsers_previous_session(
    live: LiveServer, browser: httpx.AsyncClient, owner_conn: asyncpg.Connection
) -> None:
    first_account = demo_account("parent-one-school")
    second_account = demo_account("parent-two-schools")
    assert first_account.snils and second_account.snils
    cookie_name = live.settings.auth.session_cookie
    first = await esia_flow(browser, formatted(first_account.snils))
    assert first.response.status_code == 303
    first_cookie = browser.cookies[cookie_name]
    second = await esia_flow(browser, formatted(second_account.snils))
    assert second.response.status_code == 303
    second_cookie = browser.cookies[cookie_name]
    assert second_cookie != first_cookie

    async with httpx.AsyncClient(base_url=live.url, timeout=30) as other:
        old = await other.post(
            "/graphql",
            json={"query": FAMILY_QUERY},
            headers={"Origin": live.url, "Cookie": f"{cookie_name}={first_cookie}"},
        )
        assert old.status_code == 401
        assert old.json()["errors"][0]["extensions"]["code"] == "SESSION_REVOKED"
    payload = await graphql(live, browser, FAMILY_QUERY)
    assert payload["data"]["viewer"]["displayName"] == second_account.full_name

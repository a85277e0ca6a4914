"""CORS over the real app: preflights of allowed and other origins, the headers of actual
answers, never a credentials header, and the session cookie never honoured cross-origin
(gateway.http.cors, SCHOOL_GATEWAY_CORS_ORIGINS)."""

from __future__ import annotations

import dataclasses
import gzip
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import orjson
import pytest
from starlette.applications import Starlette

from auth.store.accounts import ensure_demo_account
from auth.store.sessions import ClientKind, IssuedSession, start_session
from fixtures.demo import demo_account
from gateway.app import create_app
from gateway.core.settings import Settings, SettingsError
from gateway.http.cors import MAX_AGE_S
from tests.support.environment import gateway_env
from tests.support.live_server import live_server

WEB = "https://diary-app.example.ru"  # on the CORS list, not among the cookie's origins
OTHER = "https://evil.example"
VIEWER = {"query": "{ viewer { id role } }"}
APOLLO_HEADERS = "content-type, authorization, apollo-require-preflight, x-apollo-operation-name"


@pytest.fixture(scope="module")
async def cors_app(settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[Starlette]:
    app = create_app(dataclasses.replace(settings, cors_origins=frozenset({WEB})), pool=pool)
    yield app
    await app.state.auth.recorder.close()
    await app.state.services.close()


@pytest.fixture
async def cors(cors_app: Starlette, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=cors_app)
    async with httpx.AsyncClient(transport=transport, base_url=settings.auth.public_url) as client:
        yield client


def _preflight_headers(origin: str, method: str = "POST") -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": APOLLO_HEADERS,
    }


def _cors_headers(response: httpx.Response) -> dict[str, str]:
    return {
        name: value
        for name, value in response.headers.items()
        if name.startswith("access-control-")
    }


def _vary(response: httpx.Response) -> set[str]:
    return {token.strip().lower() for token in response.headers.get("vary", "").split(",")}


def _list(value: str) -> set[str]:
    return {token.strip().lower() for token in value.split(",")}


async def _browser_session(pool: asyncpg.Pool, settings: Settings) -> IssuedSession:
    account_id = await ensure_demo_account(pool, demo_account("parent-two-schools"))
    return await start_session(
        pool, settings, account_id=account_id, kind=ClientKind.BROWSER, method="ESIA"
    )


def test_cors_origins_setting() -> None:
    """Exact origins, normalised as a browser sends them; anything else refused at start."""
    base = {"SCHOOL_GATEWAY_DEV": "1"}
    assert Settings.from_env(base).cors_origins == frozenset()
    env = {
        **base,
        "SCHOOL_GATEWAY_CORS_ORIGINS": " https://App.Example.ru/ , http://localhost:5173,"
        "https://b.example.ru:443,http://[::1]:8080,https://XN--E1AFMKFD.xn--p1ai",
    }
    assert Settings.from_env(env).cors_origins == {
        "https://app.example.ru",
        "http://localhost:5173",
        "https://b.example.ru",
        "http://[::1]:8080",
        "https://xn--e1afmkfd.xn--p1ai",
    }
    for bad in ("*", "null", "app.example.ru", "https://a.ru/path", "ftp://a.ru", "https://u@a.ru"):
        with pytest.raises(SettingsError, match="SCHOOL_GATEWAY_CORS_ORIGINS"):
            Settings.from_env({**base, "SCHOOL_GATEWAY_CORS_ORIGINS": bad})
    # A wildcard anywhere in the host, a non-ASCII (not IDNA-encoded) or escaped host, a
    # malformed IPv6 address: never what a browser's Origin has (the review found them taken).
    for bad in (
        "https://*.example.ru",
        "https://app.*",
        "https://a*b.example.ru",
        "https://пример.рф",
        "https://exa%41mple.ru",
        "https://a..b.ru",
        "http://[::1::2]:8080",
    ):
        with pytest.raises(SettingsError, match="bad host"):
            Settings.from_env({**base, "SCHOOL_GATEWAY_CORS_ORIGINS": bad})


async def test_the_configured_origin_is_echoed_not_the_header(cors: httpx.AsyncClient) -> None:
    """An Origin in other letter case still names the configured origin; the answer names
    that origin as configured, not the request's text (the review found the raw header)."""
    shouted = " HTTPS://Diary-App.Example.RU"
    preflight = await cors.options("/graphql", headers=_preflight_headers(shouted))
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == WEB
    answer = await cors.post("/graphql", json=VIEWER, headers={"Origin": shouted})
    assert answer.headers["access-control-allow-origin"] == WEB


async def test_preflight_from_an_allowed_origin(cors: httpx.AsyncClient) -> None:
    response = await cors.options("/graphql", headers=_preflight_headers(WEB))
    assert response.status_code == 204, response.text
    assert response.content == b""
    headers = _cors_headers(response)
    assert headers["access-control-allow-origin"] == WEB
    assert _list(headers["access-control-allow-methods"]) == {"get", "post"}
    assert _list(APOLLO_HEADERS) <= _list(headers["access-control-allow-headers"])
    assert int(headers["access-control-max-age"]) == MAX_AGE_S
    assert "access-control-allow-credentials" not in headers
    assert "origin" in _vary(response)
    # A GET (Apollo's persisted GET, urql's GET queries) is preflighted the same way.
    get = await cors.options("/graphql", headers=_preflight_headers(WEB, "GET"))
    assert get.status_code == 204
    assert get.headers["access-control-allow-origin"] == WEB


async def test_preflight_from_another_origin_gets_no_cors_headers(
    cors: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    """Only the listed origins are answered, only on /graphql, and with no list nobody."""
    allowed = await cors.options("/graphql", headers=_preflight_headers(WEB))
    assert allowed.status_code == 204 and _cors_headers(allowed)
    refused = [
        await cors.options("/graphql", headers=_preflight_headers(OTHER)),
        await cors.options("/graphql", headers=_preflight_headers("null")),
        await cors.options("/graphql", headers=_preflight_headers(WEB + ".evil.example")),
        await cors.options("/auth/token", headers=_preflight_headers(WEB)),
        await client.options("/graphql", headers=_preflight_headers(WEB)),  # no list
    ]
    for response in refused:
        assert response.status_code == 405, response.request.url
        assert _cors_headers(response) == {}, response.request.headers
    # Without Access-Control-Request-Method it is a plain OPTIONS: 405 as before.
    plain = await cors.options("/graphql", headers={"Origin": WEB})
    assert plain.status_code == 405
    assert plain.headers["access-control-allow-origin"] == WEB  # readable, allows nothing
    assert "access-control-allow-methods" not in plain.headers


async def test_answers_to_an_allowed_origin_are_readable(
    cors: httpx.AsyncClient, client: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    bearer = {"Authorization": f"Bearer {tokens['parent-two-schools']}"}
    post = await cors.post("/graphql", json=VIEWER, headers={**bearer, "Origin": WEB})
    assert post.status_code == 200
    assert post.json()["data"]["viewer"]["role"] == "PARENT"
    get = await cors.get("/graphql", params=VIEWER, headers={**bearer, "Origin": WEB})
    assert get.status_code == 200 and get.json()["data"]["viewer"]["role"] == "PARENT"
    bad_token = await cors.post(
        "/graphql", json=VIEWER, headers={"Authorization": "Bearer nope", "Origin": WEB}
    )
    assert bad_token.status_code == 401  # errors are readable too
    for response in (post, get, bad_token):
        assert _cors_headers(response) == {"access-control-allow-origin": WEB}
        assert "origin" in _vary(response)
    # Another origin's answer: no CORS header, but the same Vary (caches keep them apart).
    other = await cors.post("/graphql", json=VIEWER, headers={**bearer, "Origin": OTHER})
    assert other.status_code == 200 and _cors_headers(other) == {}
    assert "origin" in _vary(other)
    # Without a list nothing changes at all.
    plain = await client.post("/graphql", json=VIEWER, headers={**bearer, "Origin": WEB})
    assert _cors_headers(plain) == {} and "origin" not in _vary(plain)


async def test_the_session_cookie_is_not_honoured_cross_origin(
    cors: httpx.AsyncClient, pool: asyncpg.Pool, settings: Settings, tokens: dict[str, str]
) -> None:
    """An origin on the CORS list is not one of the cookie's: the cookie is refused
    (403 CSRF_REJECTED, nothing executed), while a bearer token from there works."""
    assert WEB not in settings.auth.allowed_origins
    issued = await _browser_session(pool, settings)
    cookie = {"Cookie": f"{settings.auth.session_cookie}={issued.cookie_value}"}
    at_home = await cors.post(
        "/graphql", json=VIEWER, headers={**cookie, "Origin": settings.auth.public_url}
    )
    assert at_home.json()["data"]["viewer"]["id"] == issued.account_id  # the cookie is good
    cross = await cors.post("/graphql", json=VIEWER, headers={**cookie, "Origin": WEB})
    assert cross.status_code == 403
    assert "data" not in cross.json()
    assert [e["extensions"]["code"] for e in cross.json()["errors"]] == ["CSRF_REJECTED"]
    assert _cors_headers(cross) == {"access-control-allow-origin": WEB}
    bearer = {"Authorization": f"Bearer {tokens['parent-two-schools']}", "Origin": WEB}
    with_token = await cors.post("/graphql", json=VIEWER, headers={**bearer, **cookie})
    assert with_token.status_code == 200
    assert with_token.json()["data"]["viewer"]["role"] == "PARENT"
    assert _cors_headers(with_token) == {"access-control-allow-origin": WEB}


async def test_over_a_real_socket(
    database_url: str, data_dir: Path, pool: asyncpg.Pool, tokens: dict[str, str]
) -> None:
    """Through uvicorn (as `serve` runs it): the preflight's 204 and a cross-origin answer,
    gzip-compressed with the framing right."""
    env = {**gateway_env(database_url, data_dir), "SCHOOL_GATEWAY_CORS_ORIGINS": WEB}
    async with (
        live_server(env, pool) as live,
        httpx.AsyncClient(base_url=live.url, timeout=30) as client,
    ):
        preflight = await client.options("/graphql", headers=_preflight_headers(WEB))
        assert preflight.status_code == 204 and preflight.content == b""
        assert preflight.headers["access-control-allow-origin"] == WEB
        query = {
            "query": "{ myChildren { id fullName school { name } } __schema { types { name } } }"
        }
        headers = {
            "Authorization": f"Bearer {tokens['parent-two-schools']}",
            "Origin": WEB,
            "Accept-Encoding": "gzip",
        }
        async with client.stream("POST", "/graphql", json=query, headers=headers) as response:
            raw = b"".join([chunk async for chunk in response.aiter_raw()])
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == WEB
        assert response.headers["content-encoding"] == "gzip"
        assert int(response.headers["content-length"]) == len(raw)
        assert {"origin", "accept-encoding"} <= _vary(response)
        body = orjson.loads(gzip.decompress(raw))
        assert len(body["data"]["myChildren"]) == 2 and body["data"]["__schema"]["types"]

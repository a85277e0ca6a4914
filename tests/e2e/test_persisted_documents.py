"""Trusted documents over HTTP through the real app: registered documents by hash and by
documentId, Apollo's automatic persisted queries (miss, registration, hit, hash mismatch),
the response cache across text and hash, and the browser cookie's "registered documents
only" mode (gateway/http/persisted.py)."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from starlette.applications import Starlette

from auth.store.accounts import ensure_demo_account
from auth.store.sessions import ClientKind, start_session
from fixtures.demo import demo_account
from gateway.app import create_app
from gateway.core.errors import MESSAGES, ErrorCode
from gateway.core.settings import Settings
from gateway.http.endpoint import GraphQLEndpoint
from gateway.http.persisted import DOCUMENTS_DIR, PersistedDocuments, sha256_hex
from gateway.http.protocol import RequestParameters
from tests.support.planted import error_codes

PARENT = "parent-two-schools"
MY_CHILDREN = (DOCUMENTS_DIR / "MyChildren.graphql").read_text(encoding="utf-8")
MY_CHILDREN_HASH = sha256_hex(MY_CHILDREN)
NOT_FOUND_BODY = {
    "errors": [
        {"message": "PersistedQueryNotFound", "extensions": {"code": "PERSISTED_QUERY_NOT_FOUND"}}
    ]
}
JSON_ACCEPT = {"Accept": "application/json"}


def _apq(sha256: str, query: str | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"extensions": {"persistedQuery": {"version": 1, "sha256Hash": sha256}}}
    if query is not None:
        body["query"] = query
    body.update(extra)
    return body


def _bearer(token: str) -> dict[str, str]:
    return {**JSON_ACCEPT, "Authorization": f"Bearer {token}"}


def _fresh_query() -> str:
    """A valid document no other request has sent (a unique alias)."""
    return f"query Fresh {{ a{uuid.uuid4().hex}: viewer {{ role }} }}"


async def _post(
    client: httpx.AsyncClient, body: dict[str, Any], headers: dict[str, str] | None = None
) -> httpx.Response:
    return await client.post("/graphql", json=body, headers=headers or JSON_ACCEPT)


def _endpoint(app: Starlette) -> GraphQLEndpoint:
    found: GraphQLEndpoint = app.state.graphql_endpoint
    return found


@pytest.fixture(scope="module")
async def strict_app(settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[Starlette]:
    """The app with the cookie "registered documents only" mode on (the default; the
    tests' environment turns it off for the session tests' free cookie queries)."""
    application = create_app(dataclasses.replace(settings, cookie_registered_only=True), pool=pool)
    yield application
    await application.state.auth.recorder.close()
    await application.state.services.close()


@pytest.fixture
async def strict(strict_app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=strict_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as client:
        yield client


@pytest.fixture
async def cookie(pool: asyncpg.Pool, settings: Settings) -> dict[str, str]:
    """The headers of a browser session of the parent, from the gateway's own origin."""
    account_id = await ensure_demo_account(pool, demo_account(PARENT))
    issued = await start_session(
        pool, settings, account_id=account_id, kind=ClientKind.BROWSER, method="ESIA"
    )
    assert issued.cookie_value is not None
    return {
        **JSON_ACCEPT,
        "Cookie": f"{settings.auth.session_cookie}={issued.cookie_value}",
        "Origin": settings.auth.public_url,
    }


async def _children_by_text(client: httpx.AsyncClient, token: str) -> list[dict[str, Any]]:
    response = await _post(client, {"query": MY_CHILDREN}, _bearer(token))
    assert response.status_code == 200, response.text
    children: list[dict[str, Any]] = response.json()["data"]["myChildren"]
    assert len(children) == 2  # the parent of two schools
    return children


# --- registered documents --------------------------------------------------------------


async def test_a_registered_document_runs_by_its_hash_and_by_document_id(
    client: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    expected = await _children_by_text(client, tokens[PARENT])
    headers = _bearer(tokens[PARENT])
    for body in (
        _apq(MY_CHILDREN_HASH),
        _apq(MY_CHILDREN_HASH.upper()),
        {"documentId": f"sha256:{MY_CHILDREN_HASH}"},
        {"documentId": MY_CHILDREN_HASH, "operationName": "MyChildren"},
        {"documentId": f"sha256:{MY_CHILDREN_HASH.upper()}"},
    ):
        response = await _post(client, body, headers)
        assert response.status_code == 200, (body, response.text)
        assert response.json() == {"data": {"myChildren": expected}}
    for params in (
        {"extensions": orjson.dumps(_apq(MY_CHILDREN_HASH)["extensions"]).decode()},
        {"documentId": f"sha256:{MY_CHILDREN_HASH}"},
    ):
        response = await client.get("/graphql", params=params, headers=headers)
        assert response.status_code == 200, (params, response.text)
        assert response.json() == {"data": {"myChildren": expected}}


async def test_an_unknown_hash_is_persisted_query_not_found(
    client: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    unknown = sha256_hex(_fresh_query())
    for accept in ("application/json", "application/graphql-response+json"):
        headers = {"Accept": accept, "Authorization": f"Bearer {tokens[PARENT]}"}
        for body in (_apq(unknown), {"documentId": f"sha256:{unknown}"}):
            response = await _post(client, body, headers)
            assert response.status_code == 200, response.text
            assert response.json() == NOT_FOUND_BODY
    anonymous = await client.get(
        "/graphql", params={"extensions": orjson.dumps(_apq(unknown)["extensions"]).decode()}
    )
    assert (anonymous.status_code, anonymous.json()) == (200, NOT_FOUND_BODY)


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"documentId": "md5:abc"}, "documentId"),
        ({"documentId": "sha256:" + "g" * 64}, "documentId"),
        (_apq("abc"), "sha256Hash"),
        ({"extensions": {"persistedQuery": {"version": 2, "sha256Hash": "a" * 64}}}, "version"),
        ({"extensions": {"persistedQuery": {"version": True, "sha256Hash": "a" * 64}}}, "version"),
        ({"documentId": MY_CHILDREN_HASH, "query": MY_CHILDREN}, "documentId"),
        ({"extensions": {}}, "query"),
    ],
)
async def test_malformed_persisted_requests_are_bad_requests(
    client: httpx.AsyncClient, body: dict[str, Any], detail: str
) -> None:
    response = await _post(client, body)
    assert response.status_code == 400, response.text
    assert error_codes(response.json()) == ["BAD_REQUEST"]
    assert detail in response.json()["errors"][0]["message"]


# --- automatic persisted queries -------------------------------------------------------


async def test_apq_miss_then_registration_then_hit(
    app: Starlette, client: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    query = _fresh_query()
    sha256 = sha256_hex(query)
    headers = _bearer(tokens[PARENT])
    assert (await _post(client, _apq(sha256), headers)).json() == NOT_FOUND_BODY
    held = _endpoint(app).persisted.remembered
    registered = await _post(client, _apq(sha256, query), headers)
    assert registered.status_code == 200, registered.text
    answer = registered.json()
    assert list(answer["data"].values()) == [{"role": "PARENT"}]
    assert _endpoint(app).persisted.remembered == held + 1
    for hit in (
        await _post(client, _apq(sha256), headers),
        await client.get(
            "/graphql",
            params={"extensions": orjson.dumps(_apq(sha256)["extensions"]).decode()},
            headers=headers,
        ),
    ):
        assert (hit.status_code, hit.json()) == (200, answer)
    # documentId names registered (build-time) documents only.
    assert (await _post(client, {"documentId": sha256}, headers)).json() == NOT_FOUND_BODY


async def test_a_hash_that_is_not_the_querys_is_refused_and_kept_nowhere(
    client: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    query, other = _fresh_query(), _fresh_query()
    headers = _bearer(tokens[PARENT])
    for accept in ("application/json", "application/graphql-response+json"):
        response = await _post(
            client, _apq(sha256_hex(other), query), {**headers, "Accept": accept}
        )
        assert response.status_code == 400, response.text
        assert response.json() == {
            "errors": [
                {
                    "message": MESSAGES[ErrorCode.PERSISTED_QUERY_HASH_MISMATCH],
                    "extensions": {"code": "PERSISTED_QUERY_HASH_MISMATCH"},
                }
            ]
        }
    for sha256 in (sha256_hex(other), sha256_hex(query)):
        assert (await _post(client, _apq(sha256), headers)).json() == NOT_FOUND_BODY


async def test_an_invalid_document_is_not_remembered(
    client: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    query = f"query Bad {{ viewer {{ nothing{uuid.uuid4().hex} }} }}"
    headers = _bearer(tokens[PARENT])
    response = await _post(client, _apq(sha256_hex(query), query), headers)
    assert error_codes(response.json()) == ["GRAPHQL_VALIDATION_FAILED"]
    assert (await _post(client, _apq(sha256_hex(query)), headers)).json() == NOT_FOUND_BODY


async def test_apq_registration_can_be_switched_off(
    settings: Settings, pool: asyncpg.Pool, tokens: dict[str, str]
) -> None:
    application = create_app(dataclasses.replace(settings, apq_registration=False), pool=pool)
    try:
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as c:
            query = _fresh_query()
            headers = _bearer(tokens[PARENT])
            ran = await _post(c, _apq(sha256_hex(query), query), headers)
            assert list(ran.json()["data"].values()) == [{"role": "PARENT"}]
            assert (await _post(c, _apq(sha256_hex(query)), headers)).json() == NOT_FOUND_BODY
            registered = await _post(c, _apq(MY_CHILDREN_HASH), headers)  # build-time ones still
            assert len(registered.json()["data"]["myChildren"]) == 2
    finally:
        await application.state.auth.recorder.close()
        await application.state.services.close()


def test_the_apq_cache_is_bounded_in_entries_and_bytes(settings: Settings) -> None:
    def register(persisted: PersistedDocuments, query: str) -> None:
        params = RequestParameters(query, None, sha256_hex(query), None, None, None)
        resolved = persisted.resolve(params)
        assert resolved.request.persist_as == sha256_hex(query)
        persisted.remember(resolved.request)

    few = PersistedDocuments(settings, max_entries=3)
    for _ in range(10):
        register(few, _fresh_query())
    assert few.remembered == 3
    small = PersistedDocuments(settings, max_bytes=4096)
    for _ in range(10):
        register(small, _fresh_query())
    assert 0 < small.remembered < 10 and small.remembered_bytes <= 4096
    # A text longer than the parser accepts (it would be TOO_MANY_TOKENS) is never kept.
    huge = PersistedDocuments(settings)
    register(huge, "{ viewer { role } }" + " " * (settings.max_tokens * 64))
    assert huge.remembered == 0


# --- the response cache ----------------------------------------------------------------


async def test_a_document_by_hash_hits_the_answer_cached_for_its_text(
    app: Starlette, client: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    cache = _endpoint(app).response_cache
    assert cache is not None
    headers = _bearer(tokens[PARENT])
    by_text = await _post(client, {"query": MY_CHILDREN}, headers)
    for body in (_apq(MY_CHILDREN_HASH), {"documentId": f"sha256:{MY_CHILDREN_HASH}"}):
        hits = cache.hits
        by_hash = await _post(client, body, headers)
        assert cache.hits == hits + 1, body
        assert by_hash.content == by_text.content
    # Another document by hash: its own answer, never MyChildren's.
    other = _fresh_query()
    assert (await _post(client, _apq(sha256_hex(other), other), headers)).is_success
    response = await _post(client, _apq(sha256_hex(other)), headers)
    assert response.status_code == 200 and response.content != by_text.content
    assert list(response.json()["data"].values()) == [{"role": "PARENT"}]


# --- the browser cookie: registered documents only -------------------------------------


async def test_a_cookie_session_runs_registered_documents(
    strict: httpx.AsyncClient, cookie: dict[str, str], tokens: dict[str, str]
) -> None:
    expected = await _children_by_text(strict, tokens[PARENT])
    for body in (
        _apq(MY_CHILDREN_HASH),
        {"documentId": f"sha256:{MY_CHILDREN_HASH}"},
        {"query": MY_CHILDREN},  # its exact text
        _apq(MY_CHILDREN_HASH, MY_CHILDREN),
    ):
        response = await _post(strict, body, cookie)
        assert response.status_code == 200, (body, response.text)
        assert response.json() == {"data": {"myChildren": expected}}


async def test_a_cookie_session_may_not_run_other_documents(
    strict_app: Starlette,
    strict: httpx.AsyncClient,
    cookie: dict[str, str],
    tokens: dict[str, str],
) -> None:
    refusal = {
        "errors": [
            {
                "message": MESSAGES[ErrorCode.DOCUMENT_NOT_REGISTERED],
                "extensions": {"code": "DOCUMENT_NOT_REGISTERED"},
            }
        ]
    }
    assert "Authorization: Bearer" in refusal["errors"][0]["message"]  # what GraphiQL needs
    # Remembered at run time by a bearer client: not a registered document.
    remembered = _fresh_query()
    bearer = _bearer(tokens[PARENT])
    assert (await _post(strict, _apq(sha256_hex(remembered), remembered), bearer)).is_success
    prepare = _endpoint(strict_app).documents.prepare
    unregistered = _fresh_query()
    for body in (
        {"query": "{ viewer { role } }"},
        {"query": MY_CHILDREN + " "},  # not the registered bytes
        {"query": "{ this does not parse"},
        _apq(sha256_hex(remembered)),
        _apq(sha256_hex(unregistered), unregistered),
    ):
        misses = prepare.misses + prepare.hits
        response = await _post(strict, body, cookie)
        assert (response.status_code, response.json()) == (403, refusal), body
        assert prepare.misses + prepare.hits == misses  # refused before any parsing
    # The refused registration kept nothing.
    assert (await _post(strict, _apq(sha256_hex(unregistered)), bearer)).json() == NOT_FOUND_BODY
    # An unknown hash is still the protocol's answer (after the cookie's CSRF check).
    unknown = await _post(strict, _apq(sha256_hex(_fresh_query())), cookie)
    assert (unknown.status_code, unknown.json()) == (200, NOT_FOUND_BODY)


async def test_bearer_and_anonymous_requests_run_free_queries(
    strict: httpx.AsyncClient, cookie: dict[str, str], tokens: dict[str, str]
) -> None:
    query = "{ viewer { role } }"
    assert (await _post(strict, {"query": query}, cookie)).status_code == 403
    bearer = await _post(strict, {"query": query}, _bearer(tokens[PARENT]))
    assert bearer.json() == {"data": {"viewer": {"role": "PARENT"}}}
    # GraphiQL signed in by the cookie: a pasted bearer token wins and runs anything.
    both = {**cookie, "Authorization": f"Bearer {tokens['student-young']}"}
    assert (await _post(strict, {"query": query}, both)).json() == {
        "data": {"viewer": {"role": "STUDENT"}}
    }
    anonymous = await _post(strict, {"query": "{ __typename }"})
    assert anonymous.json() == {"data": {"__typename": "Query"}}
    page = await strict.get("/graphql", headers={"Accept": "text/html"})
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]


async def test_the_mode_off_lets_a_cookie_run_free_queries(
    client: httpx.AsyncClient, cookie: dict[str, str]
) -> None:
    response = await _post(client, {"query": "{ viewer { role } }"}, cookie)
    assert response.json() == {"data": {"viewer": {"role": "PARENT"}}}
    by_hash = await _post(client, _apq(MY_CHILDREN_HASH), cookie)
    assert len(by_hash.json()["data"]["myChildren"]) == 2

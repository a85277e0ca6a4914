"""GraphQL over HTTP: methods, media types, status codes, GraphiQL, masking, request log."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx
import pytest
from starlette.applications import Starlette

from fixtures.demo import DEMO_ACCOUNTS
from gateway.app import create_app
from gateway.core.db import create_pool
from gateway.core.db_roles import with_credentials
from gateway.core.settings import Settings
from gateway.http.protocol import GRAPHQL_RESPONSE_JSON, JSON, negotiate

VIEWER = "{ viewer { role displayName } }"
CHILDREN = "query MyChildren { myChildren { id fullName } }"
GQL_HEADERS = {"Accept": GRAPHQL_RESPONSE_JSON}
JSON_HEADERS = {"Accept": JSON}

AppClient = Callable[..., Any]


@asynccontextmanager
async def client_for(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as client:
        yield client


def _auth(tokens: dict[str, str], account: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens[account]}"}


def _codes(response: httpx.Response) -> list[str]:
    return [error["extensions"]["code"] for error in response.json()["errors"]]


def _media_type(response: httpx.Response) -> str:
    return response.headers["content-type"].split(";")[0]


# --- methods and success ------------------------------------------------------------


async def test_post_query_as_a_parent(client: httpx.AsyncClient, tokens: dict[str, str]) -> None:
    response = await client.post(
        "/graphql", json={"query": VIEWER}, headers=_auth(tokens, "parent-one-school")
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    assert response.json() == {
        "data": {"viewer": {"role": "PARENT", "displayName": "Смирнова Елена Викторовна"}}
    }


async def test_get_query_with_variables_and_operation_name(
    client: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    children = await client.post(
        "/graphql", json={"query": CHILDREN}, headers=_auth(tokens, "parent-two-schools")
    )
    child_id = children.json()["data"]["myChildren"][0]["id"]
    document = "query One($id: ID!) { student(id: $id) { id } } query Two { viewer { role } }"
    response = await client.get(
        "/graphql",
        params={"query": document, "variables": f'{{"id": "{child_id}"}}', "operationName": "One"},
        headers={**GQL_HEADERS, **_auth(tokens, "parent-two-schools")},
    )
    assert response.status_code == 200
    assert _media_type(response) == GRAPHQL_RESPONSE_JSON
    assert response.json() == {"data": {"student": {"id": child_id}}}


@pytest.mark.parametrize("accept", [JSON, GRAPHQL_RESPONSE_JSON])
async def test_mutation_via_get_is_405(client: httpx.AsyncClient, accept: str) -> None:
    response = await client.get(
        "/graphql", params={"query": "mutation { __typename }"}, headers={"Accept": accept}
    )
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert _codes(response) == ["METHOD_NOT_ALLOWED"]


async def test_mutation_via_post_fails_validation(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/graphql", json={"query": "mutation { __typename }"}, headers=GQL_HEADERS
    )
    assert response.status_code == 400
    assert _codes(response) == ["GRAPHQL_VALIDATION_FAILED"]


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE", "OPTIONS"])
async def test_other_methods_are_405(client: httpx.AsyncClient, method: str) -> None:
    response = await client.request(method, "/graphql")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, POST"
    assert _codes(response) == ["METHOD_NOT_ALLOWED"]


async def test_healthz(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


# --- media types ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, JSON),
        ("", JSON),
        ("*/*", JSON),
        ("application/*", JSON),
        (JSON, JSON),
        (GRAPHQL_RESPONSE_JSON, GRAPHQL_RESPONSE_JSON),
        (f"{GRAPHQL_RESPONSE_JSON}; charset=utf-8, {JSON}; charset=utf-8", GRAPHQL_RESPONSE_JSON),
        (f"{JSON}, {GRAPHQL_RESPONSE_JSON}", GRAPHQL_RESPONSE_JSON),
        (f"*/*, {GRAPHQL_RESPONSE_JSON}", GRAPHQL_RESPONSE_JSON),
        (f"{JSON}, {GRAPHQL_RESPONSE_JSON};q=0.5", JSON),
        (f"{GRAPHQL_RESPONSE_JSON};q=0, */*", JSON),
        ("text/html, */*;q=0.8", JSON),
        ("text/plain", None),
        (f"{JSON};q=0", None),
        ("application/xml, text/*", None),
    ],
)
def test_negotiation(accept: str | None, expected: str | None) -> None:
    assert negotiate(accept) == expected


async def test_not_acceptable_is_406(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/graphql", json={"query": VIEWER}, headers={"Accept": "application/xml"}
    )
    assert response.status_code == 406
    assert _codes(response) == ["NOT_ACCEPTABLE"]


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin-1"],
)
async def test_unsupported_content_type_is_415(
    client: httpx.AsyncClient, content_type: str | None
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    response = await client.post(
        "/graphql", content=b'{"query": "{ __typename }"}', headers=headers
    )
    assert response.status_code == 415
    assert _codes(response) == ["UNSUPPORTED_MEDIA_TYPE"]


async def test_json_with_utf8_charset_is_accepted(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/graphql",
        content=b'{"query": "{ __typename }"}',
        headers={"Content-Type": "application/json; charset=UTF-8"},
    )
    assert response.status_code == 200
    assert response.json() == {"data": {"__typename": "Query"}}


# --- status codes by media type ----------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "label"),
    [
        (b"NONSENSE", "not JSON"),
        (b'{"query":', "truncated JSON"),
        (b'["{ __typename }"]', "not an object"),
        (b'{"qeury": "{ __typename }"}', "no query"),
        (b'{"query": 7}', "query not a string"),
        (b'{"query": {"a": 1}}', "query an object"),
        (b'{"query": "{ __typename }", "variables": [7]}', "variables a list"),
        (b'{"query": "{ __typename }", "variables": "{}"}', "variables a string"),
        (b'{"query": "{ __typename }", "operationName": 7}', "operationName a number"),
        (b'{"query": "{ __typename }", "extensions": 1}', "extensions a number"),
    ],
)
@pytest.mark.parametrize("accept", [JSON, GRAPHQL_RESPONSE_JSON])
async def test_malformed_requests_are_400(
    client: httpx.AsyncClient, body: bytes, label: str, accept: str
) -> None:
    response = await client.post(
        "/graphql", content=body, headers={"Content-Type": JSON, "Accept": accept}
    )
    assert response.status_code == 400, label
    assert _media_type(response) == accept
    assert "data" not in response.json()
    assert _codes(response) == ["BAD_REQUEST"]


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"query": "{ __typename }", "variables": "{not json"},
        {"query": "{ __typename }", "variables": "[1]"},
        {"query": "{ __typename }", "extensions": "7"},
    ],
)
async def test_malformed_get_requests_are_400(
    client: httpx.AsyncClient, params: dict[str, str]
) -> None:
    response = await client.get("/graphql", params=params, headers=JSON_HEADERS)
    assert response.status_code == 400
    assert _codes(response) == ["BAD_REQUEST"]


async def test_body_too_large_is_413(client: httpx.AsyncClient) -> None:
    filler = "x" * (1 << 20)
    response = await client.post(
        "/graphql", json={"query": "{ __typename }", "extensions": {"filler": filler}}
    )
    assert response.status_code == 413
    assert _codes(response) == ["PAYLOAD_TOO_LARGE"]


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("{", "GRAPHQL_PARSE_FAILED"),
        ("{ nope }", "GRAPHQL_VALIDATION_FAILED"),
        ("query A { viewer { role } } query B { viewer { role } }", "GRAPHQL_VALIDATION_FAILED"),
        ("fragment F on Query { __typename }", "GRAPHQL_VALIDATION_FAILED"),
    ],
)
async def test_failures_before_execution(client: httpx.AsyncClient, query: str, code: str) -> None:
    strict = await client.post("/graphql", json={"query": query}, headers=GQL_HEADERS)
    assert strict.status_code == 400
    assert "data" not in strict.json()
    assert _codes(strict) == [code]
    legacy = await client.post("/graphql", json={"query": query}, headers=JSON_HEADERS)
    assert legacy.status_code == 200
    assert "data" not in legacy.json()
    assert _codes(legacy) == [code]


async def test_unknown_operation_name(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/graphql",
        json={"query": "query A { __typename }", "operationName": "B"},
        headers=GQL_HEADERS,
    )
    assert response.status_code == 400
    assert _codes(response) == ["GRAPHQL_VALIDATION_FAILED"]
    error = response.json()["errors"][0]
    assert (
        error["message"]
        == "Запрос не соответствует схеме. В документе нет операции с указанным именем."
    )
    assert error["extensions"]["detail"] == "Unknown operation named 'B'."


async def test_several_operations_without_a_name(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/graphql",
        json={"query": "query A { __typename } query B { __typename }"},
        headers=GQL_HEADERS,
    )
    assert response.status_code == 400
    error = response.json()["errors"][0]
    assert error["message"] == (
        "Запрос не соответствует схеме. Документ содержит несколько операций: укажите имя нужной."
    )
    assert error["extensions"] == {
        "code": "GRAPHQL_VALIDATION_FAILED",
        "detail": "Must provide operation name if query contains multiple operations.",
    }


async def test_variable_coercion_failure(client: httpx.AsyncClient, tokens: dict[str, str]) -> None:
    body = {"query": "query($id: ID!) { student(id: $id) { id } }", "variables": {"id": None}}
    headers = _auth(tokens, "parent-one-school")
    strict = await client.post("/graphql", json=body, headers={**GQL_HEADERS, **headers})
    assert strict.status_code == 400
    assert "data" not in strict.json()
    assert _codes(strict) == ["BAD_USER_INPUT"]
    legacy = await client.post("/graphql", json=body, headers={**JSON_HEADERS, **headers})
    assert legacy.status_code == 200
    assert _codes(legacy) == ["BAD_USER_INPUT"]


@pytest.mark.parametrize("accept", [JSON, GRAPHQL_RESPONSE_JSON])
async def test_field_errors_are_200_with_data(client: httpx.AsyncClient, accept: str) -> None:
    response = await client.post(
        "/graphql", json={"query": "{ __typename viewer { role } }"}, headers={"Accept": accept}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["data"] == {"__typename": "Query", "viewer": None}
    assert _codes(response) == ["UNAUTHENTICATED"]


async def test_documents_are_parsed_once(app: Starlette, client: httpx.AsyncClient) -> None:
    cache = app.state.graphql_endpoint.documents.prepare
    query = "query CacheProbe { __typename }"
    before = cache.cache_info()
    for _ in range(3):
        response = await client.post("/graphql", json={"query": query})
        assert response.json() == {"data": {"__typename": "Query"}}
    after = cache.cache_info()
    assert after.misses == before.misses + 1
    assert after.hits == before.hits + 2


# --- GraphiQL and introspection ---------------------------------------------------------


async def test_graphiql_page_when_enabled(client: httpx.AsyncClient) -> None:
    response = await client.get("/graphql", headers={"Accept": "text/html,*/*;q=0.8"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "graphiql" in response.text.lower()


async def test_no_graphiql_when_disabled(settings: Settings, pool: asyncpg.Pool) -> None:
    app = create_app(dataclasses.replace(settings, graphiql=False), pool=pool)
    async with client_for(app) as client:
        response = await client.get("/graphql", headers={"Accept": "text/html,*/*;q=0.8"})
        assert response.status_code == 400
        assert _media_type(response) == JSON
        assert "graphiql" not in response.text.lower()


INTROSPECTION = "{ __schema { queryType { name } } }"


async def test_introspection_on_by_default(client: httpx.AsyncClient) -> None:
    response = await client.post("/graphql", json={"query": INTROSPECTION})
    assert response.json() == {"data": {"__schema": {"queryType": {"name": "Query"}}}}


async def test_introspection_can_be_switched_off(settings: Settings, pool: asyncpg.Pool) -> None:
    app = create_app(dataclasses.replace(settings, introspection=False), pool=pool)
    async with client_for(app) as client:
        response = await client.post("/graphql", json={"query": INTROSPECTION}, headers=GQL_HEADERS)
        assert response.status_code == 400
        assert "GRAPHQL_VALIDATION_FAILED" in _codes(response)
        typename = await client.post("/graphql", json={"query": "{ __typename }"})
        assert typename.json() == {"data": {"__typename": "Query"}}
        # No schema hints either: "Did you mean" would leak field names.
        typo = await client.post("/graphql", json={"query": "{ myChildrn { id } }"})
        assert "Did you mean" not in typo.text


# --- masking, timeouts, logs ----------------------------------------------------------


LIMITED_ROLE = "school_gateway_test_limited"
LIMITED_PASSWORD = "limited-role-password"
MARKS_QUERY = "query Marks { myChildren { id diary { marks { value } } } }"


@pytest.fixture
async def limited_role(owner_conn: asyncpg.Connection) -> AsyncIterator[str]:
    """A login role that may resolve viewers but was never granted the marks view."""
    await owner_conn.execute(f"DROP ROLE IF EXISTS {LIMITED_ROLE}")
    await owner_conn.execute(f"CREATE ROLE {LIMITED_ROLE} LOGIN PASSWORD '{LIMITED_PASSWORD}'")
    await owner_conn.execute(f"GRANT USAGE ON SCHEMA gateway, diary_api TO {LIMITED_ROLE}")
    await owner_conn.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA gateway TO {LIMITED_ROLE}")
    await owner_conn.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA diary_api TO {LIMITED_ROLE}")
    await owner_conn.execute(f"REVOKE SELECT ON diary_api.mark_facts FROM {LIMITED_ROLE}")
    try:
        yield LIMITED_ROLE
    finally:
        await owner_conn.execute(f"DROP OWNED BY {LIMITED_ROLE}")
        await owner_conn.execute(f"DROP ROLE {LIMITED_ROLE}")


async def test_unexpected_error_is_masked_and_logged(
    settings: Settings,
    database_url: str,
    tokens: dict[str, str],
    limited_role: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    limited = dataclasses.replace(settings, gateway_role=limited_role, pool_min_size=1)
    # The gateway logs in as its role (no SET ROLE): the limited role logs in itself.
    pool = await create_pool(
        with_credentials(database_url, limited_role, LIMITED_PASSWORD), limited
    )
    try:
        async with client_for(create_app(limited, pool=pool)) as client:
            with caplog.at_level(logging.ERROR, logger="gateway"):
                response = await client.post(
                    "/graphql",
                    json={"query": MARKS_QUERY},
                    headers={**GQL_HEADERS, **_auth(tokens, "parent-one-school")},
                )
    finally:
        await pool.close()
    assert response.status_code == 200
    body = response.json()
    assert {error["extensions"]["code"] for error in body["errors"]} == {"INTERNAL_SERVER_ERROR"}
    assert body["errors"][0]["message"] == "Внутренняя ошибка сервера."
    assert body["errors"][0]["path"][0] == "myChildren"
    for leak in ("Traceback", "permission denied", "diary_api", "asyncpg", "SELECT"):
        assert leak not in response.text
    logged = [r for r in caplog.records if r.name == "gateway.http.endpoint" and r.exc_info]
    assert logged, "the unexpected error must be logged with its traceback"
    assert "InsufficientPrivilege" in caplog.text


async def test_statement_timeout_is_reported_as_timeout(
    settings: Settings,
    database_url: str,
    tokens: dict[str, str],
    owner_conn: asyncpg.Connection,
) -> None:
    quick = dataclasses.replace(settings, statement_timeout_ms=200, pool_min_size=1)
    pool = await create_pool(database_url, quick)
    try:
        async with (
            client_for(create_app(quick, pool=pool)) as client,
            owner_conn.transaction(),
        ):
            # Holding this lock makes the marks statement wait past its timeout.
            await owner_conn.execute("LOCK TABLE school.marks IN ACCESS EXCLUSIVE MODE")
            response = await client.post(
                "/graphql",
                json={"query": MARKS_QUERY},
                headers=_auth(tokens, "parent-one-school"),
            )
    finally:
        await pool.close()
    assert response.status_code == 200
    body = response.json()
    assert {error["extensions"]["code"] for error in body["errors"]} == {"TIMEOUT"}
    assert "Traceback" not in response.text


async def test_request_log_lines_hold_no_personal_data(
    client: httpx.AsyncClient, tokens: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    account = next(a for a in DEMO_ACCOUNTS if a.key == "parent-two-schools")
    query = "query MyChildren($from: Date) { myChildren { fullName diary(from: $from) { from } } }"
    with caplog.at_level(logging.DEBUG):
        post = await client.post(
            "/graphql",
            json={"query": query, "variables": {"from": "2026-11-23"}},
            headers=_auth(tokens, account.key),
        )
        get = await client.get(
            "/graphql",
            params={
                "query": query,
                "variables": f'{{"from": "2026-11-23", "x": "{account.snils}"}}',
            },
            headers=_auth(tokens, account.key),
        )
        await client.post("/graphql", json={"query": VIEWER}, headers={"Authorization": "Bearer x"})
    assert post.status_code == 200 and get.status_code == 200
    access = [r.getMessage() for r in caplog.records if r.name == "gateway.access"]
    assert "POST /graphql 200" in access[0] and access[0].endswith("op=MyChildren")
    assert access[1].startswith("GET /graphql 200 ") and "2026-11-23" not in access[1]
    assert access[2].startswith("POST /graphql 401 ")
    personal = [tokens[account.key], "2026-11-23"]
    for demo in DEMO_ACCOUNTS:
        personal += [value for value in (demo.snils, demo.phone, demo.login) if value]
        for child in demo.children:
            personal += [value for value in (child.snils, child.phone) if value]
    server_side = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    assert server_side
    for record in server_side:
        line = record.getMessage()
        for value in personal:
            assert value not in line, line


async def test_failure_outside_graphql_is_a_masked_json_500(
    settings: Settings,
    database_url: str,
    tokens: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    pool = await create_pool(database_url, dataclasses.replace(settings, pool_min_size=1))
    await pool.close()  # the database "goes away" before the request
    async with client_for(create_app(settings, pool=pool)) as client:
        with caplog.at_level(logging.ERROR, logger="gateway"):
            response = await client.post(
                "/graphql", json={"query": VIEWER}, headers=_auth(tokens, "parent-one-school")
            )
        health = await client.get("/healthz")
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    assert response.json() == {
        "errors": [
            {
                "message": "Внутренняя ошибка сервера.",
                "extensions": {"code": "INTERNAL_SERVER_ERROR"},
            }
        ]
    }
    assert any(record.exc_info for record in caplog.records if record.name == "gateway.app")
    assert health.status_code == 503
    assert health.json() == {"status": "unavailable"}

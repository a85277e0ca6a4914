"""Bad input gets a clear error with a stable code, never a 500 or a traceback."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from gateway.app import create_app
from gateway.core.settings import Settings
from gateway.http.protocol import GRAPHQL_RESPONSE_JSON
from tests.support.environment import GraphQL

PARENT = "parent-one-school"
GQL_HEADERS = {"Accept": GRAPHQL_RESPONSE_JSON}


def _codes(payload: dict[str, Any]) -> list[str]:
    return [error["extensions"]["code"] for error in payload["errors"]]


def _assert_clean(payload: dict[str, Any]) -> None:
    """Every error has a code and a message; no traceback or internals leak."""
    text = str(payload)
    for leak in ("Traceback", 'File "', "asyncpg", "INTERNAL_SERVER_ERROR"):
        assert leak not in text, text
    for error in payload["errors"]:
        assert error["message"]
        assert error["extensions"]["code"]


def _assert_russian_with_english_detail(payload: dict[str, Any], message: str) -> None:
    """The user reads one Russian sentence; the developer's English detail is apart."""
    for error in payload["errors"]:
        assert error["message"] == message
        detail = error["extensions"]["detail"]
        assert detail and detail.isascii() and not re.search("[а-яА-Я]", detail), detail


async def _first_child_id(gql: GraphQL) -> str:
    payload = await gql("{ myChildren { id } }", account=PARENT)
    child_id: str = payload["data"]["myChildren"][0]["id"]
    return child_id


# --- the document -------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    ["{", "{ myChildren { id }", "query ( { x }", "{ myChildren(: 1) { id } }", "}{", ""],
)
async def test_malformed_graphql(gql: GraphQL, query: str) -> None:
    payload = await gql(query, account=PARENT)
    assert _codes(payload) == ["GRAPHQL_PARSE_FAILED"]
    _assert_russian_with_english_detail(payload, "Синтаксическая ошибка в запросе GraphQL.")
    assert payload["errors"][0]["extensions"]["detail"].startswith("Syntax Error: ")
    assert "data" not in payload
    _assert_clean(payload)


@pytest.mark.parametrize(
    ("query", "mentions"),
    [
        ("{ myChildren { id shoeSize } }", "shoeSize"),
        ("{ unknownRoot }", "unknownRoot"),
        ('{ myChildren { diary(fromDate: "2026-11-23") { from } } }', "fromDate"),
        ("{ myChildren }", "myChildren"),
        ("{ viewer { role { name } } }", "role"),
        ("{ student { id } }", "id"),
        ("query($x: Date) { viewer { role } }", "$x"),
        ("{ myChildren { ...Missing } }", "Missing"),
    ],
)
async def test_validation_failures(gql: GraphQL, query: str, mentions: str) -> None:
    payload = await gql(query, account=PARENT)
    assert set(_codes(payload)) == {"GRAPHQL_VALIDATION_FAILED"}
    _assert_russian_with_english_detail(payload, "Запрос не соответствует схеме.")
    assert mentions in payload["errors"][0]["extensions"]["detail"]
    assert "data" not in payload
    _assert_clean(payload)


async def test_wrong_variable_type_in_the_document(gql: GraphQL) -> None:
    query = "query($from: Int) { myChildren { diary(from: $from) { from } } }"
    payload = await gql(query, {"from": 5}, account=PARENT)
    assert _codes(payload) == ["GRAPHQL_VALIDATION_FAILED"]
    _assert_russian_with_english_detail(payload, "Запрос не соответствует схеме.")
    assert "$from" in payload["errors"][0]["extensions"]["detail"]


@pytest.mark.parametrize(
    "value",
    [
        5,
        "yesterday",
        "2026-13-01",
        "2026-02-30",
        "20261123",
        "2026-W48-1",
        "2026-11-23T00:00",
        {"y": 2026},
        ["2026-11-23"],
        True,
    ],
)
async def test_wrong_variable_values(gql: GraphQL, value: object) -> None:
    query = "query($from: Date) { myChildren { diary(from: $from) { from } } }"
    payload = await gql(query, {"from": value}, account=PARENT)
    assert _codes(payload) == ["BAD_USER_INPUT"]
    _assert_russian_with_english_detail(payload, "Некорректные входные данные.")
    assert "$from" in payload["errors"][0]["extensions"]["detail"]
    assert "data" not in payload
    _assert_clean(payload)


@pytest.mark.parametrize("method", ["POST", "GET"])
@pytest.mark.parametrize("nested", ["[" * 900 + "]" * 900, '{"a":' * 900 + "1" + "}" * 900])
async def test_deeply_nested_variables_are_refused(
    client: httpx.AsyncClient, tokens: dict[str, str], method: str, nested: str
) -> None:
    """JSON nested hundreds of levels (orjson parses up to 1,024) is a 400, not a 500 from
    recursion in coercion or in the response cache's key, for a family (cached) viewer."""
    query = "query($from: Date) { myChildren { diary(from: $from) { from } } }"
    variables = '{"from": ' + nested + "}"
    headers = {**GQL_HEADERS, "Authorization": f"Bearer {tokens[PARENT]}"}
    if method == "GET":
        params = {"query": query, "variables": variables}
        response = await client.get("/graphql", params=params, headers=headers)
    else:
        body = '{"query": ' + orjson.dumps(query).decode() + ', "variables": ' + variables + "}"
        headers["Content-Type"] = "application/json"
        response = await client.post("/graphql", content=body, headers=headers)
    assert response.status_code == 400, response.text
    payload = response.json()
    assert _codes(payload) == ["BAD_REQUEST"]
    assert "variables" in payload["errors"][0]["message"]
    _assert_clean(payload)


async def test_moderately_nested_variables_still_coerce(gql: GraphQL) -> None:
    """The depth limit leaves room for every input of the schema (a list inside an object)."""
    query = "query($from: Date) { myChildren { diary(from: $from) { from } } }"
    payload = await gql(query, {"from": "2026-11-23", "unused": [[[{"a": [1]}]]]}, account=PARENT)
    assert "errors" not in payload, payload
    assert payload["data"]["myChildren"][0]["diary"]["from"] == "2026-11-23"


async def test_missing_required_variable(gql: GraphQL) -> None:
    payload = await gql("query($id: ID!) { student(id: $id) { id } }", {}, account=PARENT)
    assert _codes(payload) == ["BAD_USER_INPUT"]
    _assert_russian_with_english_detail(payload, "Некорректные входные данные.")
    assert "$id" in payload["errors"][0]["extensions"]["detail"]


async def test_bad_literal_date(gql: GraphQL) -> None:
    payload = await gql('{ myChildren { diary(from: "27.11.2026") { from } } }', account=PARENT)
    assert _codes(payload) == ["GRAPHQL_VALIDATION_FAILED"]
    _assert_russian_with_english_detail(payload, "Запрос не соответствует схеме.")
    assert "Date" in payload["errors"][0]["extensions"]["detail"]


# --- arguments ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variables", "code"),
    [
        ({"from": "2026-11-27", "to": "2026-11-20"}, "DATE_RANGE_REVERSED"),
        ({"from": "2026-09-01", "to": "2026-11-27"}, "DATE_RANGE_TOO_LONG"),
        ({"from": "1900-01-01", "to": "1900-01-07"}, "DATE_OUT_OF_RANGE"),
        ({"from": "2999-01-01", "to": None}, "DATE_OUT_OF_RANGE"),
        ({"from": None, "to": "0001-01-01"}, "DATE_OUT_OF_RANGE"),
    ],
)
async def test_bad_diary_ranges(gql: GraphQL, variables: dict[str, Any], code: str) -> None:
    query = "query($from: Date, $to: Date) { myChildren { diary(from: $from, to: $to) { from } } }"
    payload = await gql(query, variables, account=PARENT)
    assert set(_codes(payload)) == {code}
    assert payload["data"] is None or all(
        child is None for child in payload["data"]["myChildren"] or []
    )
    _assert_clean(payload)


async def test_too_long_range_names_the_limit(gql: GraphQL, settings: Settings) -> None:
    query = '{ myChildren { diary(from: "2026-09-01", to: "2026-11-27") { from } } }'
    payload = await gql(query, account=PARENT)
    error = payload["errors"][0]
    assert error["extensions"] == {
        "code": "DATE_RANGE_TOO_LONG",
        "maxDays": settings.max_diary_days,
    }
    assert str(settings.max_diary_days) in error["message"]


@pytest.mark.parametrize("first", [0, -1, 501, 2_000_000_000])
async def test_list_bounds(gql: GraphQL, first: int) -> None:
    query = "query($first: Int!) { myChildren { marks(first: $first) { value } } }"
    payload = await gql(query, {"first": first}, account=PARENT)
    assert set(_codes(payload)) == {"LIMIT_OUT_OF_RANGE"}
    _assert_clean(payload)


async def test_int_overflow_is_bad_input(gql: GraphQL) -> None:
    query = "query($first: Int!) { myChildren { marks(first: $first) { value } } }"
    payload = await gql(query, {"first": 2**40}, account=PARENT)
    assert _codes(payload) == ["BAD_USER_INPUT"]


@pytest.mark.parametrize("student_id", ["abc", "-5", "0", "1.5", "99999999999999999999", ""])
async def test_malformed_ids(gql: GraphQL, student_id: str) -> None:
    payload = await gql(
        "query($id: ID!) { student(id: $id) { id } }", {"id": student_id}, account=PARENT
    )
    assert _codes(payload) == ["BAD_USER_INPUT"]
    assert payload["data"] == {"student": None}


async def test_ids_that_do_not_exist(gql: GraphQL, owner_conn: asyncpg.Connection) -> None:
    missing = await owner_conn.fetchval("SELECT max(id) + 1000 FROM school.students")
    payload = await gql(
        "query($id: ID!) { student(id: $id) { id } }", {"id": str(missing)}, account=PARENT
    )
    # Outside the scope whether or not it exists: the answer never tells which ids are real.
    assert _codes(payload) == ["FORBIDDEN"]
    assert payload["data"] == {"student": None}


async def test_unknown_period_id(gql: GraphQL) -> None:
    query = "query($p: ID) { myChildren { averages(periodId: $p) { weightSum } } }"
    payload = await gql(query, {"p": "2147483000"}, account=PARENT)
    assert set(_codes(payload)) == {"NOT_FOUND"}
    _assert_clean(payload)


# --- limits ------------------------------------------------------------------------------


@pytest.fixture
async def tight_client(settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[httpx.AsyncClient]:
    tight = dataclasses.replace(settings, max_query_depth=3, max_aliases=2, max_tokens=60)
    transport = httpx.ASGITransport(app=create_app(tight, pool=pool))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        yield client


async def _post(client: httpx.AsyncClient, query: str) -> httpx.Response:
    return await client.post("/graphql", json={"query": query}, headers=GQL_HEADERS)


async def test_depth_limit(tight_client: httpx.AsyncClient) -> None:
    ok = await _post(tight_client, "{ myChildren { school { name } } }")
    assert ok.status_code == 200  # depth 3
    for query in (
        "{ myChildren { diary { lessons { id } } } }",
        "{ myChildren { ...C } } fragment C on Student { diary { days { date } } }",
        "{ myChildren { ... on Student { schoolClass { id } diary { marks { id } } } } }",
    ):
        response = await _post(tight_client, query)
        assert response.status_code == 400, query
        assert response.json()["errors"][0]["extensions"] == {
            "code": "QUERY_TOO_DEEP",
            "maxDepth": 3,
        }
        assert "data" not in response.json()


async def test_introspection_is_not_counted_as_depth(tight_client: httpx.AsyncClient) -> None:
    response = await _post(tight_client, "{ __schema { types { fields { type { name } } } } }")
    assert response.status_code == 200


async def test_alias_limit(tight_client: httpx.AsyncClient) -> None:
    ok = await _post(tight_client, "{ a: viewer { role } b: viewer { role } }")
    assert ok.status_code == 200
    response = await _post(tight_client, "{ a: viewer { role } b: viewer { role } c: __typename }")
    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"] == {
        "code": "TOO_MANY_ALIASES",
        "maxAliases": 2,
    }


async def test_aliases_in_fragments_count(tight_client: httpx.AsyncClient) -> None:
    query = "{ ...F } fragment F on Query { a: viewer { role } b: viewer { role } c: __typename }"
    response = await _post(tight_client, query)
    assert [e["extensions"]["code"] for e in response.json()["errors"]] == ["TOO_MANY_ALIASES"]


async def test_token_limit(tight_client: httpx.AsyncClient) -> None:
    response = await _post(tight_client, "{ " + "__typename " * 80 + "}")
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert [e["extensions"]["code"] for e in errors] == ["TOO_MANY_TOKENS"]
    assert "60" in errors[0]["message"]
    comments = await _post(tight_client, "{ __typename }\n" + "# comment\n" * 100)
    assert [e["extensions"]["code"] for e in comments.json()["errors"]] == ["TOO_MANY_TOKENS"]


async def test_default_limits(gql: GraphQL, settings: Settings) -> None:
    aliases = " ".join(f"a{i}: __typename" for i in range(settings.max_aliases + 1))
    payload = await gql("{ " + aliases + " }", account=PARENT)
    assert _codes(payload) == ["TOO_MANY_ALIASES"]
    tokens = "{ " + "__typename " * (settings.max_tokens + 1) + "}"
    payload = await gql(tokens, account=PARENT)
    assert _codes(payload) == ["TOO_MANY_TOKENS"]
    huge = "{ __typename }" + " " * (settings.max_tokens * 100)
    payload = await gql(huge, account=PARENT)
    assert _codes(payload) == ["TOO_MANY_TOKENS"]

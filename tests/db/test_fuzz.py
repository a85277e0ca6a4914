"""Property-based fuzzing through the real app: whatever the request, no 5xx, a well-formed
response and nobody else's student (issue 9, "tests that keep it so").

Requests are generated from the gateway's own schema for each kind of account (anonymous,
two parents, a young student, a school admin, a regional analyst): valid documents with
generated arguments, documents with one schema violation (hypothesis-graphql), and
documents whose every argument is a variable that gets hostile values (wrong types, huge
strings, deep nesting, nulls) or whose envelope is hostile. The property, for every
response:

- the status is below 500 (so never 503 while the database is up);
- the body is a JSON object with `data` and/or `errors`, every error has a non-empty
  `message` and a string `extensions.code`, and none is INTERNAL_SERVER_ERROR;
- no foreign data: every Student object's id and full name belong to the viewer's scope,
  every UnlinkedStudent is one of the admin's school's students without parents, and no
  string anywhere is the full name of a student outside the scope (scopes and names are
  read from the database by the owner, not through the gateway).

Hypothesis generates the requests once per kind (deterministic: `derandomize=True`, no
example database; bounded: EXAMPLES per kind) and each account sends all of them (the
same document as different viewers probes authorization too). Every violation is
collected, so a failure lists the offending requests with their responses. The run
prints the outcomes it saw and the seconds it spent.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import date
from typing import Final, TypeVar

import asyncpg
import graphql
import httpx
import pytest
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis_graphql import Mode

from gateway.app import create_app
from gateway.core.settings import Settings
from gateway.execution.schema import export_sdl
from tests.support.fuzz_support import (
    ANONYMOUS,
    FAMILY_ROLES,
    ROLES,
    FuzzRequest,
    Scope,
    World,
    argument_sites,
    check_response,
    document_requests,
    documents,
    hostile_requests,
    identifying_keys,
    load_world,
)

EXAMPLES: Final = {"valid": 200, "invalid": 60, "hostile": 100}
# Generation only: no shrinking (a failure is reported with the whole request as it was
# generated) and no example database (every run draws the same requests).
FUZZ: Final = hypothesis_settings(
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=False,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
        HealthCheck.filter_too_much,
    ],
)
SCHEMA: Final = graphql.build_schema(export_sdl())
SITES: Final = argument_sites(SCHEMA)
# Requests per kind, statuses and error codes seen, seconds spent: printed at the end.
SEEN: Counter[str] = Counter()
SPENT: dict[str, float] = {}

T = TypeVar("T")


@pytest.fixture(scope="module")
async def fuzz_client(settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a separate app, so the fuzzing neither exhausts nor fills the shared
    app's analytics rate limit and caches (the same code and database)."""
    unlimited = dataclasses.replace(
        settings, analytics=dataclasses.replace(settings.analytics, rate_limit=100_000)
    )
    app = create_app(unlimited, pool=pool)
    # As a real server: an exception escaping the app is a 500 response, not raised here.
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as c:
            yield c
    finally:
        await app.state.auth.recorder.close()
        await app.state.services.close()


@pytest.fixture(scope="module")
async def world(owner_conn: asyncpg.Connection) -> World:
    return await load_world(owner_conn)


@pytest.fixture(scope="module", autouse=True)
def report() -> Iterator[None]:
    """Print what was run: requests, statuses and codes per kind, seconds per kind and role."""
    yield
    print("\nfuzz: requests and outcomes")
    for key, count in sorted(SEEN.items()):
        print(f"  {key:<60} {count:>6}")
    for key, seconds in sorted(SPENT.items()):
        print(f"  time {key:<55} {seconds:>6.1f} s")
    print(f"  time total {sum(SPENT.values()):.1f} s (generating and sending; without setup)")


def generate(kind: str, strategy: st.SearchStrategy[T], examples: int) -> list[T]:
    """`examples` values of `strategy`, the same ones on every run."""
    started = time.perf_counter()
    drawn: list[T] = []

    @hypothesis_settings(FUZZ, max_examples=examples)
    @given(strategy)
    def collect(value: T) -> None:
        drawn.append(value)

    collect()
    SPENT[f"{kind} (generating)"] = SPENT.get(f"{kind} (generating)", 0.0) + (
        time.perf_counter() - started
    )
    return drawn


async def fuzz(
    kind: str,
    requests: list[FuzzRequest],
    client: httpx.AsyncClient,
    *,
    world: World,
    scope: Scope,
    token: str | None,
) -> None:
    """Send every request as the scope's account; fail listing each one that breaks the
    property (the first few in full)."""
    started = time.perf_counter()
    foreign_names = world.foreign_names(scope)
    failures: list[str] = []
    students_seen = 0
    for request in requests:
        response = await _send(client, request, token)
        _count(kind, response)
        students_seen += response.content.count(b'"__typename":"Student"')
        keys = identifying_keys(SCHEMA, graphql.parse(request.document)) if request.document else {}
        problems = check_response(
            response.status_code,
            response.headers.get("content-type", ""),
            response.content,
            scope=scope,
            foreign_names=foreign_names,
            keys=keys,
        )
        if problems:
            failures.append(
                f"{problems}\n--- request\n{request.describe()}\n"
                f"--- response {response.status_code}\n{response.text[:2000]}"
            )
    SPENT[f"{kind} {scope.role}"] = time.perf_counter() - started
    SEEN[f"{kind}: requests"] += len(requests)
    SEEN[f"{kind}: Student objects checked, as {scope.role}"] += students_seen
    if kind == "valid" and scope.role in FAMILY_ROLES:
        assert students_seen >= 20, "the valid documents must reach the family's students"
    assert not failures, (
        f"{kind} as {scope.role}: {len(failures)} of {len(requests)} requests break the "
        "property; the first ones:\n\n" + "\n\n".join(failures[:3])
    )


async def _send(
    client: httpx.AsyncClient, request: FuzzRequest, token: str | None
) -> httpx.Response:
    headers = {"Accept": request.accept}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if request.method == "GET":
        return await client.get(f"/graphql?{request.params or ''}", headers=headers)
    headers["Content-Type"] = "application/json"
    return await client.post("/graphql", content=(request.body or "").encode(), headers=headers)


def _count(kind: str, response: httpx.Response) -> None:
    SEEN[f"{kind}: status {response.status_code}"] += 1
    try:
        payload = response.json()
    except ValueError:
        return
    errors = payload.get("errors") if isinstance(payload, dict) else None
    for error in errors if isinstance(errors, list) else []:
        code = error.get("extensions", {}).get("code") if isinstance(error, dict) else None
        SEEN[f"{kind}: code {code}"] += 1


def _token(tokens: dict[str, str], role: str) -> str | None:
    return None if role == ANONYMOUS else tokens[role]


def requests_of(kind: str, world: World, today: date) -> list[FuzzRequest]:
    """The requests of one kind, generated once and sent as every account (the same
    document as different viewers is also a probe of authorization)."""
    if kind not in GENERATED:
        strategy = {
            "valid": lambda: document_requests(
                documents(SCHEMA, world.argument_ids, today, Mode.POSITIVE), allow_get=True
            ),
            "invalid": lambda: document_requests(
                documents(SCHEMA, world.argument_ids, today, Mode.NEGATIVE), allow_get=False
            ),
            "hostile": lambda: hostile_requests(SITES),
        }[kind]()
        GENERATED[kind] = generate(kind, strategy, EXAMPLES[kind])
    return GENERATED[kind]


GENERATED: dict[str, list[FuzzRequest]] = {}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("kind", ["valid", "invalid", "hostile"])
async def test_generated_requests(
    kind: str,
    role: str,
    fuzz_client: httpx.AsyncClient,
    world: World,
    tokens: dict[str, str],
    settings: Settings,
) -> None:
    """Valid documents from the schema, documents with one schema violation, and hostile
    variables and envelopes, each kind sent as every account."""
    requests = requests_of(kind, world, settings.today())
    scope, token = world.scopes[role], _token(tokens, role)
    await fuzz(kind, requests, fuzz_client, world=world, scope=scope, token=token)


def test_the_argument_sites_pass_every_argument_as_a_variable() -> None:
    """Every argument of every field reachable from Query is a variable in some site, and
    every site is a valid document. (The Subscription root runs over SSE and WebSocket
    only; its arguments' bad values are tested in tests/e2e/test_subscriptions_*.py.)"""
    expected = {
        f"{type_.name}.{name}.{argument}"
        for type_ in SCHEMA.type_map.values()
        if isinstance(type_, graphql.GraphQLObjectType)
        and not type_.name.startswith("__")
        and type_ is not SCHEMA.subscription_type
        for name, field in type_.fields.items()
        for argument in field.args
    }
    covered: set[str] = set()
    for site in SITES:
        document = graphql.parse(site.text)
        assert not graphql.validate(SCHEMA, document), site.text
        covered |= _arguments_passed(document)
    assert len(expected) >= 15
    assert expected <= covered, expected - covered


def _arguments_passed(document: graphql.DocumentNode) -> set[str]:
    type_info = graphql.TypeInfo(SCHEMA)
    passed: set[str] = set()

    class Arguments(graphql.Visitor):
        def enter_argument(self, node: graphql.ArgumentNode, *_args: object) -> None:
            parent = type_info.get_parent_type()
            definition = type_info.get_field_def()
            if isinstance(parent, graphql.GraphQLObjectType) and definition is not None:
                names = [name for name, field in parent.fields.items() if field is definition]
                passed.update(f"{parent.name}.{name}.{node.name.value}" for name in names)

    graphql.visit(document, graphql.TypeInfoVisitor(type_info, Arguments()))
    return passed


async def test_the_property_catches_what_it_is_for(world: World) -> None:
    """The oracle itself: a foreign student (by id, by name anywhere), a 500 or an error
    without a code is flagged; the viewer's own child is not."""
    parent = world.scopes["parent-one-school"]
    (own_id, *_rest) = sorted(parent.ids["Student"])
    foreign_id = next(
        sid for sid in sorted(world.student_names) if sid not in parent.ids["Student"]
    )
    foreign_names = world.foreign_names(parent)
    foreign_name = world.student_names[foreign_id]
    keys = {"Student": {"id", "fullName"}, "UnlinkedStudent": set()}

    def problems(payload: object, status: int = 200, scope: Scope = parent) -> list[str]:
        body = json.dumps(payload, ensure_ascii=False).encode()
        names = world.foreign_names(scope)
        return check_response(
            status, "application/json", body, scope=scope, foreign_names=names, keys=keys
        )

    def student(sid: str) -> dict[str, object]:
        return {"__typename": "Student", "id": sid, "fullName": world.student_names[sid]}

    assert problems({"data": {"student": student(own_id)}}) == []
    assert problems({"data": {"myChildren": [student(own_id), student(foreign_id)]}})
    assert problems({"data": {"student": {"__typename": "Student", "id": foreign_id}}})
    if foreign_name in foreign_names:
        assert problems({"data": {"x": {"comment": foreign_name}}})
    analyst = world.scopes["regional-analyst"]
    assert problems({"data": {"student": student(own_id)}}, scope=analyst)
    assert problems({"errors": [{"message": "Внутренняя ошибка сервера."}]}, status=500)
    assert problems({"errors": [{"message": "x", "extensions": {}}]})
    assert problems({"errors": [{"extensions": {"code": "FORBIDDEN"}}]})
    assert problems({"data": None, "errors": []})
    assert problems(["not", "an", "object"])

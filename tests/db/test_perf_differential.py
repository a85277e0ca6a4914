"""Differential test: the compiled executor answers exactly as graphql-core does.

Documents are generated from the schema (seeded, so a failure is reproducible): random
subsets of fields at every level, aliases, repeated fields that merge, named and inline
fragments, `@include`/`@skip` with literals and with variables, arguments as literals
and as variables (valid and invalid values), several operations per document. Each one
is sent as several accounts (parents, students, staff, anonymous) to two applications
over the same pool: one with SCHOOL_GATEWAY_EXECUTOR=compiled, one with =reference.
The responses must be byte-for-byte equal: status, data (key order included), errors
with their messages, paths, locations and codes, and null propagation.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from graphql import (
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    get_named_type,
    is_leaf_type,
)

from gateway.app import create_app
from gateway.core.db import counting_statements
from gateway.core.settings import Settings, SettingsError
from gateway.execution.runner import CompiledExecutor
from tests.support.statements import FAMILY_QUERY, application_statements

SEED = 20261127
DOCUMENTS = 160
# Family accounts most of the time; the others (no children, wrong role, anonymous)
# exercise the permission errors.
ACCOUNTS = (
    *("parent-one-school", "parent-two-schools", "student-young", "student-older") * 4,
    "parent-unregistered",
    "school-admin",
    "regional-analyst",
    None,
)
MAX_FIELDS_PER_LEVEL = 4
MAX_DEPTH = 6
# The diary's root fields, which the compiled executor serves. Other root fields (school
# dashboards, regional analytics) need arguments and roles this generator does not know;
# they have tests of their own.
DIARY_ROOT_FIELDS = frozenset({"viewer", "myChildren", "student"})
MAX_ALIASES = 12

Json = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Ids:
    """Real ids of the data set the argument values are drawn from."""

    family: tuple[int, ...]
    stranger: int
    periods: tuple[int, ...]
    subjects: tuple[int, ...]


@dataclass(slots=True)
class Document:
    """A generated document: text, variables and the operation to run."""

    text: str
    variables: Json
    operation_name: str | None


@dataclass(slots=True)
class _Builder:
    """Builds one operation's selection sets (fragments and variables are shared)."""

    rng: random.Random
    schema: GraphQLSchema
    ids: Ids
    own: tuple[int, ...]
    variable_definitions: dict[str, str] = field(default_factory=dict)
    variables: Json = field(default_factory=dict)
    fragments: dict[str, str] = field(default_factory=dict)
    aliases: int = 0

    def selection_set(self, object_type: GraphQLObjectType, depth: int) -> str:
        names = list(object_type.fields)
        if object_type is self.schema.query_type:
            names = [name for name in names if name in DIARY_ROOT_FIELDS]
        chosen = self.rng.sample(
            names, k=min(len(names), self.rng.randint(1, MAX_FIELDS_PER_LEVEL))
        )
        if depth >= MAX_DEPTH:
            chosen = [
                name
                for name in chosen
                if is_leaf_type(get_named_type(object_type.fields[name].type))
            ]
            chosen = chosen or ["__typename"]
        parts = [self.field(object_type, name, depth) for name in chosen]
        if self.rng.random() < 0.15:
            parts.append("__typename")
        if self.rng.random() < 0.2:
            parts.append(self.rng.choice(parts))  # a repeated selection: merged
        parts = [self.maybe_fragment(object_type, part) for part in parts]
        self.rng.shuffle(parts)
        return "{ " + " ".join(parts) + " }"

    def field(self, object_type: GraphQLObjectType, name: str, depth: int) -> str:
        if name == "__typename":
            return name
        field_def = object_type.fields[name]
        if self.aliases >= MAX_ALIASES:
            # Unaliased fields with different arguments would conflict: defaults only.
            if any(isinstance(arg.type, GraphQLNonNull) for arg in field_def.args.values()):
                return "__typename"
            alias, arguments = "", ""
        else:
            arguments = self.arguments(object_type.name, name)
            alias = ""
            if arguments or self.rng.random() < 0.2:
                self.aliases += 1
                alias = f"a{self.aliases}: "
        text = f"{alias}{name}{arguments}{self.directives()}"
        named = get_named_type(field_def.type)
        if isinstance(named, GraphQLObjectType):
            text += " " + self.selection_set(named, depth + 1)
        return text

    def maybe_fragment(self, object_type: GraphQLObjectType, selection: str) -> str:
        roll = self.rng.random()
        if roll < 0.1:
            return f"... on {object_type.name} {{ {selection} }}"
        if roll < 0.15:
            return f"...{self.directives(always=True)} {{ {selection} }}"
        if roll < 0.25:
            name = f"F{len(self.fragments)}"
            self.fragments[name] = f"fragment {name} on {object_type.name} {{ {selection} }}"
            return f"...{name}{self.directives()}"
        return selection

    def directives(self, *, always: bool = False) -> str:
        if not always and self.rng.random() < 0.8:
            return ""
        directive = self.rng.choice(("include", "skip"))
        if self.rng.random() < 0.5:
            return f" @{directive}(if: {self.rng.choice(('true', 'false'))})"
        name = f"f{len(self.variable_definitions)}"
        self.variable_definitions[name] = "Boolean!"
        self.variables[name] = self.rng.choice((True, False))
        return f" @{directive}(if: ${name})"

    def arguments(self, type_name: str, field_name: str) -> str:
        chosen: list[str] = []
        for argument, (type_text, value) in self.argument_values(type_name, field_name).items():
            if self.rng.random() < 0.4:
                name = f"v{len(self.variable_definitions)}"
                self.variable_definitions[name] = type_text
                if value is not None or self.rng.random() < 0.5:
                    self.variables[name] = value  # a null variable, or one not given
                chosen.append(f"{argument}: ${name}")
            else:
                chosen.append(f"{argument}: {_literal(value, type_text)}")
        return f"({', '.join(chosen)})" if chosen else ""

    def argument_values(self, type_name: str, field_name: str) -> dict[str, tuple[str, Any]]:
        """Mostly valid argument values; about one field in twelve gets a bad one."""
        rng, ids = self.rng, self.ids
        bad = rng.random() < 0.08
        if (type_name, field_name) == ("Query", "student"):
            own = [str(i) for i in self.own] or [str(ids.stranger)]
            return {"id": ("ID!", rng.choice(["abc", "0", str(ids.stranger)] if bad else own))}
        if type_name != "Student" or field_name not in WINDOWS:
            if (type_name, field_name) == ("Student", "finalMarks") and rng.random() < 0.5:
                return {"kind": ("FinalMarkKind", rng.choice(["PERIOD", "YEAR", "EXAM", None]))}
            return {}
        values: dict[str, tuple[str, Any]] = {}
        date_from, date_to = rng.choice(BAD_WINDOWS if bad else WINDOWS[field_name])
        if date_from is not None or rng.random() < 0.2:
            values["from"] = ("Date", date_from)
        if date_to is not None or rng.random() < 0.2:
            values["to"] = ("Date", date_to)
        if field_name == "averages" and not values and rng.random() < 0.5:
            periods = [str(p) for p in ids.periods]
            values["periodId"] = ("ID", rng.choice(["abc", "999999"] if bad else periods))
        if field_name == "marks":
            if rng.random() < 0.3:
                values["subjectId"] = ("ID", rng.choice([str(s) for s in ids.subjects]))
            if rng.random() < 0.6 or bad:
                values["first"] = ("Int!", rng.choice([0, 501] if bad else [1, 3, 20, 100, 500]))
        return values


WINDOWS: dict[str, list[tuple[str | None, str | None]]] = {
    "diary": [
        (None, None),
        ("2026-11-23", None),
        (None, "2026-11-27"),
        ("2026-11-23", "2026-11-29"),
        ("2026-11-01", "2026-11-27"),
        ("2026-10-26", "2026-11-08"),
    ],
    "averages": [(None, None), ("2026-09-01", "2026-12-31"), ("2026-11-01", "2026-11-27")],
    "marks": [
        (None, None),
        ("2026-09-01", "2027-05-31"),
        (None, "2026-10-01"),
        ("2026-11-01", None),
    ],
}
BAD_WINDOWS: list[tuple[str | None, str | None]] = [
    ("2026-11-29", "2026-11-23"),
    ("1999-12-31", None),
    ("2026-01-01", "2027-12-31"),
]


def _literal(value: Any, type_text: str) -> str:
    if value is None:
        return "null"
    if type_text.startswith("FinalMarkKind"):
        return str(value)
    if isinstance(value, int):
        return str(value)
    return orjson.dumps(value).decode()


def generate(rng: random.Random, schema: GraphQLSchema, ids: Ids, own: tuple[int, ...]) -> Document:
    """One document with one to three operations (one of them chosen to run).

    `own` are the students the account may see: `student(id:)` mostly asks for them.
    """
    operations: list[str] = []
    builder = _Builder(rng, schema, ids, own)
    count = rng.choice((1, 1, 1, 2, 3))
    for number in range(count):
        definitions_before = dict(builder.variable_definitions)
        query_type = schema.query_type
        assert query_type is not None
        selection = builder.selection_set(query_type, 0)
        new = {k: v for k, v in builder.variable_definitions.items() if k not in definitions_before}
        declared = ", ".join(f"${k}: {v}" for k, v in new.items())
        header = f"query Op{number}" + (f"({declared})" if declared else "")
        if count == 1 and not new and rng.random() < 0.5:
            header = ""  # the anonymous shorthand
        operations.append(f"{header} {selection}")
    chosen = rng.randrange(count)
    text = "\n".join([*operations, *builder.fragments.values()])
    return Document(
        text=text, variables=builder.variables, operation_name=f"Op{chosen}" if count > 1 else None
    )


# --- fixtures --------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def ids(owner_conn: asyncpg.Connection, tokens: dict[str, str]) -> Ids:
    """Children of the demo parents (their accounts exist once `tokens` has run)."""
    family = await owner_conn.fetch(
        """SELECT DISTINCT pl.student_id FROM diary_api.parent_links pl
           JOIN gateway.accounts a ON a.role = 'PARENT' AND pl.snils = a.snils::text
           ORDER BY 1"""
    )
    family_ids = tuple(row["student_id"] for row in family)
    stranger = await owner_conn.fetchval(
        "SELECT min(id) FROM school.students WHERE NOT (id = ANY($1::int[]))", list(family_ids)
    )
    periods = await owner_conn.fetch(
        """SELECT DISTINCT p.id FROM diary_api.periods p
           JOIN diary_api.students s ON s.school_id = p.school_id
           WHERE s.id = ANY($1::int[]) ORDER BY 1""",
        list(family_ids),
    )
    subjects = await owner_conn.fetch("SELECT id FROM school.subjects ORDER BY id LIMIT 6")
    return Ids(
        family=family_ids,
        stranger=stranger,
        periods=tuple(row["id"] for row in periods),
        subjects=tuple(row["id"] for row in subjects),
    )


@pytest.fixture(scope="module")
async def scopes(pair: Pair, tokens: dict[str, str]) -> dict[str | None, tuple[int, ...]]:
    """The students each account sees (`myChildren`), by account key."""
    result: dict[str | None, tuple[int, ...]] = {}
    for account in set(ACCOUNTS) - {None}:
        assert account is not None
        headers = {"Authorization": f"Bearer {tokens[account]}"}
        response = await pair.reference.post(
            "/graphql", json={"query": "{ myChildren { id } }"}, headers=headers
        )
        children = (response.json().get("data") or {}).get("myChildren") or []
        result[account] = tuple(int(child["id"]) for child in children)
    return result


@dataclass(slots=True)
class Pair:
    compiled: httpx.AsyncClient
    reference: httpx.AsyncClient
    executor: CompiledExecutor
    schema: GraphQLSchema


@pytest.fixture(scope="module")
async def pair(settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[Pair]:
    compiled_app = create_app(dataclasses.replace(settings, executor="compiled"), pool=pool)
    reference_app = create_app(dataclasses.replace(settings, executor="reference"), pool=pool)
    endpoint = compiled_app.state.graphql_endpoint
    executor = endpoint._compiled
    assert isinstance(executor, CompiledExecutor)
    assert reference_app.state.graphql_endpoint._compiled is None
    base = "http://127.0.0.1:8000"
    async with (
        httpx.AsyncClient(transport=httpx.ASGITransport(app=compiled_app), base_url=base) as c,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=reference_app), base_url=base) as r,
    ):
        yield Pair(compiled=c, reference=r, executor=executor, schema=endpoint.schema._schema)


async def _both(
    pair: Pair, tokens: dict[str, str], account: str | None, body: Json
) -> tuple[httpx.Response, httpx.Response]:
    headers = {"Accept": "application/json"}
    if account is not None:
        headers["Authorization"] = f"Bearer {tokens[account]}"
    compiled = await pair.compiled.post("/graphql", json=body, headers=headers)
    reference = await pair.reference.post("/graphql", json=body, headers=headers)
    return compiled, reference


def _assert_same(compiled: httpx.Response, reference: httpx.Response, context: str) -> None:
    assert compiled.status_code == reference.status_code, context
    assert compiled.headers["content-type"] == reference.headers["content-type"], context
    assert compiled.content == reference.content, (
        f"{context}\ncompiled:  {compiled.text[:1500]}\nreference: {reference.text[:1500]}"
    )


# --- tests -----------------------------------------------------------------------------


async def test_generated_documents_answer_exactly_as_graphql_core(
    pair: Pair, tokens: dict[str, str], ids: Ids, scopes: dict[str | None, tuple[int, ...]]
) -> None:
    rng = random.Random(SEED)
    before = pair.executor.outcomes.copy()
    with_data = with_errors = 0
    for number in range(DOCUMENTS):
        account = rng.choice(ACCOUNTS)
        document = generate(rng, pair.schema, ids, scopes.get(account, ()))
        body: Json = {"query": document.text, "variables": document.variables}
        if document.operation_name is not None:
            body["operationName"] = document.operation_name
        compiled, reference = await _both(pair, tokens, account, body)
        _assert_same(
            compiled, reference, f"document {number} as {account}:\n{orjson.dumps(body).decode()}"
        )
        payload = reference.json()
        with_errors += "errors" in payload
        with_data += payload.get("data") is not None and "errors" not in payload
    outcomes = pair.executor.outcomes - before
    # The comparison is not vacuous: many documents ran through compiled plans, and
    # failures (given back to graphql-core) are well represented too.
    assert outcomes["compiled"] >= DOCUMENTS // 4, outcomes
    assert with_data >= DOCUMENTS // 4 and with_errors >= DOCUMENTS // 10, (with_data, with_errors)
    assert outcomes["compiled"] == with_data, outcomes


DIARY_WITH_DIRECTIVES = """
query Week($marks: Boolean!, $noHomework: Boolean!, $from: Date) {
  myChildren {
    fullName
    first: diary(from: $from) {
      days { date lessons { number subject { name }
        marks @include(if: $marks) { value weight workType { name } }
        ...Work @skip(if: $noHomework) } }
    }
    ... on Student @include(if: $marks) { averages { subject { name } weightedAverage } }
  }
}
fragment Work on Lesson { homework { text dueOn attachments { url } } topic }
"""


@pytest.mark.parametrize("account", ["parent-one-school", "parent-two-schools", "student-older"])
async def test_directive_variables_select_their_own_plans(
    pair: Pair, tokens: dict[str, str], account: str
) -> None:
    """The same text with other `@include`/`@skip` values must not reuse a stale plan."""
    before = pair.executor.outcomes["compiled"]
    shapes = set()
    for marks in (True, False):
        for no_homework in (False, True):
            variables = {"marks": marks, "noHomework": no_homework, "from": "2026-11-23"}
            body = {"query": DIARY_WITH_DIRECTIVES, "variables": variables}
            compiled, reference = await _both(pair, tokens, account, body)
            _assert_same(compiled, reference, f"{account} {variables}")
            shapes.add(compiled.content)
    assert len(shapes) == 4
    assert pair.executor.outcomes["compiled"] - before == 4


@pytest.mark.parametrize(
    ("account", "variables"),
    [
        ("parent-two-schools", {"id": "stranger"}),  # FORBIDDEN, data.student null
        ("parent-two-schools", {"id": "abc"}),  # BAD_USER_INPUT
        (None, {"id": "own"}),  # UNAUTHENTICATED
        ("school-admin", {"id": "own"}),  # FORBIDDEN by role
        ("parent-two-schools", {"id": "own", "first": 0}),  # LIMIT_OUT_OF_RANGE, non-null
        ("parent-two-schools", {"id": "own", "from": "2026-12-01"}),  # DATE_RANGE_REVERSED
        ("parent-two-schools", {"id": "own", "from": "2026-13-01"}),  # variable coercion
    ],
)
async def test_errors_and_null_propagation_are_graphql_cores(
    pair: Pair, tokens: dict[str, str], ids: Ids, account: str | None, variables: Json
) -> None:
    query = """query One($id: ID!, $first: Int! = 5, $from: Date) {
      viewer { role displayName }
      student(id: $id) {
        fullName
        marks(first: $first, from: $from, to: "2026-11-27") { value lesson { topic } }
        diary(from: "2026-11-23") { days { date } }
      }
    }"""
    resolved = dict(variables)
    resolved["id"] = {"own": str(ids.family[0]), "stranger": str(ids.stranger)}.get(
        variables["id"], variables["id"]
    )
    compiled, reference = await _both(
        pair, tokens, account, {"query": query, "variables": resolved}
    )
    _assert_same(compiled, reference, f"{account} {resolved}")
    assert "errors" in reference.json()


def test_the_executor_setting() -> None:
    dev = {"SCHOOL_GATEWAY_DEV": "1"}
    assert Settings.from_env(dev).executor == "compiled"
    assert Settings.from_env({**dev, "SCHOOL_GATEWAY_EXECUTOR": "Reference"}).executor == (
        "reference"
    )
    with pytest.raises(SettingsError, match="SCHOOL_GATEWAY_EXECUTOR"):
        Settings.from_env({**dev, "SCHOOL_GATEWAY_EXECUTOR": "fast"})


async def test_both_executors_send_the_same_statements(pair: Pair, tokens: dict[str, str]) -> None:
    """Level-by-level resolving batches as graphql-core does: same statements, same count."""
    headers = {"Authorization": f"Bearer {tokens['parent-two-schools']}"}
    body = {"query": FAMILY_QUERY, "variables": {"from": "2026-11-23", "to": "2026-11-29"}}
    sent: dict[str, list[str]] = {}
    for name, client in (("compiled", pair.compiled), ("reference", pair.reference)):
        before = pair.executor.outcomes["compiled"]
        with counting_statements(keep_text=True) as counter:
            response = await client.post("/graphql", json=body, headers=headers)
        assert response.status_code == 200 and "errors" not in response.json()
        sent[name] = sorted(application_statements(counter))
        assert pair.executor.outcomes["compiled"] - before == (name == "compiled")
    assert sent["compiled"] == sent["reference"]
    assert len(sent["compiled"]) <= 12

"""The fuzz test's world: who may see which student, generated requests, the property.

`load_world` computes from the database (with the owner's connection, not through the
gateway) every student's id and full name and, per fuzzed account, the students it may
see. The strategies build requests from the gateway's own schema: valid documents with
generated arguments (hypothesis-graphql), documents with one schema violation, and
documents with variables for every argument that get hostile values (wrong types, huge
strings, deep nesting, nulls) or a hostile envelope. `check_response` is the property:
no 5xx, a well-formed GraphQL-over-HTTP response, no student outside the viewer's scope.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, Final
from urllib.parse import urlencode

import asyncpg
import graphql
from graphql import (
    DocumentNode,
    FieldNode,
    GraphQLSchema,
    NameNode,
    SelectionSetNode,
    TypeInfo,
    TypeInfoVisitor,
    Visitor,
    visit,
)
from hypothesis import strategies as st
from hypothesis_graphql import Mode, nodes, queries

from fixtures.demo import demo_account

ANONYMOUS: Final = "anonymous"
FAMILY_ROLES: Final = ("parent-one-school", "parent-two-schools", "student-young")
STAFF_ROLES: Final = ("school-admin", "regional-analyst")
ROLES: Final = (ANONYMOUS, *FAMILY_ROLES, *STAFF_ROLES)
# Types whose objects identify a student, and the fields that do.
STUDENT_TYPES: Final = ("Student", "UnlinkedStudent")
IDENTIFYING_FIELDS: Final = ("id", "fullName")
JSON_TYPES: Final = ("application/json", "application/graphql-response+json")
MAX_BODY_BYTES: Final = 1 << 20  # gateway.http.protocol: larger bodies are refused (413)

Json = dict[str, Any]


# --- who may see what ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Scope:
    """What one account may receive: students' ids by type, and their full names."""

    role: str
    ids: Mapping[str, frozenset[str]]  # type name -> ids allowed in objects of that type
    names: frozenset[str]
    # Ids for ID arguments: the account's own students, then others' ids and junk.
    argument_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class World:
    """The database's students and the scope of every fuzzed account."""

    student_names: Mapping[str, str]  # student id -> full name
    other_people_names: frozenset[str]  # parents, teachers, staff (a name is not proof)
    scopes: Mapping[str, Scope]

    @property
    def argument_ids(self) -> tuple[str, ...]:
        """Ids for ID arguments: every fuzzed account's own students, others', junk."""
        ids = (student_id for scope in self.scopes.values() for student_id in scope.argument_ids)
        return tuple(dict.fromkeys(ids))

    def foreign_names(self, scope: Scope) -> frozenset[str]:
        """Full names that only students outside `scope` have."""
        allowed_ids = set().union(*scope.ids.values()) if scope.ids else set()
        return frozenset(
            name
            for student_id, name in self.student_names.items()
            if student_id not in allowed_ids
            and name not in scope.names
            and name not in self.other_people_names
        )


_FULL_NAME = "concat_ws(' ', {t}.last_name, {t}.first_name, nullif({t}.patronymic, ''))"

_STUDENTS = f"SELECT s.id::text AS id, {_FULL_NAME.format(t='s')} AS name FROM school.students s"

_OTHER_PEOPLE = f"""
SELECT {_FULL_NAME.format(t="p")} FROM school.parents p
UNION SELECT {_FULL_NAME.format(t="t")} FROM school.teachers t
UNION SELECT {_FULL_NAME.format(t="f")} FROM school.staff f
"""

_CHILDREN_BY_SNILS = """
SELECT DISTINCT ps.student_id::text
FROM school.parents p JOIN school.parent_students ps ON ps.parent_id = p.id
WHERE regexp_replace(p.snils, '[^0-9]', '', 'g') = regexp_replace($1, '[^0-9]', '', 'g')
"""

_STUDENT_BY_LOGIN = "SELECT id::text FROM school.students WHERE login = $1"

_ADMIN_SCHOOL = """
SELECT school_id FROM school.staff
WHERE role = 'it_admin'
  AND regexp_replace(snils, '[^0-9]', '', 'g') = regexp_replace($1, '[^0-9]', '', 'g')
"""

_UNLINKED_STUDENTS = """
SELECT s.id::text FROM school.students s
WHERE s.school_id = $1
  AND NOT EXISTS (SELECT 1 FROM school.parent_students ps WHERE ps.student_id = s.id)
"""

_OTHER_IDS = """
(SELECT id::text FROM school.schools ORDER BY id LIMIT 3)
UNION ALL (SELECT id::text FROM school.subjects ORDER BY id LIMIT 3)
UNION ALL (SELECT id::text FROM school.periods ORDER BY id LIMIT 3)
UNION ALL (SELECT id::text FROM school.students ORDER BY id LIMIT 3)
"""

JUNK_IDS: Final = ("0", "-1", "abc", "99999999999", "1e3", "", " 1", "1;--", "\x00")


async def load_world(conn: asyncpg.Connection) -> World:
    """Students, other people's names and every fuzzed account's scope, from the database."""
    student_names = {row["id"]: row["name"] for row in await conn.fetch(_STUDENTS)}
    other_people = frozenset(row[0] for row in await conn.fetch(_OTHER_PEOPLE))
    other_ids = tuple(row[0] for row in await conn.fetch(_OTHER_IDS))
    scopes: dict[str, Scope] = {}
    for role in ROLES:
        ids = await _allowed_ids(conn, role)
        allowed = set().union(*ids.values()) if ids else set()
        scopes[role] = Scope(
            role=role,
            ids=ids,
            names=frozenset(student_names[student_id] for student_id in allowed),
            argument_ids=(*sorted(allowed)[:4], *other_ids, *JUNK_IDS),
        )
    return World(student_names=student_names, other_people_names=other_people, scopes=scopes)


async def _allowed_ids(conn: asyncpg.Connection, role: str) -> dict[str, frozenset[str]]:
    """Ids by type the account may receive (the contract of the README, read independently)."""
    if role == ANONYMOUS or role == "regional-analyst":
        return {}
    account = demo_account(role)
    if role == "school-admin":
        assert account.snils is not None
        school_id = await conn.fetchval(_ADMIN_SCHOOL, account.snils)
        assert school_id is not None, "the demo school admin must be in the staff registry"
        rows = await conn.fetch(_UNLINKED_STUDENTS, school_id)
        return {"UnlinkedStudent": frozenset(row[0] for row in rows)}
    if account.role == "PARENT":
        assert account.snils is not None
        rows = await conn.fetch(_CHILDREN_BY_SNILS, account.snils)
    else:
        rows = await conn.fetch(_STUDENT_BY_LOGIN, _student_login(role))
    students = frozenset(row[0] for row in rows)
    assert students, f"{role}: the demo account must have students"
    return {"Student": students}


def _student_login(role: str) -> str | None:
    """The school login of a demo student account (its planted child record)."""
    account = demo_account(role)
    assert account.student_of is not None, role
    parent_key, index = account.student_of
    return demo_account(parent_key).children[index].login


# --- documents ---------------------------------------------------------------------------


class _AddTypename(Visitor):
    """Adds `__typename` to every selection set, so the response tells each object's type."""

    def leave_selection_set(self, node: SelectionSetNode, *_args: object) -> SelectionSetNode:
        typename = FieldNode(name=NameNode(value="__typename"), arguments=(), directives=())
        return SelectionSetNode(selections=(*node.selections, typename))


def with_typenames(document: DocumentNode) -> DocumentNode:
    result: DocumentNode = visit(document, _AddTypename())
    return result


class _IdentifyingKeys(Visitor):
    """Response keys (alias or name) of the identifying fields of student types."""

    def __init__(self, type_info: TypeInfo) -> None:
        super().__init__()
        self.type_info = type_info
        self.keys: dict[str, set[str]] = {name: set() for name in STUDENT_TYPES}

    def enter_field(self, node: FieldNode, *_args: object) -> None:
        parent = self.type_info.get_parent_type()
        identifying = node.name.value in IDENTIFYING_FIELDS
        if identifying and parent is not None and parent.name in self.keys:
            self.keys[parent.name].add((node.alias or node.name).value)


def identifying_keys(schema: GraphQLSchema, document: DocumentNode) -> dict[str, set[str]]:
    """For each student type: the response keys that carry a student's id or full name."""
    type_info = TypeInfo(schema)
    collector = _IdentifyingKeys(type_info)
    visit(document, TypeInfoVisitor(type_info, collector))
    return collector.keys


# --- strategies ----------------------------------------------------------------------------


def _dates(today: date, *, junk: bool) -> st.SearchStrategy[str]:
    """Dates near the data set's today (they reach the diary), any date, and (junk) not dates."""
    near = st.integers(min_value=-60, max_value=60).map(lambda days: today + timedelta(days))
    valid = st.one_of(near, near, st.dates()).map(date.isoformat)
    if not junk:
        return valid
    not_dates = st.sampled_from(["2026-13-45", "x", "", "2026-11-27T00:00:00", "27.11.2026"])
    return st.one_of(valid, not_dates)


def custom_scalars(
    ids: Sequence[str], today: date, *, junk: bool
) -> dict[str, st.SearchStrategy[graphql.ValueNode]]:
    """Argument values that reach real data: the accounts' own ids, others', junk."""
    return {
        "ID": st.sampled_from(ids).map(nodes.String),
        "Date": _dates(today, junk=junk).map(nodes.String),
        "DateTime": st.datetimes().map(lambda moment: moment.isoformat()).map(nodes.String),
        "Time": st.times().map(lambda moment: moment.isoformat()).map(nodes.String),
    }


def documents(
    schema: GraphQLSchema, ids: Sequence[str], today: date, mode: Mode
) -> st.SearchStrategy[DocumentNode]:
    """Query documents generated from the schema (valid ones, or with one violation)."""
    strategy: st.SearchStrategy[DocumentNode] = queries(
        schema,
        custom_scalars=custom_scalars(ids, today, junk=mode is Mode.NEGATIVE),
        print_ast=lambda document: document,
        mode=mode,
    )
    return strategy.map(with_typenames)


@st.composite
def document_requests(
    draw: st.DrawFn, documents: st.SearchStrategy[DocumentNode], *, allow_get: bool
) -> FuzzRequest:
    """A generated document sent as POST (or, one time in five, as GET), either Accept."""
    text = graphql.print_ast(draw(documents))
    accept = draw(st.sampled_from(JSON_TYPES))
    if allow_get and draw(st.integers(min_value=0, max_value=4)) == 0:
        return FuzzRequest("GET", accept, params=urlencode({"query": text}), document=text)
    body = json.dumps({"query": text}, ensure_ascii=False)
    return FuzzRequest("POST", accept, body=body, document=text)


@dataclass(frozen=True, slots=True)
class ArgumentSite:
    """A document that passes every argument on the path to one field as a variable."""

    text: str
    variables: Mapping[str, graphql.GraphQLInputType]


def argument_sites(schema: GraphQLSchema) -> list[ArgumentSite]:
    """One document per field with arguments reachable from Query, arguments as variables."""
    query_type = schema.query_type
    assert query_type is not None
    sites: list[ArgumentSite] = []
    for path in _paths_to_fields_with_arguments(query_type):
        sites.append(_site(path))
    return sites


_Path = tuple[tuple[str, graphql.GraphQLField], ...]


def _paths_to_fields_with_arguments(root: graphql.GraphQLObjectType) -> Iterator[_Path]:
    seen: set[tuple[str, str]] = set()
    pending: list[tuple[graphql.GraphQLObjectType, _Path]] = [(root, ())]
    while pending:
        parent, path = pending.pop(0)
        for name, definition in parent.fields.items():
            if (parent.name, name) in seen:
                continue
            seen.add((parent.name, name))
            here = (*path, (name, definition))
            if definition.args:
                yield here
            child = graphql.get_named_type(definition.type)
            if isinstance(child, graphql.GraphQLObjectType):
                pending.append((child, here))


def _site(path: _Path) -> ArgumentSite:
    variables: dict[str, graphql.GraphQLInputType] = {}
    opening: list[str] = []
    for depth, (name, definition) in enumerate(path):
        passed = []
        for argument, spec in definition.args.items():
            variable = f"v{depth}_{argument}"
            variables[variable] = spec.type
            passed.append(f"{argument}: ${variable}")
        opening.append(f"{name}({', '.join(passed)})" if passed else name)
    last_type = graphql.get_named_type(path[-1][1].type)
    leaf = " { __typename }" if not graphql.is_leaf_type(last_type) else ""
    body = " { __typename ".join(opening) + leaf + " }" * (len(path) - 1)
    declared = ", ".join(f"${name}: {type_}" for name, type_ in variables.items())
    return ArgumentSite(text=f"query Site({declared}) {{ {body} }}", variables=variables)


class Raw:
    """A JSON text put into the body as is (deep nesting the encoder would refuse)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"Raw({self.text[:40]!r}… {len(self.text)} chars)"


def encode_json(value: object) -> str:
    """JSON text of `value`, with every `Raw` inserted verbatim."""
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, dict):
        items = (f"{json.dumps(str(key))}:{encode_json(item)}" for key, item in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(encode_json(item) for item in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def _deep(depth: int, kind: str) -> Raw:
    if kind == "list":
        return Raw("[" * depth + "1" + "]" * depth)
    return Raw('{"a":' * depth + "1" + "}" * depth)


_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(["2026-11-27", "1", "PARENT", "MUNICIPALITY", "Н", "NaN"]),
)
_JSON = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=12,
)
_HUGE_SIZES = (10_000, 200_000, 900_000)


def hostile_values() -> st.SearchStrategy[object]:
    """Wrong types, nulls, huge strings, deep nesting, non-JSON literals."""
    huge = st.builds(
        lambda size, char: char * size, st.sampled_from(_HUGE_SIZES), st.sampled_from("aя😀")
    )
    deep = st.builds(
        _deep, st.sampled_from([20, 200, 900, 1100, 5000]), st.sampled_from(["list", "dict"])
    )
    literal = st.sampled_from(
        [Raw("NaN"), Raw("Infinity"), Raw("1e999"), Raw("-0"), Raw('"\\ud800"')]
    )
    return st.one_of(st.none(), _JSON, huge, deep, literal)


@dataclass(frozen=True, slots=True)
class FuzzRequest:
    """A raw GraphQL-over-HTTP request: method, body or query string, Accept; `document`
    is the query text whose response keys identify students."""

    method: str
    accept: str
    body: str | None = None
    params: str | None = None
    document: str | None = field(default=None)

    def describe(self) -> str:
        shown = self.body if self.body is not None else self.params or ""
        if len(shown) > 400:
            shown = f"{shown[:300]}… ({len(shown)} chars) …{shown[-60:]}"
        return f"{self.method} /graphql Accept: {self.accept}\n{shown}"


@st.composite
def hostile_requests(draw: st.DrawFn, sites: Sequence[ArgumentSite]) -> FuzzRequest:
    """A document with variables for every argument on its path, most of them hostile."""
    site = draw(st.sampled_from(sites))
    variables: dict[str, object] = {}
    for name in site.variables:
        choice = draw(st.sampled_from(["omit", "null", "hostile", "hostile", "valid-ish"]))
        if choice == "null":
            variables[name] = None
        elif choice == "hostile":
            variables[name] = draw(hostile_values())
        elif choice == "valid-ish":
            variables[name] = draw(_JSON)
    if draw(st.booleans()):
        variables[draw(st.text(max_size=8))] = draw(hostile_values())
    envelope: dict[str, object] = {"query": site.text, "variables": variables}
    envelope = draw(st.sampled_from([_as_is, _hostile_envelope]))(envelope, draw)
    accept = draw(st.sampled_from(JSON_TYPES))
    body = encode_json(envelope)
    if draw(st.integers(min_value=0, max_value=9)) == 0 and len(body) < 4000:
        return FuzzRequest("GET", accept, params=_query_string(envelope), document=site.text)
    return FuzzRequest("POST", accept, body=body, document=site.text)


def _as_is(envelope: dict[str, object], _draw: st.DrawFn) -> dict[str, object]:
    return envelope


def _hostile_envelope(envelope: dict[str, object], draw: st.DrawFn) -> dict[str, object]:
    """One envelope member replaced: the variables, the query or the operation name."""
    member = draw(st.sampled_from(["variables", "query", "operationName", "extensions"]))
    return envelope | {member: draw(hostile_values())}


def _query_string(envelope: Mapping[str, object]) -> str:
    params = {
        key: value if isinstance(value, str) else encode_json(value)
        for key, value in envelope.items()
        if value is not None
    }
    return urlencode(params)


# --- the property ------------------------------------------------------------------------


def check_response(
    status: int,
    content_type: str,
    body: bytes,
    *,
    scope: Scope,
    foreign_names: frozenset[str],
    keys: Mapping[str, set[str]],
) -> list[str]:
    """Every way the response breaks the property (empty when it holds)."""
    if status >= 500:
        return [f"status {status}"]
    media_type = content_type.split(";")[0].strip()
    if media_type not in JSON_TYPES:
        return [f"status {status} with Content-Type {content_type!r}"]
    try:
        payload = json.loads(body)
    except ValueError:
        return [f"status {status}: the body is not JSON"]
    problems = _shape_problems(payload)
    if not problems:
        problems = _leaks(payload, scope, foreign_names, keys)
    return problems


def _shape_problems(payload: object) -> list[str]:
    if not isinstance(payload, dict):
        return ["the body is not a JSON object"]
    if not {"data", "errors"} & payload.keys():
        return ["neither data nor errors"]
    if unknown := payload.keys() - {"data", "errors", "extensions"}:
        return [f"unexpected members {sorted(unknown)}"]
    if "data" in payload and not isinstance(payload["data"], dict | None):
        return ["data is neither an object nor null"]
    errors = payload.get("errors", [])
    if not isinstance(errors, list) or ("errors" in payload and not errors):
        return ["errors is not a non-empty list"]
    return [problem for error in errors for problem in _error_problems(error)]


def _error_problems(error: object) -> list[str]:
    if not isinstance(error, dict):
        return [f"an error that is not an object: {error!r}"]
    problems = []
    if not isinstance(error.get("message"), str) or not error["message"]:
        problems.append(f"an error without a message: {error!r}")
    extensions = error.get("extensions")
    code = extensions.get("code") if isinstance(extensions, dict) else None
    if not isinstance(code, str) or not code:
        problems.append(f"an error without extensions.code: {error!r}")
    elif code == "INTERNAL_SERVER_ERROR":
        problems.append(f"an internal error: {error!r}")
    return problems


def _leaks(
    payload: Mapping[str, Any],
    scope: Scope,
    foreign_names: frozenset[str],
    keys: Mapping[str, set[str]],
) -> list[str]:
    problems: list[str] = []
    for value, typename in _walk(payload.get("data"), None):
        if isinstance(value, str) and value in foreign_names:
            problems.append(f"a foreign student's full name: {value!r}")
        if isinstance(value, dict) and typename in STUDENT_TYPES:
            problems.extend(_object_leaks(value, typename, scope, keys))
    return problems


def _object_leaks(
    obj: Mapping[str, Any], typename: str, scope: Scope, keys: Mapping[str, set[str]]
) -> list[str]:
    allowed_ids = scope.ids.get(typename, frozenset())
    problems = []
    for key in keys.get(typename, set()):
        value = obj.get(key)
        if value is None:
            continue
        if value not in allowed_ids and value not in scope.names:
            problems.append(f"{typename}.{key} = {value!r} is outside {scope.role}'s scope")
    return problems


def _walk(value: object, typename: str | None) -> Iterator[tuple[object, str | None]]:
    """Every value in `value` (depth first), with the `__typename` of objects."""
    if isinstance(value, dict):
        own = value.get("__typename")
        yield value, own if isinstance(own, str) else None
        for item in value.values():
            yield from _walk(item, None)
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item, typename)
    else:
        yield value, typename

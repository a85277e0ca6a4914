"""The canonical operations in bench/queries and the HTTP request each target gets for them.

Each operation has `<name>.gateway.graphql`, `<name>.postgraphile.graphql` and
`<name>.variables.json` (variables per target kind, with `{placeholders}` filled from the
database's fixture: ids and dates differ between databases).

`families` (bench.driver.families) reads parent-week's documents; its requests come
from its own files, each a different family's (the fixture's request is its check).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from bench.driver.database import PARENT_ACCOUNT, QUARTER_ACCOUNT, YEAR_ACCOUNT, Fixture

QUERIES_DIR = Path(__file__).resolve().parent.parent / "queries"


class Kind(Enum):
    """What a target is: it decides the request's form and how its answer is read."""

    GATEWAY = "gateway"
    POSTGRAPHILE = "postgraphile"
    RAW = "raw"


@dataclass(frozen=True, slots=True)
class Operation:
    """One canonical operation: its documents, variables and the account that asks."""

    name: str
    account: str
    documents: dict[Kind, str]
    variables: dict[Kind, dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Request:
    """An HTTP POST: path, JSON body and headers."""

    path: str
    body: bytes
    headers: dict[str, str]


ACCOUNTS = {
    "parent-week": PARENT_ACCOUNT,
    "student-quarter": QUARTER_ACCOUNT,
    "student-year": YEAR_ACCOUNT,
}
FAMILIES = "families"
OPERATION_NAMES = (*ACCOUNTS, FAMILIES)


def load_operation(name: str) -> Operation:
    """Read an operation's files from bench/queries."""
    files = "parent-week" if name == FAMILIES else name
    raw_variables = json.loads((QUERIES_DIR / f"{files}.variables.json").read_text())
    documents = {
        kind: (QUERIES_DIR / f"{files}.{kind.value}.graphql").read_text()
        for kind in (Kind.GATEWAY, Kind.POSTGRAPHILE)
    }
    return Operation(
        name=name,
        account=ACCOUNTS.get(name, PARENT_ACCOUNT),
        documents=documents,
        variables={kind: raw_variables[kind.value] for kind in Kind},
    )


def _fill(template: Any, values: dict[str, object]) -> Any:
    """Replace "{placeholder}" strings (whole values only) by the fixture's values."""
    if isinstance(template, dict):
        return {key: _fill(item, values) for key, item in template.items()}
    if isinstance(template, list):
        return [_fill(item, values) for item in template]
    if isinstance(template, str) and template.startswith("{") and template.endswith("}"):
        return values[template[1:-1]]
    return template


def build_request(operation: Operation, kind: Kind, fixture: Fixture) -> Request:
    """The request a target of `kind` gets for `operation` on the fixture's database."""
    variables = _fill(operation.variables[kind], fixture.values)
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if kind is Kind.RAW:
        return Request(f"/{operation.name}", _json(variables), headers)
    payload = {"query": operation.documents[kind], "variables": variables}
    if kind is Kind.GATEWAY:
        headers["Authorization"] = f"Bearer {fixture.tokens[operation.account]}"
    return Request("/graphql", _json(payload), headers)


def _json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()

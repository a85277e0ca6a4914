"""The schema lint: the rules of graphql-schema-linter that matter to a client developer.

Every type, field, argument, input field and enum value carries a description (capitalised),
deprecations say why, and names follow GraphQL's conventions (types PascalCase, fields and
arguments camelCase, enum values ALL_CAPS). `school-gateway lint-schema` runs it in
`./scripts/check` on the served schema; any finding fails the check.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from graphql import (
    GraphQLArgument,
    GraphQLEnumType,
    GraphQLEnumValue,
    GraphQLField,
    GraphQLInputField,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
)

_PASCAL_CASE: Final = re.compile(r"[A-Z][A-Za-z0-9]*")
_CAMEL_CASE: Final = re.compile(r"[a-z][A-Za-z0-9]*")
_ALL_CAPS: Final = re.compile(r"[A-Z][A-Z0-9_]*")

Member = GraphQLField | GraphQLArgument | GraphQLInputField | GraphQLEnumValue


@dataclass(frozen=True, slots=True)
class Finding:
    """One rule broken at one place of the schema (`Type`, `Type.field`, `Type.field(arg)`)."""

    rule: str
    where: str

    def __str__(self) -> str:
        return f"{self.rule}: {self.where}"


def lint(schema: GraphQLSchema) -> list[Finding]:
    """Every finding in `schema`'s own types (introspection types excluded), in type order."""
    findings: list[Finding] = []
    for name in sorted(schema.type_map):
        if not name.startswith("__"):
            findings.extend(_type_findings(schema.type_map[name]))
    return findings


def _type_findings(type_: GraphQLNamedType) -> Iterator[Finding]:
    name = type_.name
    yield from _described("types-have-descriptions", name, type_.description)
    if not _PASCAL_CASE.fullmatch(name):
        yield Finding("types-are-capitalized", name)
    if isinstance(type_, GraphQLObjectType | GraphQLInterfaceType):
        for field_name, field in type_.fields.items():
            yield from _field_findings(name, field_name, field)
    elif isinstance(type_, GraphQLInputObjectType):
        for field_name, input_field in type_.fields.items():
            where = f"{name}.{field_name}"
            rule = "input-object-values-have-descriptions"
            yield from _member_findings(rule, where, field_name, input_field, _CAMEL_CASE)
    elif isinstance(type_, GraphQLEnumType):
        for value_name, value in type_.values.items():
            where = f"{name}.{value_name}"
            rule = "enum-values-have-descriptions"
            yield from _member_findings(rule, where, value_name, value, _ALL_CAPS)


def _field_findings(type_name: str, field_name: str, field: GraphQLField) -> Iterator[Finding]:
    where = f"{type_name}.{field_name}"
    yield from _member_findings("fields-have-descriptions", where, field_name, field, _CAMEL_CASE)
    for arg_name, argument in field.args.items():
        arg_where = f"{where}({arg_name})"
        rule = "arguments-have-descriptions"
        yield from _member_findings(rule, arg_where, arg_name, argument, _CAMEL_CASE)


def _member_findings(
    rule: str, where: str, name: str, member: Member, naming: re.Pattern[str]
) -> Iterator[Finding]:
    yield from _described(rule, where, member.description)
    if not naming.fullmatch(name):
        yield Finding(_NAMING_RULES[naming], where)
    if member.deprecation_reason is not None and not member.deprecation_reason.strip():
        yield Finding("deprecations-have-a-reason", where)


_NAMING_RULES: Final = {
    _CAMEL_CASE: "names-are-camel-cased",
    _ALL_CAPS: "enum-values-all-caps",
}


def _described(rule: str, where: str, description: str | None) -> Iterator[Finding]:
    text = (description or "").strip()
    if not text:
        yield Finding(rule, where)
    elif text[0].islower():
        yield Finding("descriptions-are-capitalized", where)

"""gateway.core.graphql_internals still reaches strawberry's and graphql-core's private parts.

A library upgrade that renames or removes one of them fails here, by name, rather than
as wrong data or a silently slower executor somewhere else.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

import graphql
import pytest
import strawberry
from graphql import GraphQLEnumType, GraphQLObjectType, GraphQLResolveInfo, GraphQLSchema
from strawberry.types.field import StrawberryField

from gateway.core.graphql_internals import (
    core_schema,
    enum_class,
    has_default_resolver,
    raw_info,
    strawberry_field,
)
from gateway.execution.settling import SettlingExecutionContext


@strawberry.enum
class Mark(Enum):
    GOOD = "good"
    POOR = "poor"


_seen: list[GraphQLResolveInfo[Any]] = []


@strawberry.type
class Lesson:
    subject_name: str
    mark: Mark

    @strawberry.field
    def room(self, info: strawberry.Info) -> str:
        _seen.append(raw_info(info))
        return f"room of {self.subject_name}"


@strawberry.type
class Query:
    @strawberry.field
    def lesson(self) -> Lesson:
        return Lesson(subject_name="Алгебра", mark=Mark.GOOD)


@pytest.fixture(scope="module")
def schema() -> strawberry.Schema:
    return strawberry.Schema(query=Query)


def _lesson_type(schema: strawberry.Schema) -> GraphQLObjectType:
    lesson = core_schema(schema).get_type("Lesson")
    assert isinstance(lesson, GraphQLObjectType)
    return lesson


def test_core_schema_is_the_graphql_core_schema_strawberry_built(
    schema: strawberry.Schema,
) -> None:
    built = core_schema(schema)
    assert isinstance(built, GraphQLSchema)
    assert built.query_type is not None and built.query_type.name == "Query"
    assert set(_lesson_type(schema).fields) == {"subjectName", "mark", "room"}


def test_strawberry_field_finds_the_field_a_core_field_came_from(
    schema: strawberry.Schema,
) -> None:
    fields = _lesson_type(schema).fields
    plain = strawberry_field(fields["subjectName"])
    assert isinstance(plain, StrawberryField)
    # What the compiler reads to turn a field into an attribute read:
    assert plain.python_name == "subject_name"
    assert plain.is_basic_field
    assert plain.default_resolver is getattr
    resolved = strawberry_field(fields["room"])
    assert isinstance(resolved, StrawberryField)
    assert resolved.python_name == "room"
    assert not resolved.is_basic_field


def test_has_default_resolver_tells_strawberry_reads_from_our_resolvers(
    schema: strawberry.Schema,
) -> None:
    fields = _lesson_type(schema).fields
    assert has_default_resolver(fields["subjectName"])
    assert has_default_resolver(fields["mark"])
    assert not has_default_resolver(fields["room"])


def test_enum_class_is_the_python_enum(schema: strawberry.Schema) -> None:
    mark = _lesson_type(schema).fields["mark"].type
    while not isinstance(mark, GraphQLEnumType):
        mark = mark.of_type  # the non-null wrapper
    assert enum_class(mark) is Mark
    assert set(mark.values) == {"GOOD", "POOR"}
    assert enum_class(GraphQLEnumType("Plain", {"A": 1})) is None


def _check_room_info(info: GraphQLResolveInfo[Any], schema: strawberry.Schema) -> None:
    """What the resolvers read from the raw info: the merged field nodes and fragments."""
    assert info.field_name == "room"
    assert [node.name.value for node in info.field_nodes] == ["room", "room"]
    assert set(info.fragments) == {"Where"}
    assert info.parent_type.name == "Lesson"
    assert info.path.as_list() == ["lesson", "room"]
    assert info.schema is core_schema(schema)


_QUERY = "{ lesson { subjectName mark room ...Where } } fragment Where on Lesson { room }"
_DATA = {"lesson": {"subjectName": "Алгебра", "mark": "GOOD", "room": "room of Алгебра"}}


def test_raw_info_under_strawberrys_execution_context(schema: strawberry.Schema) -> None:
    """strawberry's context (the gateway's SettlingExecutionContext is one) builds its
    own copy of graphql-core's tuple: raw_info must accept it."""
    _seen.clear()
    result = schema.execute_sync(_QUERY)
    assert result.errors is None
    assert result.data == _DATA
    assert len(_seen) == 1
    assert _seen[0]._fields[: len(GraphQLResolveInfo._fields)] == GraphQLResolveInfo._fields
    _check_room_info(_seen[0], schema)


def test_raw_info_under_the_gateways_execution_context(schema: strawberry.Schema) -> None:
    _seen.clear()
    result = graphql.execute_sync(
        core_schema(schema), graphql.parse(_QUERY), executor_class=SettlingExecutionContext
    )
    assert result.errors is None
    assert result.data == _DATA
    assert len(_seen) == 1
    _check_room_info(_seen[0], schema)


def test_raw_info_under_graphql_cores_execution_context(schema: strawberry.Schema) -> None:
    _seen.clear()
    result = graphql.execute_sync(core_schema(schema), graphql.parse(_QUERY))
    assert result.errors is None
    assert result.data == _DATA
    assert len(_seen) == 1
    assert isinstance(_seen[0], GraphQLResolveInfo)
    _check_room_info(_seen[0], schema)

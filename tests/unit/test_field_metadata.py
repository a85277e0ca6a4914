"""Field knowledge is declared on the served schema's fields and nowhere else.

The cost estimate, the response cache and the diary builder read list sizes, date
windows, cacheable root fields and loaded diary parts from field metadata
(`resolvers.common.fields`); these tests fail when a field is added without it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import strawberry
from graphql import GraphQLField, GraphQLObjectType, GraphQLSchema

from gateway.core.graphql_internals import core_schema
from gateway.execution.cost import SLICING_ARGUMENTS
from gateway.execution.schema import export_sdl, served_schema
from resolvers.common.fields import (
    field_window,
    is_cacheable_root,
    is_list_type,
    list_size,
    loaded_parts,
)
from resolvers.diary.queries import Query as FamilyQuery
from resolvers.diary.types import DiaryPart


@pytest.fixture(scope="module")
def schema() -> GraphQLSchema:
    return core_schema(served_schema())


def _object_fields(schema: GraphQLSchema) -> Iterator[tuple[str, str, GraphQLField]]:
    for type_name, named in schema.type_map.items():
        if type_name.startswith("__") or not isinstance(named, GraphQLObjectType):
            continue
        for field_name, field in named.fields.items():
            yield type_name, field_name, field


def _field(schema: GraphQLSchema, type_name: str, field_name: str) -> GraphQLField:
    named = schema.get_type(type_name)
    assert isinstance(named, GraphQLObjectType)
    field: GraphQLField = named.fields[field_name]
    return field


def test_every_list_field_is_sliced_or_declares_its_size(schema: GraphQLSchema) -> None:
    unsized = [
        f"{type_name}.{field_name}"
        for type_name, field_name, field in _object_fields(schema)
        if is_list_type(field.type)
        and not any(argument in field.args for argument in SLICING_ARGUMENTS)
        and list_size(field) is None
    ]
    assert unsized == [], (
        "list fields without `first`/`limit` must declare their size for the cost "
        "estimate: strawberry.field(metadata=sized(n)) (resolvers.common.fields)"
    )


def test_sizes_are_declared_on_lists_only(schema: GraphQLSchema) -> None:
    misplaced = [
        f"{type_name}.{field_name}"
        for type_name, field_name, field in _object_fields(schema)
        if list_size(field) is not None and not is_list_type(field.type)
    ]
    assert misplaced == []


def test_the_date_windows(schema: GraphQLSchema) -> None:
    windows = {
        f"{type_name}.{field_name}": window
        for type_name, field_name, field in _object_fields(schema)
        if (window := field_window(field)) is not None
    }
    assert set(windows) == {"Student.diary", "Student.averages"}
    assert windows["Student.averages"].max_days == 366
    assert windows["Student.diary"].max_days is None  # settings.max_diary_days
    per_day = _field(schema, "Diary", "lessons")
    size = list_size(per_day)
    assert size is not None and size.per_day == 8


def test_only_family_root_fields_are_cacheable(schema: GraphQLSchema) -> None:
    assert schema.query_type is not None
    cacheable = {name for name, f in schema.query_type.fields.items() if is_cacheable_root(f)}
    assert cacheable == {"viewer", "myChildren", "student"}
    family = core_schema(strawberry.Schema(query=FamilyQuery)).query_type
    assert family is not None and cacheable == set(family.fields)
    nested = [
        f"{type_name}.{field_name}"
        for type_name, field_name, field in _object_fields(schema)
        if type_name != "Query" and is_cacheable_root(field)
    ]
    assert nested == []


def test_every_diary_field_says_which_parts_it_needs(schema: GraphQLSchema) -> None:
    diary = schema.get_type("Diary")
    assert isinstance(diary, GraphQLObjectType)
    silent = [
        name
        for name, field in diary.fields.items()
        if name not in ("from", "to") and not loaded_parts(field)
    ]
    assert silent == [], "a Diary field must declare what it needs loaded: metadata=loads(...)"
    assert loaded_parts(diary.fields["lastUpdatedAt"]) == frozenset(DiaryPart)
    assert loaded_parts(_field(schema, "Lesson", "marks")) == {DiaryPart.MARKS}
    assert loaded_parts(_field(schema, "DiaryDay", "homeworkDue")) == {DiaryPart.HOMEWORK}


def test_metadata_never_prints_in_the_sdl() -> None:
    sdl = export_sdl()
    assert "school_gateway." not in sdl and "ListSize" not in sdl

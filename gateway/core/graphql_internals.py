"""The one door to strawberry's and graphql-core's non-public parts that the gateway uses.

Every reach into a library's private attribute goes through a function here, so an
upgrade that renames or removes one breaks this module (and tests/unit/test_graphql_internals.py)
loudly, in one place, instead of a resolver somewhere returning wrong data.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

import strawberry
from graphql import GraphQLEnumType, GraphQLField, GraphQLResolveInfo, GraphQLSchema
from strawberry.schema.schema_converter import CustomGraphQLEnumType, GraphQLCoreConverter
from strawberry.types.field import StrawberryField

__all__ = [
    "core_schema",
    "enum_class",
    "raw_info",
    "strawberry_field",
]


def core_schema(schema: strawberry.Schema) -> GraphQLSchema:
    """The graphql-core schema strawberry built (`Schema._schema`)."""
    built = schema._schema
    if not isinstance(built, GraphQLSchema):
        raise TypeError("strawberry.Schema._schema is no longer a graphql-core GraphQLSchema")
    return built


def raw_info(info: strawberry.Info[Any, Any]) -> GraphQLResolveInfo[Any]:
    """graphql-core's resolve info under strawberry's `Info` (`Info._raw_info`)."""
    raw = info._raw_info
    if not isinstance(raw, GraphQLResolveInfo):
        raise TypeError("strawberry.Info._raw_info is no longer a graphql-core GraphQLResolveInfo")
    return raw


def strawberry_field(field: GraphQLField) -> StrawberryField | None:
    """The strawberry field a graphql-core field was converted from, if any."""
    definition = field.extensions.get(GraphQLCoreConverter.DEFINITION_BACKREF)
    return definition if isinstance(definition, StrawberryField) else None


def enum_class(enum_type: GraphQLEnumType) -> type[Enum] | None:
    """The Python enum behind a strawberry enum type (None for a plain graphql-core one)."""
    if not isinstance(enum_type, CustomGraphQLEnumType):
        return None
    python_enum = enum_type.wrapped_cls
    if not (isinstance(python_enum, type) and issubclass(python_enum, Enum)):
        raise TypeError("CustomGraphQLEnumType.wrapped_cls is no longer a Python enum")
    return python_enum

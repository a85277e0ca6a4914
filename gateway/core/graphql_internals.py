"""The one door to strawberry's and graphql-core's non-public parts that the gateway uses.

Every reach into a library's private attribute goes through a function here, so an
upgrade that renames or removes one breaks this module (and tests/unit/test_graphql_internals.py)
loudly, in one place, instead of a resolver somewhere returning wrong data.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, Final

import strawberry
from graphql import GraphQLEnumType, GraphQLField, GraphQLResolveInfo, GraphQLSchema
from strawberry.resolvers import is_default_resolver
from strawberry.schema.schema_converter import CustomGraphQLEnumType, GraphQLCoreConverter
from strawberry.types.field import StrawberryField

__all__ = [
    "core_schema",
    "enum_class",
    "has_default_resolver",
    "raw_info",
    "strawberry_field",
]

_INFO_FIELDS: Final[tuple[str, ...]] = GraphQLResolveInfo._fields


def core_schema(schema: strawberry.Schema) -> GraphQLSchema:
    """The graphql-core schema strawberry built (`Schema._schema`)."""
    built = schema._schema
    if not isinstance(built, GraphQLSchema):
        raise TypeError("strawberry.Schema._schema is no longer a graphql-core GraphQLSchema")
    return built


def raw_info(info: strawberry.Info[Any, Any]) -> GraphQLResolveInfo[Any]:
    """graphql-core's resolve info under strawberry's `Info` (`Info._raw_info`).

    strawberry's execution context builds its own copy of graphql-core's named tuple (the
    same fields first, `operation_extensions` added), not a GraphQLResolveInfo instance.
    """
    raw = info._raw_info
    fields = getattr(type(raw), "_fields", ())
    if not isinstance(raw, GraphQLResolveInfo) and fields[: len(_INFO_FIELDS)] != _INFO_FIELDS:
        raise TypeError("strawberry.Info._raw_info no longer has GraphQLResolveInfo's fields")
    return raw


def strawberry_field(field: GraphQLField) -> StrawberryField | None:
    """The strawberry field a graphql-core field was converted from, if any."""
    definition = field.extensions.get(GraphQLCoreConverter.DEFINITION_BACKREF)
    return definition if isinstance(definition, StrawberryField) else None


def has_default_resolver(field: GraphQLField) -> bool:
    """True when strawberry resolves the field itself (no resolver of ours: `_is_default`)."""
    return field.resolve is not None and is_default_resolver(field.resolve)


def enum_class(enum_type: GraphQLEnumType) -> type[Enum] | None:
    """The Python enum behind a strawberry enum type (None for a plain graphql-core one)."""
    if not isinstance(enum_type, CustomGraphQLEnumType):
        return None
    python_enum = enum_type.wrapped_cls
    if not (isinstance(python_enum, type) and issubclass(python_enum, Enum)):
        raise TypeError("CustomGraphQLEnumType.wrapped_cls is no longer a Python enum")
    return python_enum

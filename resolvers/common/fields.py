"""What the gateway's machinery knows about a field, declared on the field itself.

A type declares it with `strawberry.field(metadata=...)` built by the helpers here (list
sizes and date windows for the cost estimate, cacheable root fields for the response
cache, `loads` for a resolver that loads only the parts its selection needs). The
consumers read it back from the served graphql-core schema with the readers here, so
adding a field is one edit next to its type. Metadata never prints in the SDL.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType
from typing import Final

from graphql import GraphQLField, GraphQLList, GraphQLNamedType, GraphQLNonNull, GraphQLOutputType

from gateway.core.graphql_internals import strawberry_field

__all__ = [
    "ListSize",
    "Metadata",
    "Window",
    "cacheable",
    "field_definition",
    "field_window",
    "is_cacheable_root",
    "is_list_type",
    "list_size",
    "loaded_parts",
    "loads",
    "sized",
    "window",
]

_LIST_SIZE: Final = "school_gateway.list_size"
_WINDOW: Final = "school_gateway.window"
_CACHEABLE: Final = "school_gateway.cacheable"
_LOADS: Final = "school_gateway.loads"
_NONE: Final[Mapping[str, object]] = MappingProxyType({})

Metadata = dict[str, object]


@dataclass(frozen=True, slots=True)
class ListSize:
    """The bound of a list field (the `@listSize(assumedSize:)` of the IBM cost spec):
    `per_day` × window days inside a date window, else `assumed`."""

    assumed: int
    per_day: float | None = None


@dataclass(frozen=True, slots=True)
class Window:
    """A field whose date range (`from`, `to`) sizes the lists below it, in days."""

    default_days: int  # neither bound given
    single_days: int  # one bound given
    max_days: int | None  # None: settings.max_diary_days


# --- declaring ---------------------------------------------------------------------------


def sized(assumed: int, *, per_day: float | None = None) -> Metadata:
    """A list field of about `assumed` items (`per_day` of them a day inside a window)."""
    return {_LIST_SIZE: ListSize(assumed, per_day)}


def window(*, default_days: int, single_days: int, max_days: int | None = None) -> Metadata:
    """A field whose `from`/`to` arguments open a date window for the lists below it."""
    return {_WINDOW: Window(default_days, single_days, max_days)}


def cacheable() -> Metadata:
    """A root field whose answer depends only on the viewer and on journal data read
    through the scope-checked student loaders: the response cache may keep it."""
    return {_CACHEABLE: True}


def loads(*parts: Enum) -> Metadata:
    """A field below a resolver that loads only what is selected: these parts must be
    loaded when the field is selected (e.g. `Diary.marks` needs the diary's marks)."""
    return {_LOADS: frozenset(parts)}


# --- reading (from the served graphql-core schema) ---------------------------------------


def _metadata(field: GraphQLField) -> Mapping[str, object]:
    definition = strawberry_field(field)
    return _NONE if definition is None else definition.metadata


def list_size(field: GraphQLField) -> ListSize | None:
    """The declared size of a list field (None: not declared)."""
    size = _metadata(field).get(_LIST_SIZE)
    return size if isinstance(size, ListSize) else None


def field_window(field: GraphQLField) -> Window | None:
    """The date window the field opens, if it opens one."""
    opened = _metadata(field).get(_WINDOW)
    return opened if isinstance(opened, Window) else None


def is_cacheable_root(field: GraphQLField) -> bool:
    """Whether the response cache may keep answers of this root field."""
    return _metadata(field).get(_CACHEABLE) is True


def loaded_parts(field: GraphQLField) -> frozenset[Enum]:
    """The parts (see `loads`) the field needs loaded; empty when it needs none."""
    parts = _metadata(field).get(_LOADS)
    return parts if isinstance(parts, frozenset) else frozenset()


def field_definition(parent: GraphQLNamedType, name: str) -> GraphQLField | None:
    """The field `name` of an object or interface type; None for introspection fields,
    unknown names and types without fields (scalars, enums, unions)."""
    fields = getattr(parent, "fields", None)
    if not isinstance(fields, Mapping):
        return None
    field = fields.get(name)
    return field if isinstance(field, GraphQLField) else None


def is_list_type(field_type: GraphQLOutputType) -> bool:
    """A list, nullable or not."""
    inner = field_type.of_type if isinstance(field_type, GraphQLNonNull) else field_type
    return isinstance(inner, GraphQLList)

"""The compiled plan of an operation: what the compiler builds, codegen and the runner read."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from graphql import FieldNode, GraphQLField, GraphQLObjectType, GraphQLOutputType
from graphql.execution.collect_fields import FieldDetails

SyncCompleter = Callable[[Any], Any]


@dataclass(slots=True, eq=False)
class ResolvedField:
    """A field that keeps its resolver: called like graphql-core calls it."""

    key: str
    field_def: GraphQLField
    details: list[FieldDetails]
    nodes: tuple[FieldNode, ...]
    takes_arguments: bool
    value: ValuePlan


@dataclass(slots=True, eq=False)
class ReadField:
    """A field that reads an attribute of its source object (strawberry's default)."""

    key: str
    attribute: str
    value: ValuePlan


@dataclass(slots=True, eq=False)
class ObjectPlan:
    """The fields selected on an object type, in response order.

    `complete` is set when no field below needs a resolver: it builds the whole
    response dict of a source object synchronously.
    """

    type: GraphQLObjectType
    keys: tuple[str, ...]
    typename_keys: tuple[str, ...]
    read_fields: tuple[ReadField, ...]
    resolved_fields: tuple[ResolvedField, ...]
    complete: SyncCompleter | None = None


@dataclass(slots=True, eq=False)
class ValuePlan:
    """How a value of a field's type is completed.

    `wrappers` are the type's non-null and list wrappers, outermost first ("non_null",
    "list"); `objects` is the plan of the object type inside them, if any. `complete`
    is set for synchronous completion (leaves, synchronous objects and lists of them).
    """

    type: GraphQLOutputType
    complete: SyncCompleter | None
    wrappers: tuple[str, ...]
    objects: ObjectPlan | None = None

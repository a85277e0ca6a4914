"""The fields a resolver's selection asks for, at any depth: the one walk over the document.

Read straight from the document, with each field's schema definition: the merged field
nodes of the resolved field (every occurrence under one response key), through inline
fragments and named fragments (each fragment walked once). Directives are not evaluated:
a field under `@skip` still counts, as in strawberry's `info.selected_fields`, without
building its selection objects on every call.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from enum import Enum
from typing import Any, Generic, TypeVar

import strawberry
from graphql import (
    FieldNode,
    FragmentSpreadNode,
    GraphQLField,
    GraphQLNamedType,
    InlineFragmentNode,
    SelectionSetNode,
    get_named_type,
)

from gateway.core.graphql_internals import raw_info
from resolvers.common.fields import field_definition, loaded_parts

__all__ = ["SelectionMemo", "parts_selected", "selected_fields"]

V = TypeVar("V")
P = TypeVar("P", bound=Enum)


def selected_fields(
    info: strawberry.Info[Any, Any],
) -> Iterator[tuple[str, str, GraphQLField]]:
    """(type name, field name, definition) of every field selected below the resolved one.

    Introspection fields (`__typename`) are left out; a field selected twice is given twice.
    """
    raw = raw_info(info)
    schema, fragments = raw.schema, raw.fragments
    parent = get_named_type(raw.return_type)
    pending: list[tuple[GraphQLNamedType, SelectionSetNode | None]] = [
        (parent, node.selection_set) for node in raw.field_nodes
    ]
    walked: set[str] = set()
    while pending:
        parent, selection_set = pending.pop()
        for selection in selection_set.selections if selection_set else ():
            if isinstance(selection, FieldNode):
                name = selection.name.value
                definition = field_definition(parent, name)
                if definition is None:
                    continue
                yield parent.name, name, definition
                if selection.selection_set is not None:
                    pending.append((get_named_type(definition.type), selection.selection_set))
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                target = schema.get_type(condition.name.value) if condition else parent
                pending.append((target or parent, selection.selection_set))
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = fragments.get(name)
                if fragment is None or name in walked:
                    continue
                walked.add(name)
                target = schema.get_type(fragment.type_condition.name.value)
                pending.append((target or parent, fragment.selection_set))


def parts_selected(info: strawberry.Info[Any, Any], kind: type[P]) -> frozenset[P]:
    """The parts of `kind` that the fields selected below the resolved one declare they
    need loaded (`resolvers.common.fields.loads`)."""
    parts: set[P] = set()
    for _, _, definition in selected_fields(info):
        parts.update(part for part in loaded_parts(definition) if isinstance(part, kind))
    return frozenset(parts)


class SelectionMemo(Generic[V]):
    """What a resolver derives from its selection alone, kept per parsed document.

    Parsed documents are cached and reused, so the field nodes of a field are the same
    objects on every request with that text: the value is kept under their identities
    (checked through weak references, so a node freed and its id reused never matches)
    and computed once per document instead of walking the selection on every call.
    At most `limit` entries; when full it starts afresh (documents change rarely).
    """

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._entries: dict[tuple[int, ...], tuple[tuple[weakref.ref[FieldNode], ...], V]] = {}

    def get(self, info: strawberry.Info[Any, Any], compute: Callable[[], V]) -> V:
        """The value for this field's nodes, computed by `compute()` on a miss."""
        nodes = raw_info(info).field_nodes
        key = tuple(map(id, nodes))
        entry = self._entries.get(key)
        if entry is not None and all(
            ref() is node for ref, node in zip(entry[0], nodes, strict=True)
        ):
            return entry[1]
        value = compute()
        if len(self._entries) >= self._limit:
            self._entries.clear()
        self._entries[key] = (tuple(weakref.ref(node) for node in nodes), value)
        return value

"""The fields a resolver's selection asks for, at any depth: the one walk over the document.

Read straight from the document, with each field's schema definition: the merged field
nodes of the resolved field (every occurrence under one response key), through inline
fragments and named fragments (each fragment walked once). Directives are not evaluated:
a field under `@skip` still counts, as in strawberry's `info.selected_fields`, without
building its selection objects on every call.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

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
from resolvers.common.fields import field_definition

__all__ = ["selected_fields", "selects"]


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


def selects(info: strawberry.Info[Any, Any], type_name: str, field_name: str) -> bool:
    """Whether the resolved field's selection asks for `type_name.field_name` at any depth."""
    return any(
        (parent, name) == (type_name, field_name) for parent, name, _ in selected_fields(info)
    )

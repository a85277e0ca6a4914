"""resolvers.common.selection.SelectionMemo: derived once per parsed document, never across."""

from __future__ import annotations

from typing import Any

import strawberry
from graphql import DocumentNode, execute_sync, parse

from gateway.core.graphql_internals import core_schema
from resolvers.common.selection import SelectionMemo, selected_fields

_memo: SelectionMemo[frozenset[str]] = SelectionMemo(limit=2)
_computed: list[frozenset[str]] = []
_answers: list[frozenset[str]] = []


def _names(info: strawberry.Info[Any, Any]) -> frozenset[str]:
    names = frozenset(name for _, name, _ in selected_fields(info))
    _computed.append(names)
    return names


def resolve_item(info: strawberry.Info[Any, Any]) -> Item:
    _answers.append(_memo.get(info, lambda: _names(info)))
    return Item(a=1, b=2)


@strawberry.type
class Item:
    a: int
    b: int


@strawberry.type
class Query:
    item: Item = strawberry.field(resolver=resolve_item)


SCHEMA = core_schema(strawberry.Schema(query=Query))


def _run(document: DocumentNode) -> None:
    result = execute_sync(SCHEMA, document)
    assert result.errors is None, result.errors


def setup_function() -> None:
    _memo._entries.clear()
    _computed.clear()
    _answers.clear()


def test_the_same_parsed_document_is_walked_once() -> None:
    document = parse("{ item { a } }")
    for _ in range(3):
        _run(document)
    assert _computed == [frozenset({"a"})]
    assert _answers == [frozenset({"a"})] * 3


def test_another_document_is_walked_again_even_with_the_same_text() -> None:
    _run(parse("{ item { a } }"))
    _run(parse("{ item { b } }"))
    _run(parse("{ item { a } }"))
    assert _computed == [frozenset({"a"}), frozenset({"b"}), frozenset({"a"})]
    assert _answers == _computed


def test_the_memo_is_bounded() -> None:
    documents = [parse("{ item { a } }") for _ in range(5)]
    for document in documents:
        _run(document)
    assert len(_memo._entries) <= 2
    assert len(_computed) == 5

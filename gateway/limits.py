"""Query limits: tokens (at parse time), depth and aliases (validation rules), introspection.

Each limit fails with its own `extensions.code` and a Russian message, before any
resolver runs. The rules are plain graphql-core validation rules; the HTTP endpoint runs
them once per distinct query text (its document cache), not once per request.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from graphql import (
    DocumentNode,
    ExecutableDefinitionNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLSchema,
    GraphQLSyntaxError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    parse,
    specified_rules,
    validate,
)
from graphql.validation import ASTValidationRule, NoSchemaIntrospectionCustomRule

from gateway.errors import MESSAGES, ErrorCode
from gateway.settings import Settings

# Characters allowed per token on average before the source itself is refused: long
# string literals are fine, megabytes of text are not.
_SOURCE_CHARS_PER_TOKEN = 64
_LIMIT_PREFIXES = ("Document contains more than", "Source contains more than")


def parse_query(query: str, settings: Settings) -> DocumentNode:
    """Parse a GraphQL document; errors carry GRAPHQL_PARSE_FAILED or TOO_MANY_TOKENS."""
    try:
        return parse(
            query,
            max_lexical_tokens=settings.max_tokens,
            max_comments=settings.max_tokens,
            max_source_length=settings.max_tokens * _SOURCE_CHARS_PER_TOKEN,
        )
    except GraphQLSyntaxError as error:
        if error.description.startswith(_LIMIT_PREFIXES):
            raise GraphQLError(
                f"{MESSAGES[ErrorCode.TOO_MANY_TOKENS]} Допустимо не более "
                f"{settings.max_tokens} лексем.",
                extensions={"code": ErrorCode.TOO_MANY_TOKENS.value},
            ) from None
        raise GraphQLError(
            f"{MESSAGES[ErrorCode.GRAPHQL_PARSE_FAILED]} {error.message}",
            source=error.source,
            positions=error.positions,
            extensions={"code": ErrorCode.GRAPHQL_PARSE_FAILED.value},
        ) from None


def validate_query(
    schema: GraphQLSchema, document: DocumentNode, settings: Settings
) -> list[GraphQLError]:
    """All specification rules plus the gateway's limits; schema hints hidden with introspection."""
    return validate(
        schema,
        document,
        validation_rules(settings),
        hide_suggestions=not settings.introspection,
    )


def validation_rules(settings: Settings) -> tuple[type[ASTValidationRule], ...]:
    """The rule set for these settings (limits first: they are cheap and decisive)."""
    rules: list[type[ASTValidationRule]] = [
        depth_limit_rule(settings.max_query_depth),
        alias_limit_rule(settings.max_aliases),
    ]
    if not settings.introspection:
        rules.append(NoIntrospectionRule)
    return (*rules, *specified_rules)


def depth_limit_rule(max_depth: int) -> type[ASTValidationRule]:
    """A rule refusing operations nested deeper than `max_depth` fields (QUERY_TOO_DEEP)."""

    class QueryDepthRule(ASTValidationRule):
        def enter_operation_definition(self, node: OperationDefinitionNode, *_args: Any) -> None:
            depth = _DepthMeter(self.context.document).depth(node.selection_set)
            if depth > max_depth:
                self.report_error(
                    GraphQLError(
                        f"{MESSAGES[ErrorCode.QUERY_TOO_DEEP]} Глубина {depth}, "
                        f"допустимо не более {max_depth}.",
                        node,
                        extensions={"code": ErrorCode.QUERY_TOO_DEEP.value, "maxDepth": max_depth},
                    )
                )

    return QueryDepthRule


def alias_limit_rule(max_aliases: int) -> type[ASTValidationRule]:
    """A rule refusing documents with more than `max_aliases` aliases (TOO_MANY_ALIASES)."""

    class AliasLimitRule(ASTValidationRule):
        def enter_document(self, node: DocumentNode, *_args: Any) -> None:
            count = sum(1 for field in _all_fields(node) if field.alias is not None)
            if count > max_aliases:
                self.report_error(
                    GraphQLError(
                        f"{MESSAGES[ErrorCode.TOO_MANY_ALIASES]} Псевдонимов {count}, "
                        f"допустимо не более {max_aliases}.",
                        extensions={
                            "code": ErrorCode.TOO_MANY_ALIASES.value,
                            "maxAliases": max_aliases,
                        },
                    )
                )

    return AliasLimitRule


class NoIntrospectionRule(NoSchemaIntrospectionCustomRule):
    """Introspection switched off by settings: the error names the field, in Russian."""

    def report_error(self, error: GraphQLError) -> None:
        super().report_error(
            GraphQLError(
                "Интроспекция схемы отключена.",
                error.nodes,
                extensions={"code": ErrorCode.GRAPHQL_VALIDATION_FAILED.value},
            )
        )


class _DepthMeter:
    """Depth of the deepest field of an operation, following fragments (each measured once).

    Introspection fields (`__schema`, `__type`, `__typename`) are not counted: they are
    governed by the introspection setting, and GraphiQL's own query is deep.
    """

    def __init__(self, document: DocumentNode) -> None:
        self._fragments = {
            definition.name.value: definition
            for definition in document.definitions
            if isinstance(definition, FragmentDefinitionNode)
        }
        self._fragment_depths: dict[str, int] = {}
        self._in_progress: set[str] = set()

    def depth(self, selection_set: SelectionSetNode | None) -> int:
        if selection_set is None:
            return 0
        deepest = 0
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                if selection.name.value.startswith("__"):
                    continue
                depth = 1 + self.depth(selection.selection_set)
            elif isinstance(selection, InlineFragmentNode):
                depth = self.depth(selection.selection_set)
            elif isinstance(selection, FragmentSpreadNode):
                depth = self._fragment_depth(selection.name.value)
            else:
                continue
            deepest = max(deepest, depth)
        return deepest

    def _fragment_depth(self, name: str) -> int:
        known = self._fragment_depths.get(name)
        if known is not None:
            return known
        fragment = self._fragments.get(name)
        if fragment is None or name in self._in_progress:
            return 0  # unknown fragments and cycles are other rules' errors
        self._in_progress.add(name)
        depth = self.depth(fragment.selection_set)
        self._in_progress.discard(name)
        self._fragment_depths[name] = depth
        return depth


def _all_fields(document: DocumentNode) -> Iterator[FieldNode]:
    stack: list[SelectionSetNode] = [
        definition.selection_set
        for definition in document.definitions
        if isinstance(definition, ExecutableDefinitionNode)
    ]
    while stack:
        selection_set = stack.pop()
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                yield selection
            if isinstance(selection, FieldNode | InlineFragmentNode) and selection.selection_set:
                stack.append(selection.selection_set)

"""Query limits: tokens (at parse time), then depth, aliases and size (fields and fragment
spreads) before any other validation rule, and a work budget for field merging.

Each limit fails with its own `extensions.code` and a Russian message, before any
resolver runs. The limit rules are plain graphql-core validation rules, linear in the
document's size; the specification's rules run only on a document within the limits,
so the one rule whose work can grow quadratically (OverlappingFieldsCanBeMerged: every
pair of fields with one response name is compared) sees at most `max_fields`
selections, and it runs on a budget of `FIELD_MERGING_UNITS_PER_FIELD` × `max_fields`
units of graphql-core's own complexity meter (about a microsecond each). A document
over either is refused with QUERY_TOO_COMPLEX. The HTTP endpoint runs all this once per
distinct query text (its document cache), not once per request.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from functools import cache
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
    NameNode,
    OperationDefinitionNode,
    SelectionNode,
    SelectionSetNode,
    Token,
    parse,
    specified_rules,
    validate,
)
from graphql.validation import (
    ASTValidationRule,
    NoSchemaIntrospectionCustomRule,
    OverlappingFieldsCanBeMergedRule,
    ValidationContext,
)
from graphql.validation.validate import ValidationAbortedError

from gateway.core.errors import MESSAGES, ErrorCode
from gateway.core.settings import Settings

# Characters allowed per token on average before the source itself is refused: long
# string literals are fine, megabytes of text are not.
_SOURCE_CHARS_PER_TOKEN = 64
_LIMIT_PREFIXES = ("Document contains more than", "Source contains more than")
# Units of graphql-core's field-merging meter a document may spend per allowed field.
FIELD_MERGING_UNITS_PER_FIELD = 20
# Memory of a parsed document per lexical token: its token, AST node and location objects,
# with room for the compiled and cost plans built from it (measured with tracemalloc:
# 450-550 bytes a token for the document alone).
BYTES_PER_TOKEN = 1024
DOCUMENT_OVERHEAD = 48 << 10


def max_source_chars(settings: Settings) -> int:
    """The longest query text parsed at all (longer ones are TOO_MANY_TOKENS unread)."""
    return settings.max_tokens * _SOURCE_CHARS_PER_TOKEN


def _too_many_tokens(settings: Settings) -> GraphQLError:
    return GraphQLError(
        f"{MESSAGES[ErrorCode.TOO_MANY_TOKENS]} Допустимо не более {settings.max_tokens} лексем.",
        extensions={"code": ErrorCode.TOO_MANY_TOKENS.value},
    )


def parse_query(query: str, settings: Settings) -> DocumentNode:
    """Parse a GraphQL document; errors carry GRAPHQL_PARSE_FAILED or TOO_MANY_TOKENS."""
    try:
        return parse(
            query,
            max_lexical_tokens=settings.max_tokens,
            max_comments=settings.max_tokens,
            max_source_length=max_source_chars(settings),
        )
    except GraphQLSyntaxError as error:
        if error.description.startswith(_LIMIT_PREFIXES):
            raise _too_many_tokens(settings) from None
        raise GraphQLError(
            MESSAGES[ErrorCode.GRAPHQL_PARSE_FAILED],
            source=error.source,
            positions=error.positions,
            extensions={"code": ErrorCode.GRAPHQL_PARSE_FAILED.value, "detail": error.message},
        ) from None


def validate_query(
    schema: GraphQLSchema, document: DocumentNode, settings: Settings
) -> list[GraphQLError]:
    """The gateway's limits, then (within them) every specification rule; schema hints
    hidden with introspection."""
    errors = validate(schema, document, limit_rules(settings))
    if errors:
        return errors
    try:
        return validate(
            schema,
            document,
            specification_rules(settings),
            hide_suggestions=not settings.introspection,
        )
    except _FieldMergingBudgetSpent:
        return [_too_complex("Слишком много одноимённых полей и фрагментов для проверки.")]


def limit_rules(settings: Settings) -> tuple[type[ASTValidationRule], ...]:
    """The gateway's limits: linear in the document's size, cheap and decisive."""
    return (
        depth_limit_rule(settings.max_query_depth),
        alias_limit_rule(settings.max_aliases),
        size_limit_rule(settings.max_fields),
    )


def specification_rules(settings: Settings) -> tuple[type[ASTValidationRule], ...]:
    """graphql-core's rules, field merging on a budget; introspection off if so set."""
    merging = field_merging_rule(settings.max_fields * FIELD_MERGING_UNITS_PER_FIELD)
    rules = [
        merging if rule is OverlappingFieldsCanBeMergedRule else rule for rule in specified_rules
    ]
    if not settings.introspection:
        rules.insert(0, NoIntrospectionRule)
    return tuple(rules)


@cache  # one class per limit value, not one per validation
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


@cache  # one class per limit value, not one per validation
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


@cache  # one class per limit value, not one per validation
def size_limit_rule(max_fields: int) -> type[ASTValidationRule]:
    """A rule refusing documents with more than `max_fields` fields and fragment spreads
    (QUERY_TOO_COMPLEX), each counted where it is written."""

    class SizeLimitRule(ASTValidationRule):
        def enter_document(self, node: DocumentNode, *_args: Any) -> None:
            count = _selection_count(node)
            if count > max_fields:
                self.report_error(
                    _too_complex(
                        f"Полей и фрагментов {count}, допустимо не более {max_fields}.",
                        maxFields=max_fields,
                    )
                )

    return SizeLimitRule


class _FieldMergingBudgetSpent(Exception):
    """The field-merging rule used up its budget: the document is refused, unfinished."""


@cache  # one class per limit value, not one per validation
def field_merging_rule(budget: int) -> type[ASTValidationRule]:
    """graphql-core's OverlappingFieldsCanBeMerged with `budget` units of its meter."""

    class BudgetedFieldMergingRule(OverlappingFieldsCanBeMergedRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            self.rule_context.remaining_complexity_budget = budget

        def enter_selection_set(self, *args: Any) -> None:
            try:
                super().enter_selection_set(*args)
            except ValidationAbortedError:
                if self.rule_context.remaining_complexity_budget >= 0:
                    raise  # the error limit, not the budget: graphql-core reports it
                raise _FieldMergingBudgetSpent from None

    return BudgetedFieldMergingRule


def _too_complex(detail: str, **extensions: Any) -> GraphQLError:
    return GraphQLError(
        f"{MESSAGES[ErrorCode.QUERY_TOO_COMPLEX]} {detail}",
        extensions={"code": ErrorCode.QUERY_TOO_COMPLEX.value, **extensions},
    )


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


def _all_selections(document: DocumentNode) -> Iterator[SelectionNode]:
    """Every selection written in the document (fragments not expanded), without recursion."""
    stack: list[SelectionSetNode] = [
        definition.selection_set
        for definition in document.definitions
        if isinstance(definition, ExecutableDefinitionNode)
    ]
    while stack:
        selection_set = stack.pop()
        for selection in selection_set.selections:
            yield selection
            if isinstance(selection, FieldNode | InlineFragmentNode) and selection.selection_set:
                stack.append(selection.selection_set)


def _all_fields(document: DocumentNode) -> Iterator[FieldNode]:
    return (s for s in _all_selections(document) if isinstance(s, FieldNode))


def _selection_count(document: DocumentNode) -> int:
    """Fields and fragment spreads written in the document (fragments not expanded)."""
    return sum(1 for s in _all_selections(document) if not isinstance(s, InlineFragmentNode))


def document_bytes(document: DocumentNode) -> int:
    """An upper estimate of the memory a parsed document holds: its text twice (the
    source, and token values copied from it) and its tokens with their nodes."""
    location = document.loc
    if location is None:
        return DOCUMENT_OVERHEAD
    tokens = 0
    token: Token | None = location.start_token
    while token is not None:
        tokens += 1
        token = token.next
    text = 2 * sys.getsizeof(location.source.body)
    return DOCUMENT_OVERHEAD + text + BYTES_PER_TOKEN * tokens


def operations_only(document: DocumentNode) -> DocumentNode:
    """The document's operations by name and type, without selections or locations: what
    choosing the operation of a refused document needs, without keeping its text."""
    return DocumentNode(
        definitions=tuple(
            OperationDefinitionNode(
                operation=definition.operation,
                name=None if definition.name is None else NameNode(value=definition.name.value),
                variable_definitions=(),
                directives=(),
                selection_set=SelectionSetNode(selections=()),
            )
            for definition in document.definitions
            if isinstance(definition, OperationDefinitionNode)
        )
    )

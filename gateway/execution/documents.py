"""Query texts parsed and validated once, in a cache bounded by entries and by bytes.

Each distinct text is parsed and validated once (`gateway.execution.limits`), and the result is
kept under a fixed-size digest of the text (`gateway.core.bounded_cache`), least recently
used out: a valid document with its estimated size (`document_bytes`: its AST holds its
text), a refused one only as its errors and its operations' names and types
(`operations_only`: what choosing the operation needs), and only when that is small. A
text longer than the parser accepts is refused before it is lexed. So what any client
can pin here is bounded in bytes, whatever it sends.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import orjson
from graphql import DocumentNode, GraphQLError
from strawberry.schema import Schema as StrawberrySchema

from gateway.core.bounded_cache import BoundedCache, BoundedMemo
from gateway.core.errors import MESSAGES, ErrorCode
from gateway.core.graphql_internals import core_schema
from gateway.core.settings import Settings
from gateway.execution.limits import document_bytes, operations_only, parse_query, validate_query
from gateway.execution.runner import PlanCache

DOCUMENT_CACHE_SIZE: Final = 1024
DOCUMENT_CACHE_BYTES: Final = 64 << 20
MAX_REFUSED_BYTES: Final = 4 << 10  # a refused document is remembered only this small
REFUSED_BYTES_PER_OPERATION: Final = 256

Formatted = dict[str, Any]


@dataclass(frozen=True, slots=True)
class PreparedDocument:
    """A query text parsed and validated once: the document, or the errors to report.

    `plans` holds the document's compiled plans (built on first execution).
    """

    document: DocumentNode | None
    errors: tuple[Formatted, ...]
    plans: PlanCache | None = None


class DocumentCache:
    """Parse + validate each distinct query text once; bounded by entries and by bytes.

    Kept under a digest of the text (least recently used out): a valid document with its
    estimated size (`document_bytes`: its AST holds its text); a refused one only as its
    errors and its operations' names (`operations_only`), and only when that is small.
    """

    def __init__(
        self,
        schema: StrawberrySchema,
        settings: Settings,
        *,
        max_entries: int = DOCUMENT_CACHE_SIZE,
        max_bytes: int = DOCUMENT_CACHE_BYTES,
    ) -> None:
        self._core = core_schema(schema)
        self._settings = settings
        cache: BoundedCache[bytes, PreparedDocument] = BoundedCache(max_entries, max_bytes)
        self.prepare = BoundedMemo(self._prepare, _document_size, cache)

    def _prepare(self, query: str) -> PreparedDocument:
        try:
            document = parse_query(query, self._settings)
        except GraphQLError as error:
            return PreparedDocument(document=None, errors=(dict(error.formatted),))
        errors = validate_query(self._core, document, self._settings)
        if errors:
            coded = (coded_error(error, ErrorCode.GRAPHQL_VALIDATION_FAILED) for error in errors)
            return PreparedDocument(document=operations_only(document), errors=tuple(coded))
        return PreparedDocument(document=document, errors=(), plans=PlanCache(document))


def _document_size(_query: str, prepared: PreparedDocument) -> int | None:
    """The bytes a prepared document holds; None (not kept) for a big refusal."""
    if not prepared.errors and prepared.document is not None:
        return document_bytes(prepared.document)
    operations = 0 if prepared.document is None else len(prepared.document.definitions)
    size = len(orjson.dumps(prepared.errors)) + REFUSED_BYTES_PER_OPERATION * operations
    return size if size <= MAX_REFUSED_BYTES else None


def coded_error(error: GraphQLError, code: ErrorCode) -> Formatted:
    """The error as sent, unless it has a code already: the Russian message of `code` for
    the user, graphql-core's English text (what and where exactly) as `extensions.detail`
    for the client's developer."""
    formatted: Formatted = dict(error.formatted)
    extensions = dict(formatted.get("extensions") or {})
    if "code" not in extensions:
        extensions["code"] = code.value
        extensions["detail"] = error.message
        formatted["message"] = MESSAGES[code]
    formatted["extensions"] = extensions
    return formatted

"""The GraphQL-over-HTTP protocol (https://graphql.github.io/graphql-over-http/draft/).

Media-type negotiation, reading a request's GraphQL parameters, and JSON responses:

- POST `application/json` {query, variables, operationName, extensions}; GET with the
  same as query parameters (the endpoint allows only queries via GET).
- Persisted documents instead of `query` (looked up by `gateway.http.persisted`):
  `documentId` ("sha256:<hex>" or the bare hex; the draft's appendix on persisted
  documents) or `extensions.persistedQuery = {version: 1, sha256Hash}` (Apollo's
  automatic persisted queries, with or without `query`). Only their shape is checked
  here (`RequestParameters`); every check is linear in the request's size.
- The response type is negotiated from `Accept`: `application/graphql-response+json`
  when the client names it (preferred), `application/json` when the client names only
  that, a wildcard or nothing (as the spec's audit suite asks); neither → 406.
- A request that is not well-formed GraphQL-over-HTTP → 400 (413 when the body is too
  big, 415 for a body that is not JSON). With graphql-response+json a request that
  never reaches execution → 400 and no `data` key; with application/json → 200.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, Final

import orjson
from starlette.requests import Request
from starlette.responses import Response

from gateway.core.errors import ErrorCode, HttpError

JSON: Final = "application/json"
GRAPHQL_RESPONSE_JSON: Final = "application/graphql-response+json"
MAX_BODY_BYTES: Final = 1 << 20
# Variables and extensions nest at most this deep: the schema's inputs need a few levels;
# deeper JSON only costs recursion in coercion and key hashing.
MAX_JSON_DEPTH: Final = 32
SHA256_HEX_CHARS: Final = 64
_HEX_DIGITS: Final = frozenset("0123456789abcdef")
DOCUMENT_ID_PREFIX: Final = "sha256:"
APQ_VERSION: Final = 1

Formatted = dict[str, Any]


@dataclass(frozen=True, slots=True)
class GraphQLRequest:
    """A well-formed GraphQL-over-HTTP request, its document's text known."""

    query: str
    operation_name: str | None
    variables: dict[str, Any] | None
    extensions: dict[str, Any] | None
    # The SHA-256 (lower-case hex) under which `query`, once it validates, is kept for
    # later requests by hash (automatic persisted queries); None: nothing to keep.
    persist_as: str | None = None


@dataclass(frozen=True, slots=True)
class RequestParameters:
    """What a well-formed request sent: a query text, or a persisted document's hash
    (lower-case hex SHA-256), or both (an APQ registration); see `gateway.http.persisted`."""

    query: str | None
    document_id: str | None  # `documentId`: a registered (build-time) document
    persisted_hash: str | None  # `extensions.persistedQuery.sha256Hash`
    operation_name: str | None
    variables: dict[str, Any] | None
    extensions: dict[str, Any] | None

    def with_query(self, query: str, *, persist_as: str | None = None) -> GraphQLRequest:
        """The request to run, with its document's text."""
        return GraphQLRequest(
            query=query,
            operation_name=self.operation_name,
            variables=self.variables,
            extensions=self.extensions,
            persist_as=persist_as,
        )


# --- content negotiation -----------------------------------------------------------


def negotiate(accept: str | None) -> str | None:
    """The response media type for an `Accept` header, or None when nothing we offer fits."""
    if accept is None or not accept.strip():
        return JSON
    json_q, _ = _acceptance(accept, JSON)
    graphql_q, graphql_named = _acceptance(accept, GRAPHQL_RESPONSE_JSON)
    if json_q <= 0 and graphql_q <= 0:
        return None
    if json_q != graphql_q:
        return JSON if json_q > graphql_q else GRAPHQL_RESPONSE_JSON
    return GRAPHQL_RESPONSE_JSON if graphql_named else JSON


def accepts_html(accept: str | None) -> bool:
    """True when a browser asks for a page (GraphiQL)."""
    return accept is not None and _acceptance(accept, "text/html") == (1.0, True)


def _acceptance(accept: str, media_type: str) -> tuple[float, bool]:
    """(quality, named explicitly) of `media_type`, from the most specific matching range."""
    main_type = media_type.split("/", 1)[0]
    best: tuple[int, float] = (-1, 0.0)
    for item in accept.split(","):
        parts = [part.strip() for part in item.split(";")]
        candidate = parts[0].lower()
        if candidate == media_type:
            specificity = 2
        elif candidate == f"{main_type}/*":
            specificity = 1
        elif candidate == "*/*":
            specificity = 0
        else:
            continue
        if specificity > best[0]:
            best = (specificity, _quality(parts[1:]))
    return best[1], best[0] == 2


def _quality(params: Iterable[str]) -> float:
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "q":
            try:
                quality = float(value.strip())
            except ValueError:
                return 0.0
            return quality if 0.0 <= quality <= 1.0 else 0.0
    return 1.0


# --- reading the request -----------------------------------------------------------


async def read_graphql_request(request: Request) -> RequestParameters:
    """The GraphQL parameters of a GET or POST request; HttpError when not well-formed."""
    if request.method == "GET":
        params = request.query_params
        return _graphql_request(
            query=params.get("query"),
            document_id=params.get("documentId"),
            operation_name=params.get("operationName") or None,
            variables=_json_param(params.get("variables"), "variables"),
            extensions=_json_param(params.get("extensions"), "extensions"),
        )
    _check_content_type(request.headers.get("content-type"))
    body = await _read_body(request)
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise HttpError(400, ErrorCode.BAD_REQUEST, "Тело запроса не является JSON.") from None
    if not isinstance(payload, dict):
        raise HttpError(400, ErrorCode.BAD_REQUEST, "Тело запроса должно быть объектом JSON.")
    return parameters_of(payload)


def parameters_of(payload: Mapping[str, Any]) -> RequestParameters:
    """The GraphQL parameters of a JSON object (a POST body, a WebSocket `subscribe`
    message's payload); HttpError when not well-formed."""
    return _graphql_request(
        query=payload.get("query"),
        document_id=payload.get("documentId"),
        operation_name=payload.get("operationName"),
        variables=payload.get("variables"),
        extensions=payload.get("extensions"),
    )


def _graphql_request(
    *,
    query: object,
    document_id: object,
    operation_name: object,
    variables: object,
    extensions: object,
) -> RequestParameters:
    if query is not None and not isinstance(query, str):
        raise HttpError(400, ErrorCode.BAD_REQUEST, "Параметр query должен быть строкой.")
    if operation_name is not None and not isinstance(operation_name, str):
        raise HttpError(400, ErrorCode.BAD_REQUEST, "Параметр operationName должен быть строкой.")
    for name, value in (("variables", variables), ("extensions", extensions)):
        if value is not None and not isinstance(value, dict):
            raise HttpError(400, ErrorCode.BAD_REQUEST, f"Параметр {name} должен быть объектом.")
        if value is not None and json_depth(value) > MAX_JSON_DEPTH:
            raise HttpError(
                400,
                ErrorCode.BAD_REQUEST,
                f"Параметр {name} вложен глубже {MAX_JSON_DEPTH} уровней.",
            )
    persisted_hash = _persisted_query_hash(extensions)  # type: ignore[arg-type]  # checked
    document_hash = _document_id(document_id)
    if document_hash is not None and (query is not None or persisted_hash is not None):
        raise HttpError(
            400,
            ErrorCode.BAD_REQUEST,
            "Укажите либо documentId, либо query (с extensions.persistedQuery или без).",
        )
    if query is None and document_hash is None and persisted_hash is None:
        raise HttpError(
            400,
            ErrorCode.BAD_REQUEST,
            "Параметр query обязателен (или documentId, или extensions.persistedQuery).",
        )
    return RequestParameters(
        query=query,
        document_id=document_hash,
        persisted_hash=persisted_hash,
        operation_name=operation_name or None,
        variables=variables,  # type: ignore[arg-type]  # checked above
        extensions=extensions,  # type: ignore[arg-type]
    )


def _document_id(value: object) -> str | None:
    """The hex SHA-256 of `documentId` ("sha256:<hex>" or the bare hex), lower-cased as
    `persistedQuery.sha256Hash` is; None if absent."""
    if value is None:
        return None
    if isinstance(value, str):
        payload = value.removeprefix(DOCUMENT_ID_PREFIX).lower()
        if is_sha256_hex(payload):
            return payload
    raise HttpError(
        400,
        ErrorCode.BAD_REQUEST,
        "Параметр documentId должен иметь вид sha256:<64 шестнадцатеричные цифры>.",
    )


def _persisted_query_hash(extensions: dict[str, Any] | None) -> str | None:
    """`extensions.persistedQuery.sha256Hash` (version 1), lower-cased; None if absent."""
    if extensions is None or "persistedQuery" not in extensions:
        return None
    persisted = extensions["persistedQuery"]
    version = persisted.get("version") if isinstance(persisted, dict) else None
    if type(version) is not int or version != APQ_VERSION:  # (true is not 1 here)
        raise HttpError(
            400,
            ErrorCode.BAD_REQUEST,
            "extensions.persistedQuery должен быть объектом с version: 1 и sha256Hash.",
        )
    sha256_hash = persisted.get("sha256Hash")
    if isinstance(sha256_hash, str) and is_sha256_hex(sha256_hash.lower()):
        return sha256_hash.lower()
    raise HttpError(
        400,
        ErrorCode.BAD_REQUEST,
        "extensions.persistedQuery.sha256Hash должен состоять из 64 шестнадцатеричных цифр.",
    )


def is_sha256_hex(text: str) -> bool:
    """True for 64 lower-case hexadecimal digits (a SHA-256 as the protocols write it)."""
    return len(text) == SHA256_HEX_CHARS and _HEX_DIGITS.issuperset(text)


def json_depth(value: object) -> int:
    """How deeply JSON containers nest in `value` (a scalar is 0), without recursion."""
    deepest = 0
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Iterable[object] = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth + 1)
        stack.extend((child, depth + 1) for child in children)
    return deepest


def _json_param(raw: str | None, name: str) -> object:
    if raw is None or raw == "":
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise HttpError(
            400, ErrorCode.BAD_REQUEST, f"Параметр {name} должен быть объектом JSON."
        ) from None


def _check_content_type(content_type: str | None) -> None:
    if content_type is None:
        raise HttpError(
            415, ErrorCode.UNSUPPORTED_MEDIA_TYPE, "Укажите Content-Type: application/json."
        )
    media_type, *params = (part.strip().lower() for part in content_type.split(";"))
    charset_ok = all(
        value.strip('"') in {"utf-8", "utf8"}
        for name, _, value in (param.partition("=") for param in params)
        if name.strip() == "charset"
    )
    if media_type != JSON or not charset_ok:
        raise HttpError(
            415,
            ErrorCode.UNSUPPORTED_MEDIA_TYPE,
            "Поддерживается только Content-Type: application/json (UTF-8).",
        )


async def _read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise HttpError(413, ErrorCode.PAYLOAD_TOO_LARGE)
    chunks: list[bytes] = []
    size = 0
    async with aclosing(request.stream()) as stream:  # closed at once on a refusal
        async for chunk in stream:
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise HttpError(413, ErrorCode.PAYLOAD_TOO_LARGE)
            chunks.append(chunk)
    return b"".join(chunks)


# --- responses -----------------------------------------------------------------------


def graphql_response(body: Formatted, media_type: str, *, failed: bool) -> Response:
    """A GraphQL response; `failed` (no execution) is 400 only with graphql-response+json."""
    status = 400 if failed and media_type == GRAPHQL_RESPONSE_JSON else 200
    return json_response(body, status, media_type)


def error_response(error: HttpError, media_type: str) -> Response:
    """A non-GraphQL failure, still shaped as a GraphQL response with a code."""
    body = {"errors": [{"message": error.message, "extensions": {"code": error.code.value}}]}
    headers = {"Cache-Control": "no-store", **error.headers}
    return json_response(body, error.status, media_type, headers=headers)


def json_response(
    body: Any, status: int, media_type: str, headers: Mapping[str, str] | None = None
) -> Response:
    return raw_json_response(orjson.dumps(body), status, media_type, headers)


def raw_json_response(
    encoded: bytes, status: int, media_type: str, headers: Mapping[str, str] | None = None
) -> Response:
    """A response with an already encoded JSON body."""
    response = Response(encoded, status_code=status, headers=headers)
    response.headers["content-type"] = f"{media_type}; charset=utf-8"
    return response

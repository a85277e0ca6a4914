"""The GraphQL endpoint: a well-formed request's document, cost, cached answer and execution.

Our own small endpoint over graphql-core, rather than strawberry's ASGI view, for exact
control of the protocol (`gateway.http.protocol`) and of the cost per request:

- A mutation via GET is 405 (`Allow: POST`). With graphql-response+json, parse,
  validation, operation selection and variable coercion failures → 400 and no `data`
  key; once execution starts → 200.
- A bad or expired bearer token → 401 with `WWW-Authenticate: Bearer error="invalid_token"`
  (codes UNAUTHENTICATED / TOKEN_EXPIRED); no token at all → an anonymous viewer. A
  verified token is remembered until it expires (`VerifiedTokens`); the viewer's scope
  is loaded fresh on every request.
- Trusted documents (`gateway.http.persisted`): a document named by its SHA-256
  (`documentId`, Apollo's `extensions.persistedQuery`) is looked up before anything is
  parsed and runs as its text; a request authenticated by the session cookie may run
  registered documents only (403 DOCUMENT_NOT_REGISTERED otherwise, before parsing).
- Each distinct query text is parsed and validated once (`gateway.execution.documents`: an LRU
  cache bounded in bytes, keyed by digests; refusals kept only small).
- Execution goes through the document's compiled plan (`gateway.execution.runner`), which gives
  the request back to graphql-core (the reference) whenever it leaves the plain path;
  SCHOOL_GATEWAY_EXECUTOR=reference uses graphql-core alone.
- Queries of parents and students go through a response cache (`gateway.http.response_cache`)
  validated by one statement that reads the change versions of the viewer's students;
  a hit records the access audit as a miss does. SCHOOL_GATEWAY_RESPONSE_CACHE=0 turns
  it off.
- Every error has `extensions.code`. Expected failures (ApiError) pass through; a
  statement timeout becomes TIMEOUT; anything else is logged with its traceback and
  reaches the client as INTERNAL_SERVER_ERROR with a Russian message.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Hashable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any, Final, TypeGuard, cast

import asyncpg
import orjson
from graphql import (
    DocumentNode,
    ExecutionResult,
    GraphQLError,
    OperationDefinitionNode,
    OperationType,
    execute,
    get_operation_ast,
)
from starlette.requests import Request
from starlette.responses import Response
from strawberry.execution import optimized_is_awaitable
from strawberry.schema import Schema as StrawberrySchema

from auth.requests import VerifiedTokens, authenticate_request
from auth.store.audit import Recorder
from auth.viewer import Viewer
from gateway.core.errors import MESSAGES, ApiError, ErrorCode, HttpError
from gateway.core.graphql_internals import core_schema
from gateway.core.metrics import note_error_code, note_errors
from gateway.core.outage import DatabaseUnavailable, describe, is_database_unavailable
from gateway.core.read_replica import DATABASE_ERRORS, ReadReplica
from gateway.core.settings import Settings
from gateway.core.tracing import operation_span
from gateway.execution.cost import CostLimits
from gateway.execution.documents import DocumentCache, PreparedDocument, coded_error
from gateway.execution.runner import CompiledExecutor
from gateway.http.persisted import PersistedDocuments, Resolved
from gateway.http.protocol import (
    JSON,
    Formatted,
    GraphQLRequest,
    error_response,
    graphql_response,
    negotiate,
    raw_json_response,
    read_graphql_request,
)
from gateway.http.response_cache import (
    CachedResponse,
    ResponseCache,
    ScopeGuesses,
    Speculation,
    current_versions,
    is_cacheable,
    record_access,
)
from resolvers.context import AppServices, Context
from resolvers.diary.loaders import Loaders

log = logging.getLogger(__name__)

_OPERATION_NAME_KEY: Final = "graphql_operation_name"
SUBSCRIPTION_TRANSPORTS: Final = (
    "Подписки (subscription) передаются потоком: POST /graphql с заголовком "
    "Accept: text/event-stream (протокол graphql-sse) или WebSocket /graphql "
    "(протокол graphql-transport-ws)."
)
# strawberry's fast awaitable check (coroutines and futures first), typed for graphql-core.
is_awaitable_value = cast("Callable[[Any], TypeGuard[Awaitable[Any]]]", optimized_is_awaitable)


# --- documents -----------------------------------------------------------------------


def select_operation(
    document: DocumentNode, operation_name: str | None
) -> OperationDefinitionNode | Formatted:
    """The operation to run, or the request error saying why none can be chosen."""
    operation = get_operation_ast(document, operation_name)
    if operation is not None:
        return operation
    if operation_name is not None:
        reason = "В документе нет операции с указанным именем."
        detail = f"Unknown operation named {operation_name!r}."
    elif any(isinstance(d, OperationDefinitionNode) for d in document.definitions):
        reason = "Документ содержит несколько операций: укажите имя нужной."
        detail = "Must provide operation name if query contains multiple operations."
    else:
        reason = "Документ не содержит операций."
        detail = "The document contains no operation."
    return {
        "message": f"{MESSAGES[ErrorCode.GRAPHQL_VALIDATION_FAILED]} {reason}",
        "extensions": {"code": ErrorCode.GRAPHQL_VALIDATION_FAILED.value, "detail": detail},
    }


# --- errors of execution -------------------------------------------------------------


def present_execution_error(error: GraphQLError, operation_name: str | None) -> Formatted:
    """An error raised while executing, as the client may see it (masked unless expected).

    The database unreachable (gateway.core.outage) is not an error of a field: it raises
    DatabaseUnavailable, and the request is answered 503 SERVICE_UNAVAILABLE.
    """
    original = error.original_error
    if isinstance(original, GraphQLError) and "code" in (original.extensions or {}):
        return dict(error.formatted)  # ApiError and other coded errors pass through
    if is_database_unavailable(original):  # the whole response becomes a 503 (gateway.app)
        raise DatabaseUnavailable(describe(error)) from original
    if _is_statement_timeout(original):
        log.warning("statement timeout in %s at %s", operation_name or "-", _path(error))
        return _replaced(error, ErrorCode.TIMEOUT)
    log.error(
        "unexpected error in %s at %s",
        operation_name or "-",
        _path(error),
        exc_info=original or error,
    )
    return _replaced(error, ErrorCode.INTERNAL_SERVER_ERROR)


def present_request_error(error: GraphQLError) -> Formatted:
    """An error that stopped execution before it began (variable coercion and the like)."""
    if isinstance(error.original_error, ApiError):
        return dict(error.formatted)
    return coded_error(error, ErrorCode.BAD_USER_INPUT)


def _replaced(error: GraphQLError, code: ErrorCode) -> Formatted:
    formatted: Formatted = {"message": MESSAGES[code]}
    locations = error.formatted.get("locations")
    if locations:
        formatted["locations"] = locations
    if error.path is not None:
        formatted["path"] = error.path
    formatted["extensions"] = {"code": code.value}
    return formatted


def _is_statement_timeout(error: BaseException | None) -> bool:
    seen = 0
    while error is not None and seen < 10:
        if isinstance(error, asyncpg.QueryCanceledError):
            return True
        error = error.__cause__ or error.__context__
        seen += 1
    return False


def _path(error: GraphQLError) -> str:
    return ".".join(str(part) for part in error.path or ()) or "-"


def is_request_error(result: ExecutionResult) -> bool:
    """True when execution never started: no data and only errors without a path."""
    errors = result.errors or []
    return result.data is None and bool(errors) and all(error.path is None for error in errors)


# --- the endpoint --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Servers:
    """Where one request reads: `primary` (the viewer, sign-in events, anything but a
    query) and `reads` (a query's cached answer's versions and its data: the replica while
    it is available, else the primary too)."""

    primary: asyncpg.Pool
    reads: asyncpg.Pool
    replica: ReadReplica | None = None

    def on_primary(self) -> _Servers:
        return _Servers(self.primary, self.primary)

    def replica_failed(self, error: BaseException, where: str) -> bool:
        """True, the replica marked unavailable, when the reads were on the replica and
        `error` says a server cannot be reached (the primary's own failure is met again
        when the query runs there)."""
        if self.replica is None or self.reads is self.primary or not is_database_unavailable(error):
            return False
        self.replica.failed(error, where)
        return True


class GraphQLEndpoint:
    """Turns an HTTP request into a GraphQL response; one instance per application."""

    def __init__(
        self,
        schema: StrawberrySchema,
        settings: Settings,
        recorder: Recorder,
        app_services: AppServices | None = None,
        *,
        response_cache: bool | None = None,
    ) -> None:
        if schema.extensions or schema.directives:
            # Execution goes straight to graphql-core: strawberry's schema extensions and
            # operation directives would silently not run. Limits belong in
            # gateway.execution.limits.
            raise ValueError("the HTTP endpoint does not run strawberry schema extensions")
        self.schema = schema
        self.settings = settings
        self.recorder = recorder
        self.app_services = app_services or AppServices()
        self.core_schema = core_schema(schema)
        self.documents = DocumentCache(schema, settings)
        self.persisted = PersistedDocuments(settings)  # registered and APQ documents
        self.costs = CostLimits(self.core_schema, settings)  # per-role query cost budgets
        self.tokens = VerifiedTokens(settings)
        self.executor_class = schema.execution_context_class
        self._compiled = (
            CompiledExecutor(schema, is_awaitable_value)
            if settings.executor == "compiled"
            else None
        )
        if response_cache is None:
            response_cache = settings.response_cache
        self.response_cache = ResponseCache() if response_cache else None
        self._guesses = ScopeGuesses()

    async def handle(
        self, request: Request, pool: asyncpg.Pool, replica: ReadReplica | None = None
    ) -> Response:
        """Answer one request: the viewer (session revocation included) is read on `pool`,
        the primary; a query's cached answer's versions and data on `replica` while it is
        available (DATABASE_REPLICA_URL), else on the primary: one server for both, so
        that a replica's lag never stores old data under new versions. Anything but a
        query reads and writes the primary only."""
        reads = pool if replica is None else replica.reads_pool(pool)
        media_type = negotiate(request.headers.get("accept"))
        if media_type is None:
            note_error_code(request.scope, ErrorCode.NOT_ACCEPTABLE.value)
            return error_response(HttpError(406, ErrorCode.NOT_ACCEPTABLE), JSON)
        # The body is read (and a persisted document looked up) before the viewer, so
        # that a cached answer's versions can be read alongside it; a bad body or an
        # unknown hash still loses to a bad token, as before.
        body_error, resolved = None, None
        try:
            resolved = self.persisted.resolve(await read_graphql_request(request))
        except HttpError as error:
            body_error = error
        graphql_request = resolved.request if resolved is not None else None
        speculation = self._speculate(request, graphql_request, reads)
        try:
            viewer = await authenticate_request(request, self.settings, pool, self.tokens)
            if body_error is not None or resolved is None:
                raise body_error or HttpError(400, ErrorCode.BAD_REQUEST)  # (never None both)
            self._check_cookie_document(request, viewer, resolved)
            servers = _Servers(pool, reads, replica)
            return await self._run(
                request, resolved.request, viewer, servers, media_type, speculation
            )
        except HttpError as error:
            note_error_code(request.scope, error.code.value)
            return error_response(error, media_type)
        finally:
            if speculation is not None:
                await speculation.settle()

    def _check_cookie_document(
        self, request: Request, viewer: Viewer | None, resolved: Resolved
    ) -> None:
        """403 DOCUMENT_NOT_REGISTERED for a cookie session's document that is not a
        registered one (SCHOOL_GATEWAY_COOKIE_REGISTERED_ONLY). A viewer without an
        Authorization header came from the session cookie (`authenticate_request`)."""
        by_cookie = viewer is not None and request.headers.get("authorization") is None
        if by_cookie and not self.persisted.cookie_may_run(resolved):
            raise HttpError(403, ErrorCode.DOCUMENT_NOT_REGISTERED)

    def _speculate(
        self, request: Request, graphql_request: GraphQLRequest | None, pool: asyncpg.Pool
    ) -> Speculation | None:
        cache = self.response_cache
        if cache is None or graphql_request is None:
            return None
        return self._guesses.speculate(
            request.headers.get("authorization"),
            lambda viewer: self._cache_key(viewer, graphql_request, self.settings.today()) in cache,
            pool,
        )

    def _cache_key(
        self, viewer: Viewer, graphql_request: GraphQLRequest, today: date
    ) -> Hashable | None:
        """The response cache's key before the request is authenticated (speculation):
        the document from the cache, its operation chosen; None for a request that never
        reaches execution. `_run`, which has the operation, builds the key directly."""
        prepared = self.documents.prepare(graphql_request.query)
        if prepared.errors or prepared.document is None:
            return None
        operation = select_operation(prepared.document, graphql_request.operation_name)
        if not isinstance(operation, OperationDefinitionNode):
            return None
        return ResponseCache.key(
            viewer,
            query=graphql_request.query,
            operation=operation,
            variables=graphql_request.variables,
            today=today,
        )

    async def _run(
        self,
        request: Request,
        graphql_request: GraphQLRequest,
        viewer: Viewer | None,
        servers: _Servers,
        media_type: str,
        speculation: Speculation | None = None,
    ) -> Response:
        prepared = self.documents.prepare(graphql_request.query)
        if prepared.document is None:
            return _failed(request, list(prepared.errors), media_type)
        operation = select_operation(prepared.document, graphql_request.operation_name)
        if not isinstance(operation, OperationDefinitionNode):
            return _failed(request, [operation], media_type)
        operation_name = operation.name.value if operation.name else None
        request.scope.setdefault("state", {})[_OPERATION_NAME_KEY] = operation_name
        if request.method == "GET" and operation.operation is not OperationType.QUERY:
            raise HttpError(
                405,
                ErrorCode.METHOD_NOT_ALLOWED,
                "Через GET можно выполнять только запросы (query); используйте POST.",
                headers={"Allow": "POST"},
            )
        if prepared.errors:
            return _failed(request, list(prepared.errors), media_type)
        if operation.operation is OperationType.SUBSCRIPTION:
            code = ErrorCode.BAD_REQUEST.value
            error = {"message": SUBSCRIPTION_TRANSPORTS, "extensions": {"code": code}}
            return _failed(request, [error], media_type)
        run = (request, graphql_request, prepared, operation, viewer)
        with operation_span(operation.operation.value, operation_name):
            if operation.operation is not OperationType.QUERY:  # never on a read-only server
                return await self._answer(*run, servers.on_primary(), media_type, None)
            try:
                return await self._answer(*run, servers, media_type, speculation)
            except (DatabaseUnavailable, *DATABASE_ERRORS) as error:
                if not servers.replica_failed(error, f"{request.method} {request.url.path}"):
                    raise
            # A query only reads: answered once more, all of it from the primary.
            return await self._answer(*run, servers.on_primary(), media_type, None)

    async def _answer(
        self,
        request: Request,
        graphql_request: GraphQLRequest,
        prepared: PreparedDocument,
        operation: OperationDefinitionNode,
        viewer: Viewer | None,
        servers: _Servers,
        media_type: str,
        speculation: Speculation | None,
    ) -> Response:
        """Run a valid query or mutation: cost check, response cache, execution; the
        versions and the data read on `servers.reads` (speculation: read there too)."""
        assert prepared.document is not None
        operation_name = operation.name.value if operation.name else None
        self.persisted.remember(graphql_request)  # a valid document sent with its hash
        too_costly = self.costs.refusal(
            prepared.document, operation, graphql_request.variables, viewer
        )
        if too_costly is not None:  # refused before anything runs (gateway.execution.cost)
            return _failed(request, [too_costly], media_type)
        today = self.settings.today()  # one day for the cache key and the execution
        cache_key, versions = None, ""
        cacheable = self.response_cache is not None and is_cacheable(
            viewer, operation, self.core_schema
        )
        known = viewer if cacheable else None
        self._guesses.remember(request.headers.get("authorization"), known)
        if self.response_cache is not None and known is not None:
            cache_key = ResponseCache.key(
                known,
                query=graphql_request.query,
                operation=operation,
                variables=graphql_request.variables,
                today=today,
            )
            versions = await current_versions(servers.reads, known, speculation)
            cached = self.response_cache.get(cache_key, versions)
            if cached is not None:
                record_access(self.recorder, known, cached.accessed_student_ids, operation_name)
                return raw_json_response(cached.body, 200, media_type)
        result = None
        context = self._context(viewer, servers.reads, today, servers.primary)
        if self._compiled is not None and prepared.plans is not None:
            result = await self._compiled.execute(
                prepared.document,
                prepared.plans,
                context=context,
                variables=graphql_request.variables,
                operation_name=operation_name,
                extensions=graphql_request.extensions,
            )
        if result is None:  # the reference: graphql-core, with the same loaders, whose
            # caches answer what the compiled attempt read already (no statement twice)
            result = await self._execute(
                prepared.document, graphql_request, operation_name, context
            )
        context.loaders.release()  # the result is plain data now: free the request's graph
        if is_request_error(result):
            errors = [present_request_error(error) for error in result.errors or ()]
            return _failed(request, errors, media_type)
        body: Formatted = {}
        if result.errors:
            body["errors"] = [present_execution_error(e, operation_name) for e in result.errors]
            note_errors(request.scope, body["errors"])
        body["data"] = result.data
        accessed = tuple(sorted(context.loaders.accessed_student_ids))
        if viewer is not None and result.data:
            record_access(self.recorder, viewer, accessed, operation_name)
        encoded = orjson.dumps(body)
        if cache_key is not None and self.response_cache is not None and "errors" not in body:
            self.response_cache.put(cache_key, CachedResponse(versions, encoded, accessed))
        return raw_json_response(encoded, 200, media_type)

    def _context(
        self, viewer: Viewer | None, pool: asyncpg.Pool, today: date, primary: asyncpg.Pool
    ) -> Context:
        return Context(
            viewer=viewer,
            loaders=Loaders(pool, viewer, self.app_services.reference),
            pool=pool,
            primary=primary,
            settings=self.settings,
            today=today,
            app=self.app_services,
        )

    async def _execute(
        self,
        document: DocumentNode,
        graphql_request: GraphQLRequest,
        operation_name: str | None,
        context: Context,
    ) -> ExecutionResult:
        outcome = execute(
            self.core_schema,
            document,
            context_value=context,
            variable_values=graphql_request.variables,
            operation_name=operation_name,
            executor_class=self.executor_class,
            is_awaitable=is_awaitable_value,
            operation_extensions=graphql_request.extensions,
        )
        if inspect.isawaitable(outcome):
            outcome = await outcome
        assert isinstance(outcome, ExecutionResult)
        return outcome


def _failed(request: Request, errors: list[Formatted], media_type: str) -> Response:
    """A request that never reached execution (400 with graphql-response+json), its
    first error's code noted for the metrics."""
    note_errors(request.scope, errors)
    return graphql_response({"errors": errors}, media_type, failed=True)


def operation_name_of(request_scope: Mapping[str, Any]) -> str | None:
    """The operation a request ran (for the request log), if it got that far."""
    state = request_scope.get("state")
    if isinstance(state, Mapping):
        name = state.get(_OPERATION_NAME_KEY)
        return name if isinstance(name, str) else None
    return None

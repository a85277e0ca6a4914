"""Subscriptions for the stream transports (gateway.http.sse, gateway.http.websocket).

A subscription request goes through the same steps as a query (gateway.http.endpoint):
the trusted-documents rule for cookie sessions, the parse/validation cache, the cost
budget; then graphql-core runs the root field's resolver (its permission checks
included: `create_source_event_stream`), and every event the feed yields is executed
against the document's selection by an executor built for it
(`execute_subscription_event`). The outcome is either a refusal (errors, no stream) or
an `OpenStream` of formatted results; an error that ends the stream (SESSION_REVOKED,
TOKEN_EXPIRED, SLOW_CONSUMER, the database gone) is its last result.
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass
from typing import Any, Protocol, cast

import asyncpg
from graphql import (
    DocumentNode,
    ExecutionResult,
    GraphQLError,
    OperationDefinitionNode,
    OperationType,
    create_source_event_stream,
    execute_subscription_event,
)

from auth.viewer import Viewer
from gateway.core.errors import MESSAGES, ApiError, ErrorCode, HttpError
from gateway.core.outage import describe, is_database_unavailable
from gateway.http.endpoint import (
    GraphQLEndpoint,
    is_awaitable_value,
    present_execution_error,
    present_request_error,
    select_operation,
)
from gateway.http.persisted import Resolved
from gateway.http.protocol import Formatted
from resolvers.context import Context
from resolvers.diary.loaders import Loaders

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Refused:
    """No stream: these errors instead (a request error: no `data`)."""

    errors: list[Formatted]


def only_subscriptions_error() -> Formatted:
    return {
        "message": (
            "По этому каналу выполняются только подписки (subscription). Запросы и изменения "
            "отправляйте обычным POST /graphql."
        ),
        "extensions": {"code": ErrorCode.BAD_REQUEST.value},
    }


class Streams:
    """Opens subscriptions with the endpoint's caches, budgets and services."""

    def __init__(self, endpoint: GraphQLEndpoint) -> None:
        self.endpoint = endpoint

    async def open(
        self,
        resolved: Resolved,
        viewer: Viewer | None,
        pool: asyncpg.Pool,
        *,
        by_cookie: bool,
        expires_at: float | None,
        key_id: str | None = None,
    ) -> Refused | OpenStream:
        """The stream of a subscription request, or why there is none. HttpError for a
        cookie session's unregistered document (as on POST /graphql). `expires_at` and
        `key_id`: the expiry and signing key of the credentials (the stream ends when
        either is no longer good)."""
        endpoint = self.endpoint
        if by_cookie and not endpoint.persisted.cookie_may_run(resolved):
            raise HttpError(403, ErrorCode.DOCUMENT_NOT_REGISTERED)
        request = resolved.request
        prepared = endpoint.documents.prepare(request.query)
        if prepared.document is None:
            return Refused(list(prepared.errors))
        operation = select_operation(prepared.document, request.operation_name)
        if not isinstance(operation, OperationDefinitionNode):
            return Refused([operation])
        if prepared.errors:
            return Refused(list(prepared.errors))
        if operation.operation is not OperationType.SUBSCRIPTION:
            return Refused([only_subscriptions_error()])
        endpoint.persisted.remember(request)
        too_costly = endpoint.costs.refusal(prepared.document, operation, request.variables, viewer)
        if too_costly is not None:
            return Refused([too_costly])
        context = Context(
            viewer=viewer,
            loaders=Loaders(pool, viewer, endpoint.app_services.reference),
            pool=pool,
            settings=endpoint.settings,
            today=endpoint.settings.today(),
            app=endpoint.app_services,
            credentials_expire_at=expires_at,
            credentials_key_id=key_id,
        )
        name = operation.name.value if operation.name else None
        stream = OpenStream(
            endpoint, prepared.document, request.variables, context, operation_name=name
        )
        refused = await stream.start()
        return stream if refused is None else refused


class HeartbeatSource(Protocol):
    """A source stream that can wait with a timeout (resolvers.changes.subscription)."""

    async def next_event(self, timeout_s: float | None) -> Any: ...

    def close(self) -> None: ...

    def sent(self) -> None: ...

    async def aclose(self) -> None: ...


class OpenStream:
    """An open subscription: its source stream, and what executing one of its events
    needs. No executor is kept between events (each costs kilobytes, and thousands of
    streams sit idle): each event is executed by an executor built for it."""

    __slots__ = ("_context", "_document", "_endpoint", "_finished", "_source", "_variables",
                 "operation_name")  # fmt: skip

    def __init__(
        self,
        endpoint: GraphQLEndpoint,
        document: DocumentNode,
        variables: dict[str, Any] | None,
        context: Context,
        *,
        operation_name: str | None,
    ) -> None:
        self._endpoint = endpoint
        self._document = document
        self._variables = variables
        self._context = context
        self.operation_name = operation_name
        self._source: HeartbeatSource | None = None
        self._finished = False

    def _executor(self, root_value: Any) -> Any:
        endpoint = self._endpoint
        return endpoint.executor_class.build(
            endpoint.core_schema,
            self._document,
            root_value,
            self._context,
            self._variables,
            self.operation_name,
            is_awaitable=is_awaitable_value,
        )

    async def start(self) -> Refused | None:
        """Run the subscription field's resolver (its permission checks included)."""
        executor = self._executor(None)
        if isinstance(executor, list):
            return Refused([present_request_error(error) for error in executor])
        outcome = create_source_event_stream(executor)
        if inspect.isawaitable(outcome):
            outcome = await outcome
        if isinstance(outcome, ExecutionResult):  # the resolver refused (or the database left)
            return Refused([_start_error(error) for error in outcome.errors or ()])
        self._source = cast("HeartbeatSource", outcome)
        return None

    async def next(self, heartbeat_s: float | None = None) -> Formatted | None:
        """The next result to send; None when `heartbeat_s` passed without one; an error
        that ends the stream as its last result; then StopAsyncIteration."""
        if self._finished or self._source is None:
            raise StopAsyncIteration
        try:
            event = await self._source.next_event(heartbeat_s)
        except StopAsyncIteration:
            self._finished = True
            raise
        except ApiError as error:
            self._finished = True
            return {"errors": [dict(error.formatted)]}
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            # The database away, or a catch-up read that failed (a statement timeout):
            # the stream ends, and its client resumes with its last cursor.
            if not is_database_unavailable(error):
                log.warning("subscription ended by a database error: %s", describe(error))
            self._finished = True
            return {"errors": [_unavailable()]}
        if event is None:
            return None
        return await self._execute(event)

    async def _execute(self, event: Any) -> Formatted:
        outcome = execute_subscription_event(self._executor(event))
        result = await outcome if inspect.isawaitable(outcome) else outcome
        body: Formatted = {}
        if result.errors:
            body["errors"] = [_event_error(e, self.operation_name) for e in result.errors]
        body["data"] = result.data
        return body

    def sent(self) -> None:
        """The last result was sent to the client (the feed records its delivery)."""
        if self._source is not None:
            self._source.sent()

    def abort(self) -> None:
        """The consumer is gone: end a pending `next` at once (StopAsyncIteration)."""
        self._finished = True
        if self._source is not None:
            self._source.close()

    async def aclose(self) -> None:
        """The consumer is gone (or the stream ended): release the source."""
        self._finished = True
        if self._source is not None:
            await self._source.aclose()


def _start_error(error: GraphQLError) -> Formatted:
    if is_database_unavailable(error.original_error):
        return _unavailable()
    return present_request_error(error)


def _event_error(error: GraphQLError, operation_name: str | None) -> Formatted:
    if is_database_unavailable(error.original_error):
        return _unavailable()
    return present_execution_error(error, operation_name)


def _unavailable() -> Formatted:
    code = ErrorCode.SERVICE_UNAVAILABLE
    return {"message": MESSAGES[code], "extensions": {"code": code.value}}

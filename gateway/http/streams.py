"""Subscriptions for the stream transports (gateway.http.sse, gateway.http.websocket).

A subscription request goes through the same steps as a query (gateway.http.endpoint):
the trusted-documents rule for cookie sessions, the parse/validation cache, the cost
budget; then graphql-core's `subscribe` runs the root field's resolver (its permission
checks included), and every event the feed yields is executed against the document's
selection. The outcome is either a refusal (errors, no stream) or an iterator of
formatted results; an error that ends the stream (SESSION_REVOKED, TOKEN_EXPIRED,
SLOW_CONSUMER, the database gone) is its last result.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any, cast

import asyncpg
from graphql import ExecutionResult, GraphQLError, OperationDefinitionNode, OperationType, subscribe

from auth.viewer import Viewer
from gateway.core.errors import MESSAGES, ApiError, ErrorCode, HttpError
from gateway.core.outage import is_database_unavailable
from gateway.http.endpoint import (
    GraphQLEndpoint,
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
    ) -> Refused | AsyncGenerator[Formatted, None]:
        """The stream of a subscription request, or why there is none. HttpError for a
        cookie session's unregistered document (as on POST /graphql)."""
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
        )
        name = operation.name.value if operation.name else None
        outcome = await cast(
            "Any",
            subscribe(
                endpoint.core_schema,
                prepared.document,
                context_value=context,
                variable_values=request.variables,
                operation_name=name,
                executor_class=endpoint.executor_class,
            ),
        )
        if isinstance(outcome, ExecutionResult):
            return Refused([present_request_error(error) for error in outcome.errors or ()])
        return _formatted(outcome, name)


async def _formatted(
    results: AsyncIterator[ExecutionResult], operation_name: str | None
) -> AsyncGenerator[Formatted, None]:
    """Each event's result as sent; an error ending the source stream as the last one."""
    try:
        while True:
            try:
                result = await anext(results)
            except StopAsyncIteration:
                return
            except ApiError as error:
                yield {"errors": [dict(error.formatted)]}
                return
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                if not is_database_unavailable(error):
                    raise
                yield {"errors": [_unavailable()]}
                return
            body: Formatted = {}
            if result.errors:
                body["errors"] = [_event_error(e, operation_name) for e in result.errors]
            body["data"] = result.data
            yield body
    finally:
        await cast("Any", results).aclose()


def _event_error(error: GraphQLError, operation_name: str | None) -> Formatted:
    if is_database_unavailable(error.original_error):
        return _unavailable()
    return present_execution_error(error, operation_name)


def _unavailable() -> Formatted:
    code = ErrorCode.SERVICE_UNAVAILABLE
    return {"message": MESSAGES[code], "extensions": {"code": code.value}}

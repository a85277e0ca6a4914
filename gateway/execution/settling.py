"""graphql-core's executor, with sibling work settled instead of cancelled before it starts.

graphql-core 3.3 completes the fields of an object, and the items of a list, by wrapping
every pending value in a task (`gather_with_cancel`). When one of them fails (a non-null
field's error bubbling up: FORBIDDEN, BAD_USER_INPUT, a null), it cancels the others.
A task cancelled before its first step never runs its coroutine, and that coroutine
already owns the coroutines graphql-core created for the fields below it (resolver calls,
`complete_awaitable_value`, `get_results`): they are dropped unawaited, and every one of
them logs "coroutine … was never awaited" when it is garbage-collected.

It happens whenever a sibling gets far enough to start the next level in the same turn
of the event loop as the failure: typically when its loaders answer from their caches
without waiting, which is what happens when the compiled executor (`gateway.execution.runner`)
hands a request over to graphql-core with the loaders it has already filled.

`SettlingExecutionContext` (the schema's `execution_context_class`) gathers them another
way: the first failure is raised at once, as before (its null propagates, and graphql-core
drops errors raised below a nulled position later), and the siblings that are still
running are left to settle with graphql-core's own `settle_in_background`, never
cancelled. The execution then waits for that background work before it returns, so no
work of a request outlives it (the request's loaders are released after execution).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable, Sequence
from typing import Any

from graphql import ExecutionResult, GraphQLObjectType, GraphQLOutputType, GraphQLResolveInfo
from graphql.execution.collect_fields import FieldDetailsList, GroupedFieldSet
from graphql.execution.executor import collect_iterator_awaitables
from graphql.execution.types import ExperimentalIncrementalExecutionResults
from graphql.pyutils import AwaitableOrValue, Path, Undefined
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

Result = ExecutionResult | ExperimentalIncrementalExecutionResults


class SettlingExecutionContext(StrawberryGraphQLCoreExecutionContext):
    """Strawberry's execution context; failures never cancel sibling work (see module)."""

    def execute_operation(self, serially: bool | None = None) -> AwaitableOrValue[Result]:
        result = super().execute_operation(serially)
        if not isinstance(result, ExecutionResult | ExperimentalIncrementalExecutionResults):
            return self._when_settled(result)
        if not self.background_futures:
            return result
        return self._when_settled(_ready(result))

    def execute_fields(
        self,
        parent_type: GraphQLObjectType,
        source_value: Any,
        path: Path | None,
        grouped_field_set: GroupedFieldSet,
        position_context: Any,
    ) -> AwaitableOrValue[dict[str, Any]]:
        """graphql-core's `execute_fields`, gathering with `_gather`."""
        results: dict[str, Any] = {}
        pending: list[str] = []
        finished = False
        try:
            for response_name, field_details_list in grouped_field_set.items():
                field_path = Path(path, response_name, parent_type.name)
                result = self.execute_field(
                    parent_type, source_value, field_details_list, field_path, position_context
                )
                if result is Undefined:
                    continue
                results[response_name] = result
                if self.is_awaitable(result):
                    pending.append(response_name)
            finished = True
        finally:
            if not finished:  # a sibling raised: what already started still runs to its end
                self.track_async_work([results[name] for name in pending])
        if not pending:
            return results
        return self._fill_fields(results, pending)

    def complete_iterable_value(
        self,
        item_type: GraphQLOutputType,
        field_details_list: FieldDetailsList,
        info: GraphQLResolveInfo[Any],
        path: Path,
        items: Iterable[Any],
        position_context: Any,
    ) -> AwaitableOrValue[list[Any]]:
        """graphql-core's `complete_iterable_value` (without `@stream`), gathering with
        `_gather`; a streamed list (not in this schema) is left to graphql-core."""
        if self.get_stream_usage(field_details_list, path) is not None:
            return super().complete_iterable_value(
                item_type, field_details_list, info, path, items, position_context
            )
        completed: list[Any] = []
        pending: list[int] = []
        iterator = iter(items)
        finished = False
        try:
            for index, item in enumerate(iterator):
                item_path = path.add_key(index, None)
                if self.is_awaitable(item):
                    item = self.complete_awaitable_list_item_value(
                        item, item_type, field_details_list, info, item_path, position_context
                    )
                    completed.append(item)
                    pending.append(index)
                    continue
                if self.complete_list_item_value(
                    item,
                    completed,
                    item_type,
                    field_details_list,
                    info,
                    item_path,
                    position_context,
                ):
                    pending.append(index)
            finished = True
        finally:
            if not finished:  # an item raised: the started and the remaining ones still run
                awaitables = [completed[index] for index in pending]
                awaitables.extend(collect_iterator_awaitables(iterator, self.is_awaitable))
                self.track_async_work(awaitables)
        if not pending:
            return completed
        return self._fill_items(completed, pending)

    def gather_async_work(self, values: Sequence[Awaitable[Any]]) -> Awaitable[list[Any]]:
        """`info.async_helpers.gather` for resolvers: the same settling gather."""
        return self._gather(values)

    async def _fill_fields(self, results: dict[str, Any], pending: list[str]) -> dict[str, Any]:
        values = await self._gather([results[name] for name in pending])
        results.update(zip(pending, values, strict=True))
        return results

    async def _fill_items(self, completed: list[Any], pending: list[int]) -> list[Any]:
        values = await self._gather([completed[index] for index in pending])
        for index, value in zip(pending, values, strict=True):
            completed[index] = value
        return completed

    async def _gather(self, awaitables: Sequence[Awaitable[Any]]) -> list[Any]:
        """The values in order; the first failure (in order) is raised as soon as one
        fails, and whatever is still running settles in the background, uncancelled.

        A cancellation of the caller does not cancel them either: a task cancelled
        before it has started would drop the coroutines it owns."""
        if len(awaitables) <= 1:  # awaited directly: nothing can be dropped
            return [await awaitable for awaitable in awaitables]
        tasks = [asyncio.ensure_future(awaitable) for awaitable in awaitables]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        except asyncio.CancelledError:
            self.settle_in_background(list(tasks))
            raise
        failed = [task for task in tasks if task.done() and _failed(task)]
        if not failed:
            return [task.result() for task in tasks]
        self.settle_in_background([task for task in tasks if not task.done()])
        return [failed[0].result()]  # raises its exception

    async def _when_settled(self, result: Awaitable[Result]) -> Result:
        """The execution's result, once the work settling in the background is done."""
        value = await result
        while self.background_futures:
            await asyncio.wait(list(self.background_futures))
        return value


def _failed(task: asyncio.Future[Any]) -> bool:
    """Whether a finished task failed (reading its exception marks it retrieved)."""
    return task.cancelled() or task.exception() is not None


async def _ready(value: Result) -> Result:
    return value

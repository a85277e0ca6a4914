"""Run compiled plans; graphql-core answers whenever a request leaves the plain path.

`CompiledExecutor.execute` returns the result of a plan (see `gateway.execution.compiler`), or
None when graphql-core must execute the request instead: the document is not
compilable, the variables do not coerce, or anything at all goes wrong while the plan
runs — a resolver raises (a permission check, a bad argument, a timeout), a non-null
value is null, a value needs a coercion the fast path does not know. Errors, their
paths and null propagation are therefore always graphql-core's own. The request is
then executed again from the start, with the same loaders: their caches answer the
reads already made, so no statement is sent twice (a batch that failed, e.g. a scope
check, is not cached and fails again the same way).

Resolvers run exactly as graphql-core runs them: the same resolve info (built by the
strawberry execution context), the same argument coercion, the field's resolver with
its permission extension. They run level by level: every resolver of a level is
started, for every source object, before any is awaited, so the loaders batch a level's
keys into one statement as they do under graphql-core.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, TypeGuard

from graphql import (
    DirectiveNode,
    DocumentNode,
    ExecutionResult,
    GraphQLError,
    VariableNode,
    visit,
)
from graphql.execution.values import get_argument_values
from graphql.language import Visitor
from graphql.pyutils import Path
from strawberry.schema import Schema as StrawberrySchema

from gateway.core.graphql_internals import core_schema
from gateway.core.outage import is_database_unavailable
from gateway.execution.compiler import Abandon, NotCompilable, compile_operation
from gateway.execution.plans import ObjectPlan, ResolvedField, ValuePlan

log = logging.getLogger(__name__)

_MAX_PLANS_PER_DOCUMENT: Final = 64
_MISSING: Final = object()

IsAwaitable = Callable[[Any], TypeGuard[Awaitable[Any]]]


class _DirectiveVariables(Visitor):
    """Names of the variables that `@include(if:)` / `@skip(if:)` read."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def enter_directive(self, node: DirectiveNode, *_args: Any) -> None:
        if node.name.value not in ("include", "skip"):
            return
        for argument in node.arguments or ():
            value = argument.value
            if isinstance(value, VariableNode) and value.name.value not in self.names:
                self.names.append(value.name.value)


class PlanCache:
    """The compiled plans of one document, by operation and `@include`/`@skip` values."""

    def __init__(self, document: DocumentNode) -> None:
        collector = _DirectiveVariables()
        visit(document, collector)
        self.directive_variables = tuple(collector.names)
        self._plans: dict[tuple[Any, ...], ObjectPlan | None] = {}

    def plan(self, executor: Any) -> ObjectPlan | None:
        """The plan for this execution (compiled on first use); None if not compilable."""
        coerced: dict[str, Any] = executor.variable_values.coerced
        operation = executor.operation
        key = (
            operation.name.value if operation.name else None,
            *(coerced.get(name, _MISSING) for name in self.directive_variables),
        )
        try:
            return self._plans[key]
        except KeyError:
            pass
        try:
            plan: ObjectPlan | None = compile_operation(
                executor.schema, executor.fragments, executor.variable_values, operation
            )
        except NotCompilable:
            plan = None
        if len(self._plans) < _MAX_PLANS_PER_DOCUMENT:
            self._plans[key] = plan
        return plan


class CompiledExecutor:
    """Executes documents through their compiled plans (one instance per application)."""

    def __init__(self, schema: StrawberrySchema, is_awaitable: IsAwaitable) -> None:
        self._core = core_schema(schema)
        self._executor_class = schema.execution_context_class
        self._is_awaitable = is_awaitable
        # How requests went: "compiled", "not_compilable", "abandoned", "bad_variables".
        self.outcomes: Counter[str] = Counter()

    async def execute(
        self,
        document: DocumentNode,
        plans: PlanCache,
        *,
        context: Any,
        variables: dict[str, Any] | None,
        operation_name: str | None,
        extensions: dict[str, Any] | None,
    ) -> ExecutionResult | None:
        """The result, or None when graphql-core must execute this request."""
        executor = self._executor_class.build(
            self._core,
            document,
            None,
            context,
            variables,
            operation_name,
            is_awaitable=self._is_awaitable,
            operation_extensions=extensions,
        )
        if isinstance(executor, list):
            self.outcomes["bad_variables"] += 1  # graphql-core reports them
            return None
        plan = plans.plan(executor)
        if plan is None:
            self.outcomes["not_compilable"] += 1
            return None
        run = _Run(executor, self._is_awaitable)
        try:
            (data,) = await run.objects(plan, [executor.root_value], [None])
        except (Abandon, GraphQLError):  # expected: graphql-core answers (FORBIDDEN, nulls…)
            self.outcomes["abandoned"] += 1
            return None
        except Exception as error:  # graphql-core answers; the bug must not stay silent
            if is_database_unavailable(error):
                raise  # not a bug: the whole request is answered 503 (gateway.core.outage)
            log.warning("compiled executor failed; answered by graphql-core", exc_info=True)
            self.outcomes["abandoned"] += 1
            return None
        self.outcomes["compiled"] += 1
        return ExecutionResult(data, None)


class _Run:
    """One execution of a plan."""

    __slots__ = ("executor", "is_awaitable")

    def __init__(self, executor: Any, is_awaitable: IsAwaitable) -> None:
        self.executor = executor
        self.is_awaitable = is_awaitable

    async def objects(
        self, plan: ObjectPlan, sources: Sequence[Any], paths: Sequence[Path | None]
    ) -> list[dict[str, Any]]:
        """The response dicts of `sources`, all of `plan`'s object type."""
        complete = plan.complete
        if complete is not None:
            return [complete(source) for source in sources]
        parent = plan.type
        calls = [
            (index, field, Path(paths[index], field.key, parent.name))
            for index in range(len(sources))
            for field in plan.resolved_fields
        ]
        resolved = await _settle(
            [self.resolve(field, parent, sources[index], path) for index, field, path in calls]
        )
        results = [dict.fromkeys(plan.keys) for _ in sources]
        # Values whose objects need resolvers, per response key: completed all at once.
        pending: dict[str, tuple[ValuePlan, list[int], list[Any], list[Path]]] = {}

        def put(index: int, key: str, value_plan: ValuePlan, value: Any) -> None:
            if value_plan.complete is not None:
                results[index][key] = value_plan.complete(value)
                return
            _plan, indexes, values, value_paths = pending.setdefault(key, (value_plan, [], [], []))
            indexes.append(index)
            values.append(value)
            value_paths.append(Path(paths[index], key, parent.name))

        for index, source in enumerate(sources):
            if isinstance(source, Exception):
                raise Abandon  # graphql-core turns an exception value into an error
            result = results[index]
            for key in plan.typename_keys:
                result[key] = parent.name
            for read in plan.read_fields:
                put(index, read.key, read.value, getattr(source, read.attribute))
        for (index, field, _path), value in zip(calls, resolved, strict=True):
            put(index, field.key, field.value, value)
        groups = list(pending.items())
        completed = await _settle(
            [
                self.values(value_plan, values, value_paths)
                for _, (value_plan, _, values, value_paths) in groups
            ]
        )
        for (key, (_, indexes, _, _)), group_values in zip(groups, completed, strict=True):
            for index, value in zip(indexes, group_values, strict=True):
                results[index][key] = value
        return results

    async def resolve(self, field: ResolvedField, parent: Any, source: Any, path: Path) -> Any:
        """Call the field's resolver as graphql-core's `execute_field` does."""
        executor = self.executor
        info = executor.build_resolve_info(field.field_def, list(field.nodes), parent, path)
        arguments = (
            get_argument_values(
                field.field_def,
                field.nodes[0],
                executor.variable_values,
                field.details[0].fragment_variable_values,
                executor.hide_suggestions,
            )
            if field.takes_arguments
            else {}
        )
        assert field.field_def.resolve is not None
        result = field.field_def.resolve(source, info, **arguments)
        if self.is_awaitable(result):
            result = await result
        if isinstance(result, Exception):
            raise Abandon
        return result

    async def values(self, plan: ValuePlan, values: list[Any], paths: list[Path]) -> list[Any]:
        """Complete values of one field type whose objects need resolvers, all at once."""
        assert plan.objects is not None
        return await self.wrapped(plan.wrappers, plan.objects, values, paths)

    async def wrapped(
        self,
        wrappers: tuple[str, ...],
        objects: ObjectPlan,
        values: list[Any],
        paths: list[Path],
    ) -> list[Any]:
        if not wrappers:
            present = [index for index, value in enumerate(values) if value is not None]
            done = await self.objects(
                objects, [values[i] for i in present], [paths[i] for i in present]
            )
            out: list[Any] = [None] * len(values)
            for index, value in zip(present, done, strict=True):
                out[index] = value
            return out
        head, rest = wrappers[0], wrappers[1:]
        if head == "non_null":
            if any(value is None for value in values):
                raise Abandon
            return await self.wrapped(rest, objects, values, paths)
        flat_values: list[Any] = []
        flat_paths: list[Path] = []
        spans: list[tuple[int, int] | None] = []
        for value, path in zip(values, paths, strict=True):
            if value is None:
                spans.append(None)
                continue
            if value.__class__ is not list:
                raise Abandon  # graphql-core accepts other iterables; let it
            start = len(flat_values)
            flat_values.extend(value)
            flat_paths.extend(Path(path, position, None) for position in range(len(value)))
            spans.append((start, len(flat_values)))
        done = await self.wrapped(rest, objects, flat_values, flat_paths)
        return [None if span is None else done[span[0] : span[1]] for span in spans]


async def _settle(awaitables: list[Awaitable[Any]]) -> list[Any]:
    """Await all; if any failed, raise (the first failure) only once all have settled."""
    if not awaitables:
        return []
    if len(awaitables) == 1:
        return [await awaitables[0]]
    results = await asyncio.gather(*awaitables, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results

"""Compile a validated operation into a plan that builds the response with plain Python.

graphql-core executes every field through the same generic machinery: resolve info,
a resolver call, awaitable checks, value completion by type. For the diary that is
most of the time spent on a request, although almost every field only reads an
attribute of an object a loader has already built. The compiler does the generic
work once per (document, operation, values of the variables `@include`/`@skip` use):

- fields are collected with graphql-core's own `collect_fields`/`collect_subfields`
  (aliases, fragments, inline fragments, `@include`/`@skip`, merging), so the shape
  and order of the response are graphql-core's;
- a field whose resolver is strawberry's default (an attribute read, no extensions)
  becomes an attribute read; `__typename` becomes a constant;
- every other field keeps its resolver (with its permission extension and argument
  handling) and is called exactly as graphql-core calls it (see `gateway.execution.runner`);
- an object type whose subtree has no such resolver gets a generated function that
  reads the attributes and builds the response dict in one go.

Anything the compiler does not handle (introspection, abstract types, `is_type_of`
checks, operations other than queries) raises `NotCompilable`, and the request is
executed by graphql-core. Any value the plan does not expect at run time (a null in a
non-null position, a value that needs coercion the fast path does not know, any
exception) raises `Abandon`, and graphql-core answers the request instead, with its
own errors and null propagation; see `gateway.execution.runner`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final, NoReturn

from graphql import (
    GraphQLField,
    GraphQLLeafType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLSchema,
    OperationDefinitionNode,
    OperationType,
    Undefined,
    is_leaf_type,
)
from graphql.execution.collect_fields import (
    FieldDetails,
    FragmentDetails,
    collect_fields,
    collect_subfields,
)
from graphql.execution.values import VariableValues

from gateway.core.graphql_internals import has_default_resolver, strawberry_field
from gateway.execution.codegen import generate
from gateway.execution.plans import ObjectPlan, ReadField, ResolvedField, SyncCompleter, ValuePlan

TYPENAME: Final = "__typename"
_MIN_INT: Final = -(2**31)
_MAX_INT: Final = 2**31 - 1


class NotCompilable(Exception):
    """The operation uses something the compiler leaves to graphql-core."""


class Abandon(Exception):
    """A value left the plan's plain path: graphql-core must answer this request."""


def abandon(*_args: object) -> NoReturn:
    """Give up on the compiled execution of this request."""
    raise Abandon


@dataclass(slots=True)
class _Compiler:
    schema: GraphQLSchema
    fragments: dict[str, FragmentDetails]
    variable_values: VariableValues
    operation: OperationDefinitionNode
    generated: int = 0
    leaf_cache: dict[int, SyncCompleter] = field(default_factory=dict)

    def root(self) -> ObjectPlan:
        if self.operation.operation is not OperationType.QUERY:
            raise NotCompilable("only queries are compiled")
        root_type = self.schema.query_type
        if root_type is None:
            raise NotCompilable("no query type")
        try:
            grouped, _defer, _forbidden = collect_fields(
                self.schema, self.fragments, self.variable_values, root_type, self.operation
            )
        except RecursionError:
            raise NotCompilable("selections nested too deeply") from None
        return self.object_plan(root_type, grouped)

    def object_plan(
        self, object_type: GraphQLObjectType, grouped: dict[str, list[FieldDetails]]
    ) -> ObjectPlan:
        if object_type.is_type_of is not None:
            raise NotCompilable(f"{object_type.name} has is_type_of")
        typename_keys: list[str] = []
        read_fields: list[ReadField] = []
        resolved_fields: list[ResolvedField] = []
        for key, details in grouped.items():
            name = details[0].node.name.value
            if name == TYPENAME:
                typename_keys.append(key)
                continue
            field_def = object_type.fields.get(name)
            if field_def is None:
                raise NotCompilable(f"{object_type.name}.{name} is not a plain field")
            value = self.value_plan(field_def.type, details)
            attribute = _default_attribute(field_def)
            if attribute is not None:
                read_fields.append(ReadField(key=key, attribute=attribute, value=value))
            else:
                nodes = tuple(detail.node for detail in details)
                resolved_fields.append(
                    ResolvedField(
                        key=key,
                        field_def=field_def,
                        details=details,
                        nodes=nodes,
                        takes_arguments=bool(field_def.args or nodes[0].arguments),
                        value=value,
                    )
                )
        plan = ObjectPlan(
            type=object_type,
            keys=tuple(grouped),
            typename_keys=tuple(typename_keys),
            read_fields=tuple(read_fields),
            resolved_fields=tuple(resolved_fields),
        )
        if not resolved_fields and all(f.value.complete is not None for f in read_fields):
            plan.complete = self.generate(plan)
        return plan

    def value_plan(self, type_: GraphQLOutputType, details: list[FieldDetails]) -> ValuePlan:
        wrappers: list[str] = []
        inner = type_
        while isinstance(inner, GraphQLNonNull | GraphQLList):
            wrappers.append("non_null" if isinstance(inner, GraphQLNonNull) else "list")
            inner = inner.of_type
        if is_leaf_type(inner):
            assert isinstance(inner, GraphQLLeafType)
            return ValuePlan(type_, _wrap_sync(self.leaf(inner), wrappers), tuple(wrappers))
        if not isinstance(inner, GraphQLObjectType):
            raise NotCompilable(f"abstract type {inner}")
        try:
            grouped, _defer, _forbidden = collect_subfields(
                self.schema, self.fragments, self.variable_values, self.operation, inner, details
            )
        except RecursionError:
            raise NotCompilable("selections nested too deeply") from None
        objects = self.object_plan(inner, grouped)
        complete = None
        if objects.complete is not None:
            complete = _wrap_sync(_nullable(objects.complete), wrappers)
        return ValuePlan(type_, complete, tuple(wrappers), objects)

    def leaf(self, leaf_type: GraphQLLeafType) -> SyncCompleter:
        """Completion of a nullable leaf value (non-null is checked by the wrapper)."""
        cached = self.leaf_cache.get(id(leaf_type))
        if cached is None:
            cached = _leaf_completer(leaf_type)
            self.leaf_cache[id(leaf_type)] = cached
        return cached

    def generate(self, plan: ObjectPlan) -> SyncCompleter:
        """A generated function building the response dict of one source object."""
        self.generated += 1
        return generate(plan, abandon=abandon, name=f"{plan.type.name} #{self.generated}")


def compile_operation(
    schema: GraphQLSchema,
    fragments: dict[str, FragmentDetails],
    variable_values: VariableValues,
    operation: OperationDefinitionNode,
) -> ObjectPlan:
    """The plan of the root fields; NotCompilable when graphql-core must execute it."""
    return _Compiler(schema, fragments, variable_values, operation).root()


# --- fields ----------------------------------------------------------------------------


def _default_attribute(field_def: GraphQLField) -> str | None:
    """The attribute a field reads, when its resolver is strawberry's default one."""
    if not has_default_resolver(field_def):
        return None
    definition = strawberry_field(field_def)
    if definition is None or not definition.is_basic_field:
        return None
    if definition.default_resolver is not getattr:
        return None
    return definition.python_name


# --- leaves ----------------------------------------------------------------------------


def _leaf_completer(leaf_type: GraphQLLeafType) -> SyncCompleter:
    """graphql-core's leaf completion (None stays None); a failed coercion abandons."""
    coerce = leaf_type.coerce_output_value

    def complete_leaf(value: Any) -> Any:
        if value is None:
            return None
        try:
            coerced = coerce(value)
        except (ValueError, TypeError, ArithmeticError) as error:
            raise Abandon from error
        if coerced is None or coerced is Undefined:
            raise Abandon
        return coerced

    return complete_leaf


# --- wrappers --------------------------------------------------------------------------


def _wrap_sync(complete: SyncCompleter, wrappers: Sequence[str]) -> SyncCompleter:
    """Apply non-null checks and list mapping (outermost first) around `complete`."""
    for wrapper in reversed(wrappers):
        complete = _non_null(complete) if wrapper == "non_null" else _list_of(complete)
    return complete


def _nullable(complete: SyncCompleter) -> SyncCompleter:
    def complete_nullable(value: Any) -> Any:
        return None if value is None else complete(value)

    return complete_nullable


def _non_null(complete: SyncCompleter) -> SyncCompleter:
    def complete_non_null(value: Any) -> Any:
        if value is None:
            raise Abandon
        completed = complete(value)
        if completed is None:
            raise Abandon
        return completed

    return complete_non_null


def _list_of(complete: SyncCompleter) -> SyncCompleter:
    def complete_list(value: Any) -> Any:
        if value is None:
            return None
        if value.__class__ is not list:
            raise Abandon  # graphql-core accepts other iterables; let it
        return [complete(item) for item in value]

    return complete_list

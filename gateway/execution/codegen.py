"""Generated Python for synchronous object plans: one function builds a response dict.

For an object plan whose subtree needs no resolver, `generate` writes a function that
reads the selected attributes of a source object, completes each value the way
graphql-core would, and returns the response dict with its keys in response order.
Nested single objects are completed inline (no call per object); lists of objects call
the item plan's own generated function. Leaves take inlined fast paths for the values
whose completion is the identity or `isoformat()`: a `str` for String and ID, an `int`
in range for Int, a finite `float` for Float, a `bool` for Boolean, an exact `date`,
`datetime` or `time` for strawberry's Date, DateTime and Time, a member of the enum for
strawberry enums. Any other value goes through graphql-core's own coercion; a null in a
non-null position, or an exception given as a value, abandons the compiled execution.

Only schema names (attribute names, checked to be identifiers), response keys (GraphQL
names, emitted with `repr`) and generated variable names appear in the source; every
other value is passed in the function's namespace.
"""

from __future__ import annotations

import keyword
import math
from datetime import date, datetime, time
from operator import methodcaller
from typing import Any, Final

from graphql import (
    GraphQLBoolean,
    GraphQLEnumType,
    GraphQLFloat,
    GraphQLID,
    GraphQLInt,
    GraphQLLeafType,
    GraphQLNonNull,
    GraphQLOutputType,
    GraphQLScalarType,
    GraphQLString,
)

from gateway.core.graphql_internals import enum_class
from gateway.execution.plans import ObjectPlan, SyncCompleter, ValuePlan

_MIN_INT: Final = -(2**31)
_MAX_INT: Final = 2**31 - 1
# Nested single objects deeper than this are completed by a call instead.
MAX_INLINE_DEPTH: Final = 4

# A value of exactly this class (and range) is its own output for these scalars: the
# checks graphql-core's coercion makes, inlined. Anything else goes through coercion.
_FAST_LEAF_CHECKS: Final[dict[str, str]] = {
    GraphQLString.name: "{v}.__class__ is str",
    GraphQLID.name: "{v}.__class__ is str",
    GraphQLBoolean.name: "{v}.__class__ is bool",
    GraphQLInt.name: f"({{v}}.__class__ is int and {_MIN_INT} <= {{v}} <= {_MAX_INT})",
    GraphQLFloat.name: "({v}.__class__ is float and -_INF < {v} < _INF)",
}
_STANDARD_SCALARS: Final = {
    GraphQLString.name: GraphQLString,
    GraphQLID.name: GraphQLID,
    GraphQLBoolean.name: GraphQLBoolean,
    GraphQLInt.name: GraphQLInt,
    GraphQLFloat.name: GraphQLFloat,
}
# strawberry's date and time scalars output `value.isoformat()`.
_ISOFORMAT_CLASSES: Final[dict[str, type]] = {"Date": date, "DateTime": datetime, "Time": time}


def generate(plan: ObjectPlan, *, abandon: Any, name: str) -> SyncCompleter:
    """A function building the response dict of one source object of `plan`."""
    emitter = _Emitter(abandon)
    emitter.lines.append("def complete(source):")
    result = emitter.object_body(plan, "source", "    ", 0)
    emitter.lines.append(f"    return {result}")
    source = "\n".join(emitter.lines) + "\n"
    code = compile(source, f"<compiled {name}>", "exec")
    exec(code, emitter.namespace)  # see the module docstring for what the source holds
    complete: SyncCompleter = emitter.namespace["complete"]
    return complete


class _Emitter:
    def __init__(self, abandon: Any) -> None:
        self.lines: list[str] = []
        self.namespace: dict[str, Any] = {"_abandon": abandon, "_INF": math.inf}
        self._count = 0

    def fresh(self, prefix: str) -> str:
        self._count += 1
        return f"{prefix}{self._count}"

    def constant(self, prefix: str, value: Any) -> str:
        name = self.fresh(prefix)
        self.namespace[name] = value
        return name

    def emit(self, indent: str, *lines: str) -> None:
        self.lines.extend(indent + line for line in lines)

    def object_body(self, plan: ObjectPlan, source: str, indent: str, depth: int) -> str:
        """Statements building the dict of `source` (not None); returns its variable."""
        # graphql-core turns an exception given as a value into a field error.
        self.emit(indent, f"if isinstance({source}, Exception):", "    _abandon()")
        values: dict[str, str] = {key: repr(plan.type.name) for key in plan.typename_keys}
        for read in plan.read_fields:
            variable = self.fresh("v")
            values[read.key] = variable
            self.emit(indent, f"{variable} = {self.attribute(source, read.attribute)}")
            self.completion(variable, read.value, indent, depth)
        result = self.fresh("d")
        items = ", ".join(f"{key!r}: {values[key]}" for key in plan.keys)
        self.emit(indent, f"{result} = {{{items}}}")
        return result

    def attribute(self, source: str, attribute: str) -> str:
        if attribute.isidentifier() and not keyword.iskeyword(attribute):
            return f"{source}.{attribute}"
        return f"getattr({source}, {self.constant('a', attribute)})"

    def completion(self, v: str, plan: ValuePlan, indent: str, depth: int) -> None:
        """Statements completing variable `v` in place."""
        non_null = isinstance(plan.type, GraphQLNonNull)
        objects = plan.objects
        if objects is not None and plan.wrappers in ((), ("non_null",)):
            self.single_object(v, objects, non_null=non_null, indent=indent, depth=depth)
            return
        if objects is not None and plan.wrappers in (
            ("list", "non_null"),
            ("non_null", "list", "non_null"),
        ):
            self.object_list(v, objects, non_null=non_null, indent=indent)
            return
        assert plan.complete is not None
        complete = self.constant("c", plan.complete)
        inner = plan.type.of_type if isinstance(plan.type, GraphQLNonNull) else plan.type
        self.emit(indent, *_leaf_lines(self, v, inner, complete, non_null=non_null))

    def single_object(
        self, v: str, objects: ObjectPlan, *, non_null: bool, indent: str, depth: int
    ) -> None:
        assert objects.complete is not None
        if non_null:
            self.emit(indent, f"if {v} is None:", "    _abandon()")
            inner_indent = indent
        else:
            self.emit(indent, f"if {v} is not None:")
            inner_indent = indent + "    "
        if depth + 1 > MAX_INLINE_DEPTH:
            self.emit(inner_indent, f"{v} = {self.constant('p', objects.complete)}({v})")
            return
        result = self.object_body(objects, v, inner_indent, depth + 1)
        self.emit(inner_indent, f"{v} = {result}")

    def object_list(self, v: str, objects: ObjectPlan, *, non_null: bool, indent: str) -> None:
        """[Object!] and [Object!]!: each item through the item plan's function."""
        assert objects.complete is not None
        item = self.constant("p", objects.complete)
        mapped = f"[{item}(x) if x is not None else _abandon() for x in {v}]"
        if non_null:
            # Other iterables are graphql-core's to complete.
            self.emit(indent, f"if {v}.__class__ is not list:", "    _abandon()", f"{v} = {mapped}")
            return
        self.emit(
            indent,
            f"if {v} is not None:",
            f"    if {v}.__class__ is not list:",
            "        _abandon()",
            f"    {v} = {mapped}",
        )


def _leaf_lines(
    emitter: _Emitter, v: str, inner: GraphQLOutputType, complete: str, *, non_null: bool
) -> list[str]:
    """Statements completing a leaf (or any other value through `complete`)."""
    if isinstance(inner, GraphQLLeafType) and _STANDARD_SCALARS.get(inner.name) is inner:
        fast = _FAST_LEAF_CHECKS[inner.name].format(v=v)
        guard = f"not {fast}" if non_null else f"{v} is not None and not {fast}"
        return [f"if {guard}:", f"    {v} = {complete}({v})"]
    iso_class = _isoformat_class(inner)
    if iso_class is not None:
        klass = emitter.constant("k", iso_class)
        return [
            f"if {v}.__class__ is {klass}:",
            f"    {v} = {v}.isoformat()",
            "else:",
            f"    {v} = {complete}({v})",
        ]
    if isinstance(inner, GraphQLEnumType):
        names = _enum_names(inner)
        if names is not None:
            lookup = emitter.constant("e", names)
            return [
                f"if {'True' if non_null else f'{v} is not None'}:",
                f"    {v} = {lookup}.get({v}) or {complete}({v})",
            ]
    return [f"{v} = {complete}({v})"]


def _isoformat_class(type_: GraphQLOutputType) -> type | None:
    """The class whose values this scalar outputs with `isoformat()`, for the fast path."""
    if not isinstance(type_, GraphQLScalarType):
        return None
    coerce = type_.coerce_output_value
    if not isinstance(coerce, methodcaller) or repr(coerce) != "operator.methodcaller('isoformat')":
        return None
    return _ISOFORMAT_CLASSES.get(type_.name)


def _enum_names(enum_type: GraphQLEnumType) -> dict[Any, str] | None:
    """Output name of every member of a strawberry enum, as its coercion picks it."""
    python_enum = enum_class(enum_type)
    if python_enum is None:
        return None
    names: dict[Any, str] = {}
    for member in python_enum:
        for name, value in enum_type.values.items():
            if member.value == value.value:
                names[member] = name
                break
    return names

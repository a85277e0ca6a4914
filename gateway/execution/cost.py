"""Query cost limits: a static estimate of an operation's cost, checked before it runs.

In the spirit of the IBM GraphQL Cost Directives spec (`@cost`, `@listSize`), statically:

- every selected field costs its weight: 1 for a field of an object (interface, union)
  type, 0 for a scalar or enum;
- a list field multiplies its own weight and its whole subtree by its list bound:
    * a slicing argument (`first`, `limit`) when the field has one — its value, capped at
      the argument's valid maximum (an out-of-range value is refused by the resolver with
      its own code, so the estimate uses the most that can run);
    * inside a field that opens a date window (e.g. Student.diary(from, to)): the number
      of days of the window, times the list's per-day size (Diary.lessons: 8 a day);
    * else its assumed size (`DEFAULT_LIST_SIZE` when it declares none).
  Sizes and windows are declared on the fields themselves (`resolvers.common.fields`:
  `sized`, `window`) and read here from the schema;
- fragments count where they are spread, every spread of a fragment again; type
  conditions on abstract types and `@include`/`@skip` are counted conservatively: every
  branch counts;
- arguments come from literals, the request's variables, the variable's default, then
  the argument's default; a malformed value counts as the default (execution refuses it);
- introspection (`__schema`, `__type`, `__typename`) is free: bounded by the schema.

Each role has a budget (settings SCHOOL_GATEWAY_MAX_COST_*; anonymous requests get the
smallest). An operation over budget is refused before anything runs, with
QUERY_TOO_COSTLY and `extensions.cost` / `extensions.maxCost`.

The per-operation part (the plan: fields, weights, bounds, where each argument comes
from) is built once per parsed operation and kept as long as the operation is
(`CostLimits`); a request only evaluates the plan with its variables, memoised per
distinct (normalised) values. Both are linear in the document's size: a named fragment
is planned once however often it is spread (the plan is a DAG), and its cost is
evaluated once per window size, so fragments that each spread the next one twice cost
2^n without 2^n work. Costs saturate at COST_CEILING.
"""

from __future__ import annotations

import math
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any, Final

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLField,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValueNode,
    VariableNode,
    get_named_type,
    is_composite_type,
    value_from_ast_untyped,
)

from auth.viewer import Role, Viewer
from gateway.core.errors import MESSAGES, ErrorCode
from gateway.core.settings import Settings
from resolvers.common.arguments import MAX_PAGE_SIZE
from resolvers.common.fields import (
    ListSize,
    Window,
    field_definition,
    field_window,
    is_list_type,
    list_size,
)

DEFAULT_LIST_SIZE: Final = 50
SLICING_ARGUMENTS: Final = ("first", "limit")
MAX_SLICE: Final = MAX_PAGE_SIZE
PLAN_CACHE_SIZE: Final = 1024
MEMO_SIZE: Final = 64
# Costs saturate here: far above any budget, and still an exact JSON number.
COST_CEILING: Final = 10**15
_MAX_DATE_TEXT: Final = 32
_OTHER: Final = object()  # a value the estimate treats as neither a count nor a date
Formatted = dict[str, Any]


# --- the plan of an operation ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Arg:
    """Where an argument's value comes from: a literal, or a variable with fallbacks.

    Values are kept normalised (`_normalised`): a plan never holds a client's raw text.
    """

    value: Any = None  # the literal (or the argument's default)
    variable: str | None = None
    variable_default: Any = None
    has_variable_default: bool = False

    def resolve(self, variables: Mapping[str, Any]) -> Any:
        if self.variable is None:
            return self.value
        if self.variable in variables and variables[self.variable] is not None:
            return variables[self.variable]
        return self.variable_default if self.has_variable_default else self.value


@dataclass(frozen=True, slots=True, eq=False)
class _Node:
    """A selected field: its weight, how its list bound is found, its sub-selection."""

    weight: int
    children: tuple[_Part, ...]
    size: ListSize | None = None  # a list without a slicing argument
    slice_arg: _Arg | None = None  # a list sized by `first`/`limit`
    window: Window | None = None  # opens a date window for its subtree
    window_args: tuple[_Arg, _Arg] | None = None  # (from, to)

    def bound(self, variables: Mapping[str, Any], days: int | None) -> int:
        if self.slice_arg is not None:
            return _slice(self.slice_arg.resolve(variables))
        if self.size is None:
            return 1
        if self.size.per_day is not None and days is not None:
            return max(1, math.ceil(days * self.size.per_day))
        return self.size.assumed


@dataclass(frozen=True, slots=True, eq=False)
class _Fragment:
    """A named fragment's selection, planned once however often it is spread: the plan
    is a DAG, and its cost is evaluated once per window (`_Evaluation`)."""

    children: tuple[_Part, ...]


_Part = _Node | _Fragment


def _slice(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return min(max(value, 1), MAX_SLICE)
    return DEFAULT_LIST_SIZE


def _window_days(
    window: Window, args: tuple[_Arg, _Arg], variables: Mapping[str, Any], max_days: int
) -> int:
    start, end = (_date(arg.resolve(variables)) for arg in args)
    limit = window.max_days or max_days
    if start is None and end is None:
        return min(window.default_days, limit)
    if start is None or end is None:
        return min(window.single_days, limit)
    return min(max((end - start).days + 1, 1), limit)


def _date(value: Any) -> date | None:
    if isinstance(value, date):
        return value
    if isinstance(value, str) and len(value) <= _MAX_DATE_TEXT:
        try:
            return date.fromisoformat(value)
        except ValueError:
            return None
    return None


def _normalised(value: Any) -> Hashable:
    """What the estimate can see of a value: a clamped count, a date, absent or "other".

    Two values with the same normal form give the same cost, so the memo of costs is
    keyed by these (small, hashable) forms and never by what a client sent.
    """
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return min(max(value, 0), MAX_SLICE + 1)
    parsed = _date(value)
    return parsed if parsed is not None else _OTHER


class _Evaluation:
    """One evaluation of a plan with one request's variables: each fragment's cost is
    computed once per window size, so the work is linear in the plan's size."""

    def __init__(self, variables: Mapping[str, Any], max_days: int) -> None:
        self.variables = variables
        self.max_days = max_days
        self.fragments: dict[tuple[int, int | None], int] = {}

    def parts(self, parts: tuple[_Part, ...], days: int | None) -> int:
        return min(sum(self.part(part, days) for part in parts), COST_CEILING)

    def part(self, part: _Part, days: int | None) -> int:
        if isinstance(part, _Node):
            return self.node(part, days)
        key = (id(part), days)  # the plan (and so `part`) outlives the evaluation
        cost = self.fragments.get(key)
        if cost is None:
            cost = self.fragments[key] = self.parts(part.children, days)
        return cost

    def node(self, node: _Node, days: int | None) -> int:
        if node.window is not None and node.window_args is not None:
            days = _window_days(node.window, node.window_args, self.variables, self.max_days)
        inner = node.weight + self.parts(node.children, days)
        return min(inner * node.bound(self.variables, days), COST_CEILING)


@dataclass(frozen=True, slots=True, eq=False)
class OperationPlan:
    """The cost plan of one operation; `variables` are those its bounds depend on."""

    roots: tuple[_Part, ...]
    variables: tuple[str, ...]

    def cost(self, variables: Mapping[str, Any], max_days: int) -> int:
        return _Evaluation(variables, max_days).parts(self.roots, None)


class _Planner:
    """Builds an operation's plan: each field and each named fragment is planned once."""

    def __init__(self, schema: GraphQLSchema, document: DocumentNode) -> None:
        self.schema = schema
        self.fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        self.planned: dict[str, _Fragment] = {}
        self.in_progress: set[str] = set()
        self.variable_defaults: dict[str, Any] = {}
        self.used_variables: set[str] = set()

    def plan(self, operation: OperationDefinitionNode) -> OperationPlan:
        for definition in operation.variable_definitions or ():
            if definition.default_value is not None:
                name = definition.variable.name.value
                default = _literal(definition.default_value)
                self.variable_defaults[name] = _normalised(default)
        root = self.schema.get_root_type(operation.operation)
        assert root is not None  # validated documents only
        roots = self._selections(root, operation.selection_set)
        return OperationPlan(roots=roots, variables=tuple(sorted(self.used_variables)))

    def _selections(
        self, parent: GraphQLNamedType, selections: SelectionSetNode
    ) -> tuple[_Part, ...]:
        parts: list[_Part] = []
        for selection in selections.selections:
            if isinstance(selection, FieldNode):
                node = self._field(parent, selection)
                if node is not None:
                    parts.append(node)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                target = self.schema.get_type(condition.name.value) if condition else parent
                parts += self._selections(target or parent, selection.selection_set)
            elif isinstance(selection, FragmentSpreadNode):
                fragment = self._fragment(selection.name.value, parent)
                if fragment is not None:
                    parts.append(fragment)
        return tuple(parts)

    def _fragment(self, name: str, parent: GraphQLNamedType) -> _Fragment | None:
        planned = self.planned.get(name)
        if planned is not None:
            return planned
        fragment = self.fragments.get(name)
        if fragment is None or name in self.in_progress:  # validation forbids both
            return None
        self.in_progress.add(name)
        target = self.schema.get_type(fragment.type_condition.name.value) or parent
        planned = _Fragment(self._selections(target, fragment.selection_set))
        self.in_progress.discard(name)
        self.planned[name] = planned
        return planned

    def _field(self, parent: GraphQLNamedType, node: FieldNode) -> _Node | None:
        name = node.name.value
        if name.startswith("__"):
            return None  # introspection: bounded by the schema, no data read
        definition = field_definition(parent, name)
        if definition is None:
            return None
        field_type = definition.type
        named = get_named_type(field_type)
        children: tuple[_Part, ...] = ()
        if node.selection_set is not None and is_composite_type(named):
            # Abstract types: fields on the type itself plus every inline branch count.
            children = self._selections(named, node.selection_set)
        weight = _weight(definition)
        window = field_window(definition)
        window_args = None
        if window is not None:
            window_args = (self._arg(node, definition, "from"), self._arg(node, definition, "to"))
        size: ListSize | None = None
        slice_arg: _Arg | None = None
        if is_list_type(field_type):
            slicing = next((arg for arg in SLICING_ARGUMENTS if arg in definition.args), None)
            if slicing is not None:
                slice_arg = self._arg(node, definition, slicing)
            else:
                size = _list_size(definition)
        if weight == 0 and not children and size is None and slice_arg is None:
            return None  # a free scalar leaf: nothing to add
        return _Node(weight, children, size, slice_arg, window, window_args)

    def _arg(self, node: FieldNode, definition: GraphQLField, name: str) -> _Arg:
        argument = definition.args.get(name)
        default = None if argument is None else _plain_default(argument.default_value)
        given = next((a.value for a in node.arguments or () if a.name.value == name), None)
        if given is None:
            return _Arg(value=default)
        if isinstance(given, VariableNode):
            variable = given.name.value
            self.used_variables.add(variable)
            return _Arg(
                value=default,
                variable=variable,
                variable_default=self.variable_defaults.get(variable),
                has_variable_default=variable in self.variable_defaults,
            )
        return _Arg(value=_normalised(_literal(given)))


def _weight(field: GraphQLField) -> int:
    """1 for a field of an object (interface, union) type, 0 for a scalar or enum."""
    return 1 if is_composite_type(get_named_type(field.type)) else 0


def _list_size(field: GraphQLField) -> ListSize:
    return list_size(field) or ListSize(assumed=DEFAULT_LIST_SIZE)


def _literal(value: ValueNode) -> Any:
    try:
        return value_from_ast_untyped(value)
    except (ValueError, TypeError):
        return None


def _plain_default(value: Any) -> Any:
    """An argument default as the plan uses it (graphql-core's Undefined → None)."""
    return value if isinstance(value, int | str | date) else None


# --- budgets and the check -----------------------------------------------------------------


def budgets(settings: Settings) -> dict[Role | None, int]:
    """The maximum cost per role; None is the anonymous viewer."""
    return {
        None: settings.max_cost_anonymous,
        Role.PARENT: settings.max_cost_parent,
        Role.STUDENT: settings.max_cost_student,
        Role.SCHOOL_ADMIN: settings.max_cost_school_admin,
        Role.REGIONAL_ANALYST: settings.max_cost_regional_analyst,
    }


class CostLimits:
    """Estimates and checks operation costs; one per application.

    Plans are kept per operation node for as long as that node lives (the document
    cache holds it); this cache holds no node itself, so it never keeps a document
    alive. Memos of costs are keyed by normalised values (`_normalised`).
    """

    def __init__(self, schema: GraphQLSchema, settings: Settings) -> None:
        self.schema = schema
        self.max_days = settings.max_diary_days
        self.budgets = budgets(settings)
        self._plans: OrderedDict[int, _PlanEntry] = OrderedDict()

    def max_cost(self, viewer: Viewer | None) -> int:
        return self.budgets[None if viewer is None else viewer.role]

    def estimate(
        self,
        document: DocumentNode,
        operation: OperationDefinitionNode,
        variables: Mapping[str, Any] | None,
    ) -> int:
        """The operation's cost with these variables (a validated document)."""
        plan, memo = self._plan(document, operation)
        values = variables or {}
        key = tuple(_normalised(values.get(name)) for name in plan.variables)
        cached = memo.get(key)
        if cached is None:
            cached = plan.cost(values, self.max_days)
            if len(memo) >= MEMO_SIZE:
                memo.clear()
            memo[key] = cached
        return cached

    def refusal(
        self,
        document: DocumentNode,
        operation: OperationDefinitionNode,
        variables: Mapping[str, Any] | None,
        viewer: Viewer | None,
    ) -> Formatted | None:
        """The QUERY_TOO_COSTLY error when the operation is over the viewer's budget."""
        cost = self.estimate(document, operation, variables)
        maximum = self.max_cost(viewer)
        if cost <= maximum:
            return None
        return {
            "message": f"{MESSAGES[ErrorCode.QUERY_TOO_COSTLY]} Стоимость {cost}, "
            f"допустимо не более {maximum}.",
            "extensions": {
                "code": ErrorCode.QUERY_TOO_COSTLY.value,
                "cost": cost,
                "maxCost": maximum,
            },
        }

    def _plan(
        self, document: DocumentNode, operation: OperationDefinitionNode
    ) -> tuple[OperationPlan, dict[Hashable, int]]:
        key = id(operation)
        entry = self._plans.get(key)
        if entry is not None and entry.operation() is operation:
            self._plans.move_to_end(key)
            return entry.plan, entry.memo
        plan = _Planner(self.schema, document).plan(operation)
        entry = _PlanEntry(weakref.ref(operation, self._forget(key)), plan, {})
        self._plans[key] = entry
        if len(self._plans) > PLAN_CACHE_SIZE:
            self._plans.popitem(last=False)
        return plan, entry.memo

    def _forget(self, key: int) -> Callable[[weakref.ref[OperationDefinitionNode]], None]:
        """A callback dropping the plan of a node that is gone (only its own entry)."""
        plans = weakref.ref(self._plans)

        def forget(dead: weakref.ref[OperationDefinitionNode]) -> None:
            live = plans()
            entry = None if live is None else live.get(key)
            if live is not None and entry is not None and entry.operation is dead:
                del live[key]

        return forget


@dataclass(frozen=True, slots=True)
class _PlanEntry:
    operation: weakref.ref[OperationDefinitionNode]
    plan: OperationPlan
    memo: dict[Hashable, int]


def weights_table(schema: GraphQLSchema) -> list[tuple[str, str, str]]:
    """(type.field, weight, list bound) of every field that costs something (docs)."""
    rows: list[tuple[str, str, str]] = []
    for type_name, named in sorted(schema.type_map.items()):
        if type_name.startswith("__") or not isinstance(named, GraphQLObjectType):
            continue
        for field_name, field in named.fields.items():
            weight = _weight(field)
            bound = _bound_text(field)
            if weight or bound != "1":
                rows.append((f"{type_name}.{field_name}", str(weight), bound))
    return rows


def _bound_text(field: GraphQLField) -> str:
    if not is_list_type(field.type):
        return "1 (opens a date window)" if field_window(field) else "1"
    slicing = next((arg for arg in SLICING_ARGUMENTS if arg in field.args), None)
    if slicing is not None:
        return f"`{slicing}` (≤ {MAX_SLICE})"
    size = _list_size(field)
    if size.per_day is not None:
        return f"{size.per_day:.3g} × window days (else {size.assumed})"
    return f"assumed {size.assumed}"

"""A differencing attacker on the regional analytics, and the oracle that judges it.

The attacker talks to the app over HTTP as a regional analyst and combines answers the
way the threat model of docs/analytics.md allows: a total minus the published groups
(and minus `spanning`), two filters that differ by one value of a dimension, a coarse
grouping minus the finer one, the same question asked twice. Each figure it derives
comes with the TARGET it hypothesises the figure measures: a set of journal records
(a scope, optionally narrowed to some groups of a grouping).

The oracle reads raw rows from the `school` tables over the owner connection (not the
gateway's units) and calls a derived figure a LEAK when it is > 0, equals the true
count of its target and the target covers fewer than k distinct students. A directly
answered group is checked the same way (its target is the group itself).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import asyncpg
import httpx

from tests.support.analytics_support import KEY_FIELDS, ask

Kind = Literal["marks", "attendance"]
# A base cell: (school, municipality, grade, subject, scheme, number, work type | code).
CellKey = tuple[Any, ...]
GroupKey = tuple[Any, ...]
# "count", "counted", "weight" (weightSum in hundredths), "value:5" (marks); "count", "code:Н"
Figures = dict[str, int]
_POSITION = {"SCHOOL": 0, "MUNICIPALITY": 1, "GRADE": 2, "SUBJECT": 3, "WORK_TYPE": 6, "CODE": 6}

_MARK_ROWS = """
SELECT c.school_id, s.municipality_id, c.grade, l.subject_id, p.scheme, p.number,
       m.work_type_id, m.student_id, m.value,
       (m.counts_in_average AND m.numeric_value IS NOT NULL AND m.weight > 0) AS counted,
       (m.weight * 100)::integer AS weight
FROM school.marks m
JOIN school.lessons l ON l.id = m.lesson_id
JOIN school.classes c ON c.id = l.class_id
JOIN school.schools s ON s.id = c.school_id
JOIN school.periods p ON p.school_id = c.school_id AND p.year_id = c.year_id
     AND p.scheme = c.period_scheme AND m.date BETWEEN p.starts_on AND p.ends_on
"""
_ATTENDANCE_ROWS = """
SELECT c.school_id, s.municipality_id, c.grade, l.subject_id, p.scheme, p.number,
       a.code, a.student_id
FROM school.attendance a
JOIN school.lessons l ON l.id = a.lesson_id
JOIN school.classes c ON c.id = l.class_id
JOIN school.schools s ON s.id = c.school_id
JOIN school.periods p ON p.school_id = c.school_id AND p.year_id = c.year_id
     AND p.scheme = c.period_scheme AND a.date BETWEEN p.starts_on AND p.ends_on
"""


def group_key(key: CellKey, dims: Sequence[str]) -> GroupKey:
    """The key of the group of `dims` a base cell belongs to (PERIOD: (scheme, number))."""
    return tuple((key[4], key[5]) if dim == "PERIOD" else key[_POSITION[dim]] for dim in dims)


# --- scopes and targets --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Scope:
    """A filter of the API (None: every value); `types` are work types or codes."""

    schools: frozenset[int] | None = None
    municipalities: frozenset[int] | None = None
    grades: frozenset[int] | None = None
    subjects: frozenset[int] | None = None
    scheme: str | None = None
    numbers: frozenset[int] | None = None
    types: frozenset[Any] | None = None

    def matches(self, key: CellKey) -> bool:
        checks = (
            (self.schools, key[0]),
            (self.municipalities, key[1]),
            (self.grades, key[2]),
            (self.subjects, key[3]),
            (self.numbers, key[5]),
            (self.types, key[6]),
        )
        if self.scheme is not None and key[4] != self.scheme:
            return False
        return all(allowed is None or value in allowed for allowed, value in checks)

    def __str__(self) -> str:
        parts = [
            f"{name}={','.join(map(str, sorted(values)))}"
            for name, values in (
                ("school", self.schools),
                ("municipality", self.municipalities),
                ("grade", self.grades),
                ("subject", self.subjects),
                ("number", self.numbers),
                ("type", self.types),
            )
            if values is not None
        ]
        if self.scheme is not None:
            parts.append(self.scheme)
        return "{" + " ".join(parts) + "}"

    def graphql(self, kind: Kind) -> dict[str, Any]:
        """The AnalyticsFilter of this scope."""
        given: dict[str, Any] = {}
        ids = {"schoolIds": self.schools, "municipalityIds": self.municipalities}
        ids |= {"subjectIds": self.subjects}
        if kind == "marks":
            ids["workTypeIds"] = self.types
        elif self.types is not None:
            given["codes"] = sorted(self.types)
        for name, values in ids.items():
            if values is not None:
                given[name] = [str(v) for v in sorted(values)]
        if self.grades is not None:
            given["grades"] = sorted(self.grades)
        if self.numbers is not None:
            given["periodNumbers"] = sorted(self.numbers)
        if self.scheme is not None:
            given["periodScheme"] = self.scheme.upper()
        return given

    def narrowed(self, dims: Sequence[str], key: GroupKey) -> Scope:
        """This scope restricted to one group of `dims`."""
        scope = self
        for dim, value in zip(dims, key, strict=True):
            if dim == "PERIOD":
                scheme, number = value
                scope = scope.only("NUMBER", number)
                scheme_ok = scope.scheme in (None, scheme)
                scope = replace(scope, scheme=scheme)
                if not scheme_ok:
                    scope = replace(scope, numbers=frozenset())
            else:
                scope = scope.only(dim, value)
        return scope

    def only(self, dim: str, value: Any) -> Scope:
        """This scope with `dim` restricted to `value` (intersected)."""
        name = _FIELD[dim]
        current: frozenset[Any] | None = getattr(self, name)
        values = frozenset({value}) if current is None else current & {value}
        changed: dict[str, Any] = {name: values}
        return replace(self, **changed)

    def without(self, dim: str, value: Any) -> Scope:
        """This scope with one value of `dim` left out of its explicit list."""
        name = _FIELD[dim]
        current: frozenset[Any] | None = getattr(self, name)
        assert current is not None and value in current, (dim, value, current)
        changed: dict[str, Any] = {name: current - {value}}
        return replace(self, **changed)

    def with_values(self, dim: str, values: Iterable[Any]) -> Scope:
        changed: dict[str, Any] = {_FIELD[dim]: frozenset(values)}
        return replace(self, **changed)


_FIELD = {
    "SCHOOL": "schools",
    "MUNICIPALITY": "municipalities",
    "GRADE": "grades",
    "SUBJECT": "subjects",
    "NUMBER": "numbers",
    "WORK_TYPE": "types",
    "CODE": "types",
}


@dataclass(frozen=True, slots=True)
class Target:
    """The records of `scope` whose group of `dims` is in `include` (None: any) and not
    in `exclude`: what the attacker hypothesises a derived figure measures."""

    scope: Scope
    dims: tuple[str, ...] = ()
    include: frozenset[GroupKey] | None = None
    exclude: frozenset[GroupKey] = frozenset()
    what: str = ""


@dataclass(frozen=True, slots=True)
class Derived:
    attack: str
    figures: Mapping[str, int]
    target: Target


@dataclass(frozen=True, slots=True)
class Leak:
    derived: Derived
    figure: str
    value: int
    students: int

    def __str__(self) -> str:
        target = self.derived.target
        return (
            f"{self.derived.attack}: {self.figure} = {self.value} = truth of "
            f"{target.what or target} ({self.students} students)"
        )


# --- the oracle ----------------------------------------------------------------------


@dataclass(slots=True)
class Cell:
    key: CellKey
    students: set[int] = field(default_factory=set)
    counts: Counter[str] = field(default_factory=Counter)


class Journal:
    """The journal's base cells of one kind, from raw rows: the oracle's truth."""

    def __init__(self, kind: Kind, cells: dict[CellKey, Cell]) -> None:
        self.kind = kind
        self.cells = cells
        self._by_school: dict[int, list[Cell]] = defaultdict(list)
        self.municipality: dict[int, int] = {}
        for cell in cells.values():
            self._by_school[cell.key[0]].append(cell)
            self.municipality[cell.key[0]] = cell.key[1]
        self._grouped: dict[tuple[Scope, tuple[str, ...]], dict[GroupKey, list[Cell]]] = {}

    def values(self, dim: str) -> set[Any]:
        if dim == "NUMBER":
            return {key[5] for key in self.cells}
        if dim == "PERIOD":
            return {(key[4], key[5]) for key in self.cells}
        return {key[_POSITION[dim]] for key in self.cells}

    def schools_of(self, municipality: int) -> frozenset[int]:
        return frozenset(s for s, m in self.municipality.items() if m == municipality)

    def in_scope(self, scope: Scope) -> list[Cell]:
        schools: Iterable[int] = self._by_school
        if scope.schools is not None:
            schools = scope.schools
        return [c for s in schools for c in self._by_school.get(s, ()) if scope.matches(c.key)]

    def grouped(self, scope: Scope, dims: tuple[str, ...]) -> dict[GroupKey, list[Cell]]:
        found = self._grouped.get((scope, dims))
        if found is None:
            found = defaultdict(list)
            for cell in self.in_scope(scope):
                found[group_key(cell.key, dims)].append(cell)
            self._grouped[(scope, dims)] = found
        return found

    def target_cells(self, target: Target) -> list[Cell]:
        groups = self.grouped(target.scope, target.dims)
        keys = groups.keys() if target.include is None else target.include & groups.keys()
        return [cell for key in keys if key not in target.exclude for cell in groups[key]]

    def students(self, cells: Iterable[Cell], figure: str) -> int:
        """Distinct students of the target set a figure is about: an attendance code is a
        dimension of the records (the set is that code's); a mark value is not (the set
        is the group's marks)."""
        if figure.startswith("code:"):
            code = figure.removeprefix("code:")
            cells = [cell for cell in cells if cell.key[6] == code]
        return len(set().union(*(cell.students for cell in cells)))

    def judge(self, derived: Iterable[Derived], k: int) -> Verdict:
        """Every derived figure against the truth of its target.

        A figure about a set of records (a record count, an attendance code's count) is
        exact when it equals that set's truth. A figure about part of the set (the marks
        of one value, the counted marks) only when the set's record count is exact too:
        then the derived answer IS the target set's; otherwise a merged unit whose other
        records happen to have no mark of that value would count as exact. An exact
        figure (> 0) about fewer than k students is a leak."""
        verdict = Verdict()
        for item in derived:
            cells = self.target_cells(item.target)

            def exact(figure: str, value: int) -> bool:
                return value == sum(cell.counts[figure] for cell in cells)  # noqa: B023

            for figure, value in item.figures.items():
                verdict.checked += 1
                whole = figure == "count" or figure.startswith("code:")
                if value <= 0 or not exact(figure, value):
                    continue
                if not whole and not exact("count", item.figures.get("count", -1)):
                    continue
                verdict.exact += 1
                students = self.students(cells, figure)
                if students < k:
                    verdict.leaks.append(Leak(item, figure, value, students))
        return verdict


@dataclass(slots=True)
class Verdict:
    """How many derived figures were checked, how many equal their target's truth, and
    the leaks among those."""

    checked: int = 0
    exact: int = 0
    leaks: list[Leak] = field(default_factory=list)


async def load_journal(conn: asyncpg.Connection, kind: Kind) -> Journal:
    cells: dict[CellKey, Cell] = {}
    for row in await conn.fetch(_MARK_ROWS if kind == "marks" else _ATTENDANCE_ROWS):
        key = tuple(row[:7])
        cell = cells.get(key)
        if cell is None:
            cell = cells[key] = Cell(key)
        cell.students.add(row["student_id"])
        cell.counts["count"] += 1
        if kind == "marks":
            cell.counts[f"value:{row['value']}"] += 1
            if row["counted"]:
                cell.counts["counted"] += 1
                cell.counts["weight"] += row["weight"]
        else:
            cell.counts[f"code:{row['code']}"] += 1
    return Journal(kind, cells)


# --- answers -------------------------------------------------------------------------

_MARK_GROUP = "suppressed markCount countedMarkCount weightSum distribution { value count }"
_ATTENDANCE_GROUP = "suppressed records byCode { code records }"


def _query(kind: Kind) -> str:
    fields = _MARK_GROUP if kind == "marks" else _ATTENDANCE_GROUP
    dimension = "MarkDimension" if kind == "marks" else "AttendanceDimension"
    return (
        f"query($g: [{dimension}!]!, $f: AnalyticsFilter) {{ regionalAnalytics {{ "
        f"{kind}(groupBy: $g, filter: $f) {{ minGroupSize total {{ {fields} }} "
        f"spanning {{ {fields} }} groups {{ {KEY_FIELDS} {fields} }} }} }} }}"
    )


def _figures(kind: Kind, group: Mapping[str, Any] | None) -> Figures | None:
    """A group's counts (None when absent, suppressed, or an attendance group whose
    records are all withheld: `records` null)."""
    if group is None or group["suppressed"]:
        return None
    if kind == "attendance" and group["records"] is None:
        return None
    if kind == "marks":
        figures = {
            "count": group["markCount"],
            "counted": group["countedMarkCount"],
            "weight": round(group["weightSum"] * 100),
        }
        for item in group.get("distribution") or ():
            figures[f"value:{item['value']}"] = item["count"]
        return figures
    figures = {"count": group["records"]}
    for item in group["byCode"] or ():
        figures[f"code:{item['code']}"] = item["records"]
    return figures


def _key(group: Mapping[str, Any], dims: Sequence[str]) -> GroupKey:
    key = group["key"]
    parts: list[Any] = []
    for dim in dims:
        if dim == "PERIOD":
            parts.append((key["period"]["scheme"].lower(), key["period"]["number"]))
        elif dim == "GRADE":
            parts.append(key["grade"])
        elif dim == "CODE":
            parts.append(key["code"])
        else:
            name = {"WORK_TYPE": "workType"}.get(dim, dim.lower())
            parts.append(int(key[name]["id"]))
    return tuple(parts)


def minus(a: Mapping[str, int] | None, *others: Mapping[str, int] | None) -> Figures:
    """a − others, figure by figure (an absent or suppressed figure counts as 0)."""
    result: Figures = Counter(a or {})
    for other in others:
        for name, value in (other or {}).items():
            result[name] = result.get(name, 0) - value
    return dict(result)


@dataclass(frozen=True, slots=True)
class Answer:
    dims: tuple[str, ...]
    scope: Scope
    total: Figures | None
    spanning: Figures | None
    groups: dict[GroupKey, Figures | None]

    def published(self) -> dict[GroupKey, Figures]:
        return {key: figures for key, figures in self.groups.items() if figures is not None}


# --- the attacker --------------------------------------------------------------------


class Attacker:
    """Asks as the analyst and records every figure it can derive, with its target."""

    def __init__(self, client: httpx.AsyncClient, token: str, kind: Kind) -> None:
        self.client = client
        self.token = token
        self.kind = kind
        self.queries = 0
        self.derived: list[Derived] = []
        self.attacks: Counter[str] = Counter()
        self.min_group_size: int | None = None
        self._answers: dict[tuple[tuple[str, ...], Scope], Answer] = {}

    def _derive(self, attack: str, figures: Mapping[str, int], target: Target) -> None:
        self.derived.append(Derived(attack, figures, target))
        self.attacks[attack] += 1

    async def answer(self, dims: Sequence[str], scope: Scope, *, again: bool = False) -> Answer:
        """The answer of (grouping, filter); asked again only with `again`. Every published
        group of a new answer is a direct figure about its group."""
        cached = self._answers.get((tuple(dims), scope))
        if cached is not None and not again:
            return cached
        variables = {"g": list(dims), "f": scope.graphql(self.kind)}
        body = await ask(self.client, self.token, _query(self.kind), variables)
        self.queries += 1
        assert "errors" not in body, body
        data = body["data"]["regionalAnalytics"][self.kind]
        self.min_group_size = data["minGroupSize"]
        answer = Answer(
            tuple(dims),
            scope,
            _figures(self.kind, data["total"]),
            _figures(self.kind, data["spanning"]),
            {_key(g, dims): _figures(self.kind, g) for g in data["groups"]},
        )
        if cached is None:
            self._answers[(tuple(dims), scope)] = answer
            self._direct(answer)
        return answer

    def _direct(self, answer: Answer) -> None:
        dims, scope = answer.dims, answer.scope
        if answer.total is not None:
            self._derive("direct", answer.total, Target(scope, what=f"total of {scope}"))
        for key, figures in answer.published().items():
            what = f"group {dims}={key} of {scope}"
            self._derive("direct", figures, Target(scope, dims, frozenset({key}), what=what))

    async def totals_minus_groups(self, dims: Sequence[str], scope: Scope) -> None:
        """total − Σ published groups, and that − spanning: the suppressed groups?"""
        answer = await self.answer(dims, scope)
        rest = minus(answer.total, *answer.published().values())
        self._coarse_minus_fine("total−groups", scope, (), (), rest, answer)
        rest = minus(rest, answer.spanning)
        self._coarse_minus_fine("total−groups−spanning", scope, (), (), rest, answer)

    async def grouping_pair(self, coarse: Sequence[str], fine: Sequence[str], scope: Scope) -> None:
        """Each coarse group (and the total) − Σ its published finer groups."""
        assert set(coarse) < set(fine), (coarse, fine)
        upper = await self.answer(coarse, scope)
        lower = await self.answer(fine, scope)
        positions = [fine.index(dim) for dim in coarse]
        coarse_groups = upper.groups if coarse else {(): upper.total}
        for key, figures in coarse_groups.items():
            if figures is None:
                continue
            below = [
                fine_figures
                for fine_key, fine_figures in lower.published().items()
                if tuple(fine_key[i] for i in positions) == key
            ]
            attack = f"pair {'×'.join(coarse) or 'total'}/{'×'.join(fine)}"
            self._coarse_minus_fine(
                attack, scope, tuple(coarse), key, minus(figures, *below), lower
            )

    def _coarse_minus_fine(
        self,
        attack: str,
        scope: Scope,
        coarse: tuple[str, ...],
        key: GroupKey,
        rest: Figures,
        fine: Answer,
    ) -> None:
        """The hypotheses about a remainder: the records outside the published finer
        groups, the suppressed ones together, and each suppressed one alone."""
        within = scope.narrowed(coarse, key)
        positions = [fine.dims.index(dim) for dim in coarse]
        suppressed = frozenset(
            fine_key
            for fine_key, figures in fine.groups.items()
            if figures is None and tuple(fine_key[i] for i in positions) == key
        )
        published = frozenset(fine.published())
        self._derive(
            attack,
            rest,
            Target(within, fine.dims, exclude=published, what=f"{within} outside published"),
        )
        if len(suppressed) > 1:
            what = f"suppressed {fine.dims} of {within}"
            self._derive(attack, rest, Target(within, fine.dims, suppressed, what=what))
        for one in suppressed:
            what = f"suppressed {fine.dims}={one} of {within}"
            self._derive(attack, rest, Target(within, fine.dims, frozenset({one}), what=what))

    async def filter_difference(
        self, dims: Sequence[str], scope: Scope, dim: str, value: Any
    ) -> None:
        """answer(F) − answer(F without one value of `dim`), the total and per group: the
        records of that value?"""
        full = await self.answer(dims, scope)
        less = await self.answer(dims, scope.without(dim, value))
        target = scope.only(dim, value)
        attack = f"±{dim}"
        self._derive(attack, minus(full.total, less.total), Target(target, what=f"{target}"))
        for key in full.groups.keys() | less.groups.keys():
            rest = minus(full.groups.get(key), less.groups.get(key))
            what = f"{dims}={key} of {target}"
            self._derive(attack, rest, Target(target, tuple(dims), frozenset({key}), what=what))

    async def repeat(self, dims: Sequence[str], scope: Scope) -> bool:
        """The same question twice: the difference of the answers (nothing to average
        when they are equal). Whether they were equal."""
        first = await self.answer(dims, scope)
        second = await self.answer(dims, scope, again=True)
        attack = "repeat"
        self._derive(attack, minus(first.total, second.total), Target(scope, what=str(scope)))
        for key in first.groups.keys() | second.groups.keys():
            rest = minus(first.groups.get(key), second.groups.get(key))
            self._derive(attack, rest, Target(scope, tuple(dims), frozenset({key})))
        return first == second

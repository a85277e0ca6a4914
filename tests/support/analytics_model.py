"""The expected figures of the regional analytics, computed independently (issue 12).

A pure-Python model of the "merged units" rule (/tmp/i12 spec, docs/analytics.md), written
without the production code: base (L0) cells of raw journal rows, merged upward along the
fixed hierarchy of levels into units of at least k distinct students, then an answer to a
grouping + filter: included units (every value in the filter), attributed (single-valued
on every grouped dimension) or spanning, groups listed through their attributed units or
their small ("shadow") L0 cells, totals = groups + spanning.

A cell key is (school, municipality, grade, subject, year, scheme, number, detail), detail
being the work type (marks) or the code (attendance); a lesson cell key has no detail.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

CellKey = tuple[Any, ...]
Keep = Callable[[CellKey], bool]
SCHOOL, MUNICIPALITY, GRADE, SUBJECT, YEAR, SCHEME, NUMBER, DETAIL = range(8)
DIMENSION_INDEX: Mapping[str, tuple[int, ...]] = {
    "SCHOOL": (SCHOOL,),
    "MUNICIPALITY": (MUNICIPALITY,),
    "GRADE": (GRADE,),
    "SUBJECT": (SUBJECT,),
    "PERIOD": (YEAR, SCHEME, NUMBER),
    "WORK_TYPE": (DETAIL,),
    "CODE": (DETAIL,),
}
_ALL = (SCHOOL, MUNICIPALITY, GRADE, SUBJECT, YEAR, SCHEME, NUMBER, DETAIL)
# The key positions each level keeps (school kept implies its municipality); each level
# groups what the levels before it left over, whatever it keeps (spec, 01:45 UTC).
MARK_LEVELS: tuple[tuple[int, ...], ...] = (
    _ALL,
    (SCHOOL, MUNICIPALITY, SUBJECT, YEAR, SCHEME, NUMBER, DETAIL),
    (SCHOOL, MUNICIPALITY, SUBJECT, YEAR, DETAIL),
    (MUNICIPALITY, SUBJECT, YEAR, DETAIL),
    (MUNICIPALITY, SUBJECT, YEAR),
    (SUBJECT, YEAR),
    (YEAR,),
)
ATTENDANCE_LEVELS: tuple[tuple[int, ...], ...] = (
    _ALL,
    (SCHOOL, MUNICIPALITY, GRADE, YEAR, SCHEME, NUMBER, DETAIL),
    (SCHOOL, MUNICIPALITY, GRADE, YEAR, DETAIL),  # not a chain: the next level keeps
    (SCHOOL, MUNICIPALITY, YEAR, SCHEME, NUMBER, DETAIL),  # the period this one drops
    (SCHOOL, MUNICIPALITY, YEAR, DETAIL),
    (MUNICIPALITY, YEAR, DETAIL),
    (YEAR, DETAIL),
)
# The levels at which a group still below k joins the unit that holds only records of its
# key there (the coarsest such unit, then the one whose first cell comes first).
MARK_ABSORBING = frozenset({4, 5, 6})
ATTENDANCE_ABSORBING = frozenset({5, 6})
LESSON_ABSORBING = frozenset({4, 5})
LESSON_LEVELS: tuple[tuple[int, ...], ...] = (
    _ALL[:DETAIL],
    (SCHOOL, MUNICIPALITY, GRADE, YEAR, SCHEME, NUMBER),
    (SCHOOL, MUNICIPALITY, YEAR, SCHEME, NUMBER),
    (SCHOOL, MUNICIPALITY, YEAR),
    (MUNICIPALITY, YEAR),
    (YEAR,),
)


@dataclass(slots=True)
class Cell:
    """An L0 cell. `members`: who it covers, each with its weight in the distinct-student
    count (a student id → 1; for lessons a class id → its enrolment, counted once).
    `sums`: its additive figures (marks, counted, weighted_sum, weight_sum, value:<v>;
    records; lessons, student_lessons)."""

    members: dict[int, int] = field(default_factory=dict)
    sums: defaultdict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))


def students(members: Mapping[int, int]) -> int:
    return sum(members.values())


@dataclass(frozen=True, slots=True)
class Unit:
    """A unit: whole L0 cells whose figures are released together (>= k students)."""

    level: int
    cells: tuple[CellKey, ...]
    students: int
    sums: Mapping[str, Decimal]

    def values(self, index: int) -> set[Any]:
        return {key[index] for key in self.cells}

    def single(self, indexes: Iterable[int]) -> bool:
        return all(len(self.values(index)) == 1 for index in indexes)

    def key(self, indexes: Sequence[int]) -> tuple[Any, ...]:
        return tuple(self.cells[0][index] for index in indexes)

    def admitted(self, keep: Keep) -> bool:
        """Every value of every dimension in the filter: every cell passes it (the filters
        are products of per-dimension value sets, so the two are the same)."""
        return all(keep(key) for key in self.cells)


@dataclass(slots=True)
class Partition:
    """The units built for one k, the shadows (L0 cells below k) and what was dropped."""

    k: int
    cells: dict[CellKey, Cell]
    units: list[Unit]
    shadows: list[CellKey]
    dropped: list[CellKey]

    def unit_of(self, key: CellKey) -> Unit | None:
        return next((unit for unit in self.units if key in unit.cells), None)

    def journal(self, name: str) -> Decimal:
        """The journal's own sum of a figure (every cell)."""
        return sum((cell.sums[name] for cell in self.cells.values()), Decimal(0))

    def lost(self, name: str) -> Decimal:
        """The part of a figure in no unit (the final residual)."""
        return sum((self.cells[key].sums[name] for key in self.dropped), Decimal(0))


def merge(
    cells: dict[CellKey, Cell],
    levels: Sequence[tuple[int, ...]],
    k: int,
    absorbing: frozenset[int] = frozenset(),
) -> Partition:
    """The spec's algorithm: L0 cells of >= k students are units; the rest is the residual,
    grouped level by level by the kept positions, a group of >= k distinct students
    becoming a unit; at an absorbing level a group still below k joins the unit holding
    only records of its key (if any); what is left after the last level is dropped."""
    units: list[Unit] = []
    residual: list[CellKey] = []
    for key, cell in cells.items():
        if students(cell.members) >= k:
            units.append(Unit(0, (key,), students(cell.members), dict(cell.sums)))
        else:
            residual.append(key)
    shadows = list(residual)
    for level, kept in enumerate(levels[1:], start=1):
        groups: dict[tuple[Any, ...], list[CellKey]] = defaultdict(list)
        for key in residual:
            groups[tuple(key[i] for i in kept)].append(key)
        residual = []
        small: dict[tuple[Any, ...], list[CellKey]] = {}
        for group, keys in groups.items():
            members, sums = _combined(cells, keys)
            if students(members) >= k:
                units.append(Unit(level, tuple(keys), students(members), sums))
            else:
                small[group] = keys
        hosts = _hosts(units, kept) if level in absorbing else {}
        for group, keys in small.items():
            if group in hosts:
                index = hosts[group]
                host = units[index]
                both = (*host.cells, *keys)
                units[index] = Unit(host.level, both, host.students, _combined(cells, both)[1])
            else:
                residual.extend(keys)
    # A base cell whose unit absorbed others is listed (suppressed) through a shadow too.
    shadows += [unit.cells[0] for unit in units if unit.level == 0 and len(unit.cells) > 1]
    return Partition(k=k, cells=cells, units=units, shadows=shadows, dropped=residual)


def _combined(
    cells: Mapping[CellKey, Cell], keys: Iterable[CellKey]
) -> tuple[dict[int, int], dict[str, Decimal]]:
    """The members and the summed figures of some cells."""
    members: dict[int, int] = {}
    sums: defaultdict[str, Decimal] = defaultdict(Decimal)
    for key in keys:
        members.update(cells[key].members)
        for name, value in cells[key].sums.items():
            sums[name] += value
    return members, dict(sums)


def _hosts(units: Sequence[Unit], kept: Sequence[int]) -> dict[tuple[Any, ...], int]:
    """Per key of the kept positions: the index of the coarsest unit whose cells all have
    that key (ties: the unit whose first cell is the smallest)."""
    best: dict[tuple[Any, ...], tuple[tuple[int, CellKey], int]] = {}
    for index, unit in enumerate(units):
        keys = {tuple(cell[i] for i in kept) for cell in unit.cells}
        if len(keys) != 1:
            continue
        (key,) = keys
        rank = (-unit.level, min(unit.cells))
        if key not in best or rank < best[key][0]:
            best[key] = (rank, index)
    return {key: index for key, (_, index) in best.items()}


def assert_partition(partition: Partition) -> None:
    """The model's own invariants: units are disjoint, >= k students each, and with the
    dropped cells cover every cell once; merged units are made of shadows only."""
    seen: list[CellKey] = [key for unit in partition.units for key in unit.cells]
    assert len(seen) == len(set(seen))
    assert set(seen).isdisjoint(partition.dropped)
    assert set(seen) | set(partition.dropped) == set(partition.cells)
    shadows = set(partition.shadows)
    for unit in partition.units:
        assert unit.students >= partition.k
        # A level-0 unit is its base cell (and the shadows an absorbing level added to it).
        assert shadows.issuperset(unit.cells[1:] if unit.level == 0 else unit.cells)


def indexes_of(dimensions: Iterable[str]) -> tuple[int, ...]:
    return tuple(sorted({i for name in dimensions for i in DIMENSION_INDEX[name]}))


def group_key(key: CellKey, dimensions: Iterable[str]) -> tuple[Any, ...]:
    return tuple(key[i] for i in indexes_of(dimensions))


def keep_all(_key: CellKey) -> bool:
    return True


@dataclass(frozen=True, slots=True)
class Filter:
    """An AnalyticsFilter (None: every value) as the model's predicate and as the API's."""

    schools: frozenset[int] | None = None
    municipalities: frozenset[int] | None = None
    grades: frozenset[int] | None = None
    subjects: frozenset[int] | None = None
    scheme: str | None = None
    numbers: frozenset[int] | None = None
    work_types: frozenset[int] | None = None
    codes: frozenset[str] | None = None

    def __call__(self, key: CellKey) -> bool:
        checks: list[tuple[frozenset[Any] | None, Any]] = [
            (self.schools, key[SCHOOL]),
            (self.municipalities, key[MUNICIPALITY]),
            (self.grades, key[GRADE]),
            (self.subjects, key[SUBJECT]),
            (self.numbers, key[NUMBER]),
        ]
        if len(key) > DETAIL:  # a work type (int) or a code (str); lessons have neither
            detail = key[DETAIL]
            checks.append((self.codes if isinstance(detail, str) else self.work_types, detail))
        if self.scheme is not None and key[SCHEME] != self.scheme:
            return False
        return all(allowed is None or value in allowed for allowed, value in checks)

    def api(self) -> dict[str, Any]:
        given: dict[str, Any] = {
            "schoolIds": _ids(self.schools),
            "municipalityIds": _ids(self.municipalities),
            "grades": _sorted(self.grades),
            "subjectIds": _ids(self.subjects),
            "periodScheme": None if self.scheme is None else self.scheme.upper(),
            "periodNumbers": _sorted(self.numbers),
            "workTypeIds": _ids(self.work_types),
            "codes": _sorted(self.codes),
        }
        return {name: value for name, value in given.items() if value is not None}


def _sorted(values: frozenset[Any] | None) -> list[Any] | None:
    return None if values is None else sorted(values)


def _ids(values: frozenset[int] | None) -> list[str] | None:
    return None if values is None else [str(value) for value in sorted(values)]


def cell_filter(key: CellKey, *, detail: bool) -> Filter:
    """The filter of one base cell (its every value), with or without its work type / code."""
    details = frozenset({key[DETAIL]}) if detail else None
    return Filter(
        schools=frozenset({key[SCHOOL]}),
        grades=frozenset({key[GRADE]}),
        subjects=frozenset({key[SUBJECT]}),
        scheme=key[SCHEME],
        numbers=frozenset({key[NUMBER]}),
        work_types=details if isinstance(key[DETAIL], int) else None,
        codes=details if isinstance(key[DETAIL], str) else None,
    )


def unit_filter(unit: Unit) -> Filter:
    """The narrowest filter admitting the unit: its own value sets."""

    def of(index: int) -> frozenset[Any]:
        return frozenset(unit.values(index))

    detail = of(DETAIL) if len(unit.cells[0]) > DETAIL else None
    is_code = detail is not None and isinstance(unit.cells[0][DETAIL], str)
    schemes = unit.values(SCHEME)
    scheme = next(iter(schemes)) if len(schemes) == 1 else None
    return Filter(
        schools=of(SCHOOL),
        municipalities=of(MUNICIPALITY),
        grades=of(GRADE),
        subjects=of(SUBJECT),
        scheme=scheme,
        numbers=of(NUMBER),
        work_types=None if is_code else detail,
        codes=detail if is_code else None,
    )


# --- answers -----------------------------------------------------------------------------


@dataclass(slots=True)
class Figures:
    """Sums over some units; `published` once one unit is in them."""

    published: bool = False
    units: list[Unit] = field(default_factory=list)
    sums: defaultdict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))

    def add(self, unit: Unit) -> None:
        self.published = True
        self.units.append(unit)
        for name, value in unit.sums.items():
            self.sums[name] += value

    @property
    def marks(self) -> int:
        return int(self.sums["marks"])

    @property
    def counted(self) -> int:
        return int(self.sums["counted"])

    @property
    def weight_sum(self) -> Decimal:
        return self.sums["weight_sum"]

    @property
    def records(self) -> int:
        return int(self.sums["records"])

    @property
    def values(self) -> dict[str, int]:
        return {
            name.removeprefix("value:"): int(count)
            for name, count in self.sums.items()
            if name.startswith("value:") and count
        }

    def average(self) -> float | None:
        if not self.sums["weight_sum"]:
            return None
        ratio = self.sums["weighted_sum"] / self.sums["weight_sum"]
        return float(ratio.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


@dataclass(slots=True)
class Grouped:
    """Listed groups (published False: known only through shadow cells), the total (every
    included unit) and the spanning units' sums (None when there are none)."""

    groups: dict[tuple[Any, ...], Figures]
    total: Figures
    spanning: Figures | None


def group_units(partition: Partition, indexes: Sequence[int], keep: Keep = keep_all) -> Grouped:
    groups: dict[tuple[Any, ...], Figures] = defaultdict(Figures)
    total, spanning = Figures(), Figures()
    for unit in partition.units:
        if not unit.admitted(keep):
            continue
        total.add(unit)
        if unit.single(indexes):
            groups[unit.key(indexes)].add(unit)
        else:
            spanning.add(unit)
    for key in partition.shadows:
        if keep(key):
            groups.setdefault(tuple(key[i] for i in indexes), Figures())
    return Grouped(dict(groups), total, spanning if spanning.published else None)


def expected_marks(
    partition: Partition, dimensions: Iterable[str], keep: Keep = keep_all
) -> Grouped:
    """The marks answer of a grouping (API dimension names) and a filter predicate."""
    return group_units(partition, indexes_of(dimensions), keep)


@dataclass(frozen=True, slots=True)
class AttendanceFigures:
    suppressed: bool
    lessons: int | None = None
    student_lessons: int | None = None
    records: int | None = None
    by_code: dict[str, int] | None = None
    rate: float | None = None
    code_rates: dict[str, float | None] | None = None


def _rate(count: int, denominator: int | None) -> float | None:
    """Rates are released with 4 significant digits."""
    return float(f"{count / denominator:.4g}") if denominator else None


def attendance_figures(
    codes: Mapping[str, int],
    lessons: Figures | None,
    *,
    rates: bool = True,
    withheld: bool = False,
) -> AttendanceFigures:
    """A group's figures from its attributed code sums and lesson sums (None: no unit).
    `withheld`: its records are all in cells not published on their own: no record
    count (not a false 0), only its lessons."""
    if not codes and lessons is None:
        return AttendanceFigures(suppressed=True)
    student_lessons = None if lessons is None else int(lessons.sums["student_lessons"])
    denominator = student_lessons if rates else None
    if withheld and not codes:
        return AttendanceFigures(
            suppressed=False,
            lessons=None if lessons is None else int(lessons.sums["lessons"]),
            student_lessons=student_lessons,
            by_code={},
            code_rates={},
        )
    records = sum(codes.values())
    return AttendanceFigures(
        suppressed=False,
        lessons=None if lessons is None else int(lessons.sums["lessons"]),
        student_lessons=student_lessons,
        records=records,
        by_code=dict(sorted(codes.items())),
        rate=_rate(records, denominator),
        code_rates={code: _rate(count, denominator) for code, count in sorted(codes.items())},
    )


@dataclass(slots=True)
class AttendanceAnswer:
    groups: dict[tuple[Any, ...], AttendanceFigures]
    total: AttendanceFigures
    spanning: AttendanceFigures | None


def expected_attendance(
    records: Partition, lessons: Partition, dimensions: Iterable[str], keep: Keep = keep_all
) -> AttendanceAnswer:
    """The attendance answer: a group per listed non-code group (or per listed non-code
    group and code when grouped by CODE), lessons of its non-code group."""
    dimensions = list(dimensions)
    lesson_indexes = indexes_of(d for d in dimensions if d != "CODE")
    by_code = "CODE" in dimensions
    coded = group_units(records, (*lesson_indexes, DETAIL), keep)
    held = group_units(lessons, lesson_indexes, keep)
    codes_of: dict[tuple[Any, ...], dict[str, int]] = defaultdict(dict)
    for key, figures in coded.groups.items():
        if figures.published:
            codes_of[key[:-1]][key[-1]] = figures.records

    def lessons_of(key: tuple[Any, ...]) -> Figures | None:
        figures = held.groups.get(key)
        return figures if figures is not None and figures.published else None

    groups: dict[tuple[Any, ...], AttendanceFigures] = {}
    if by_code:
        for key in coded.groups:
            count = codes_of.get(key[:-1], {}).get(key[-1])
            codes = {} if count is None else {key[-1]: count}
            lesson = lessons_of(key[:-1])
            groups[key] = attendance_figures(codes, lesson) if codes else AttendanceFigures(True)
    else:
        coded_keys = {key[:-1] for key in coded.groups}
        for key in coded_keys | set(held.groups):
            withheld = key in coded_keys and not codes_of.get(key)
            groups[key] = attendance_figures(
                codes_of.get(key, {}), lessons_of(key), withheld=withheld
            )
    all_codes = _by_code(records, keep, lambda _u: True)
    withheld = any(keep(cell) for cell in records.shadows)
    total = attendance_figures(all_codes, _or_none(held.total), withheld=withheld)
    spanning_codes = _by_code(records, keep, lambda unit: not unit.single(lesson_indexes))
    spanning = (
        attendance_figures(spanning_codes, held.spanning, rates=False)
        if spanning_codes or held.spanning is not None
        else None
    )
    return AttendanceAnswer(groups, total, spanning)


def _or_none(figures: Figures) -> Figures | None:
    return figures if figures.published else None


def _by_code(partition: Partition, keep: Keep, chosen: Callable[[Unit], bool]) -> dict[str, int]:
    codes: dict[str, int] = defaultdict(int)
    for unit in partition.units:
        if unit.admitted(keep) and chosen(unit):
            codes[unit.cells[0][DETAIL]] += int(unit.sums["records"])
    return dict(codes)

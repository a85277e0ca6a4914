"""Small-group disclosure control: base cells merged into units of at least k students.

No SQL here (resolvers.analytics.sql feeds it rows and stores what it returns).

A base cell (school x grade x subject x period x work type / code; lessons without the
last) with at least k distinct students is a unit by itself. The records of the smaller
cells are merged up a fixed hierarchy of coarser keys (`MARK_LEVELS`, ...): at each level
the remaining records are grouped by the level's key, and every group that covers at
least k distinct students becomes a unit. What is left after the last level is dropped.
The units partition the published records; every figure the API releases is a sum over
whole units (never a part of one), so no combination of answers says anything about
fewer than k children. Merging is what keeps rare events (an absence code few children
have, a rare work type) in the figures: before it, a small cell was dropped outright.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Final, NamedTuple, TypeVar

# The dimensions a level may keep ("period" is the period's scheme and number; the
# school year is always kept, and so is the attendance code: codes never merge).
SCHOOL: Final = "school"
MUNICIPALITY: Final = "municipality"
GRADE: Final = "grade"
SUBJECT: Final = "subject"
PERIOD: Final = "period"
DETAIL: Final = "detail"  # the work type of a mark, the code of an attendance record

Level = frozenset[str]
T = TypeVar("T")
_ALL: Final = frozenset({SCHOOL, MUNICIPALITY, GRADE, SUBJECT, PERIOD, DETAIL})

# Kept dimensions per level, finest first (level 0 = the base cell). The order says what
# an analyst loses last: marks keep subject and work type longest; attendance drops the
# subject first (an absence is a whole day or a few lessons) and keeps its code always.
# Each level's groups are formed from what the levels before left over, so units stay
# disjoint whatever the order; the last level is the coarsest.
MARK_LEVELS: Final[tuple[Level, ...]] = (
    _ALL,
    _ALL - {GRADE},
    _ALL - {GRADE, PERIOD},
    frozenset({MUNICIPALITY, SUBJECT, DETAIL}),
    frozenset({MUNICIPALITY, SUBJECT}),
    frozenset({SUBJECT}),
    frozenset(),
)
ATTENDANCE_LEVELS: Final[tuple[Level, ...]] = (
    _ALL,
    _ALL - {SUBJECT},
    _ALL - {SUBJECT, PERIOD},  # the grade's year
    _ALL - {SUBJECT, GRADE},  # the school's period (not coarser than the level before:
    frozenset({SCHOOL, MUNICIPALITY, DETAIL}),  # the levels need not form a chain)
    frozenset({MUNICIPALITY, DETAIL}),
    frozenset({DETAIL}),
)
LESSON_LEVELS: Final[tuple[Level, ...]] = (
    _ALL - {DETAIL},
    _ALL - {DETAIL, SUBJECT},
    _ALL - {DETAIL, SUBJECT, GRADE},
    frozenset({SCHOOL, MUNICIPALITY}),
    frozenset({MUNICIPALITY}),
    frozenset(),
)


@dataclass(frozen=True, slots=True)
class Hierarchy:
    """The levels of one kind of figures, and the levels at which a group still below k
    joins an existing unit of the same key instead of moving up (`absorbing`)."""

    levels: tuple[Level, ...]
    absorbing: frozenset[int]


# Where a group still below k joins an existing unit of its key: from the municipality's
# level up, so that a small municipality's rare records count in its own figures.
MARKS: Final = Hierarchy(MARK_LEVELS, frozenset({4, 5, 6}))
ATTENDANCE: Final = Hierarchy(ATTENDANCE_LEVELS, frozenset({5, 6}))
LESSONS: Final = Hierarchy(LESSON_LEVELS, frozenset({4, 5}))


class CellKey(NamedTuple):
    """A base cell. `detail` is the work type id (marks), the code (attendance) or None."""

    school_id: int
    municipality_id: int
    grade: int
    subject_id: int
    year_id: int
    period_scheme: str
    period_number: int
    detail: int | str | None


def level_key(key: CellKey, level: Level) -> tuple[object, ...]:
    """The key of `key`'s group at `level` (dropped dimensions are None)."""
    kept = level.__contains__
    return (
        key.school_id if kept(SCHOOL) else None,
        key.municipality_id if kept(MUNICIPALITY) else None,
        key.grade if kept(GRADE) else None,
        key.subject_id if kept(SUBJECT) else None,
        key.year_id,
        (key.period_scheme, key.period_number) if kept(PERIOD) else None,
        key.detail if kept(DETAIL) else None,
    )


@dataclass(frozen=True, slots=True)
class Row:
    """Records of one cell and one member: a student (weight 1) or, for lessons, a class
    (weight = its enrolment). `figures` are sums (marks, counted, ...) in a fixed order;
    `values` the marks per value as written (marks only)."""

    key: CellKey
    member: int
    weight: int
    figures: tuple[Decimal, ...]
    values: tuple[tuple[str, int], ...] = ()


@dataclass(slots=True)
class Unit:
    """A published unit (or, with `published` False, a shadow: a small base cell kept
    without figures so that its group is listed as suppressed)."""

    level: int
    published: bool
    keys: set[CellKey] = field(default_factory=set)
    members: dict[int, int] = field(default_factory=dict)
    figures: list[Decimal] = field(default_factory=list)
    values: Counter[str] = field(default_factory=Counter)
    counted_students: int | None = None  # when the database counted them (base cells)
    base: CellKey | None = None  # a base cell's own key (its unit may absorb others)

    @property
    def students(self) -> int:
        """Distinct students: the members' weights, each member once."""
        if self.counted_students is not None:
            return self.counted_students
        return sum(self.members.values())

    def add(self, row: Row) -> None:
        self.keys.add(row.key)
        self.members[row.member] = row.weight
        if not self.figures:
            self.figures = list(row.figures)
        else:
            self.figures = [a + b for a, b in zip(self.figures, row.figures, strict=True)]
        for value, count in row.values:
            self.values[value] += count


def cell_unit(key: CellKey, students: int, figures: Sequence[Decimal], k: int) -> Unit:
    """A base cell counted by the database: a unit of level 0 when it covers at least k
    students, else its shadow (no figures)."""
    published = students >= k
    unit = Unit(level=0, published=published, keys={key}, counted_students=students, base=key)
    unit.figures = list(figures) if published else [Decimal(0)] * len(figures)
    return unit


def merge(
    rows: Iterable[Row], hierarchy: Hierarchy, k: int, *, cells: Sequence[Unit] = ()
) -> list[Unit]:
    """The units that the rows of the small cells form from level 1 up (`cells`: the base
    cells' units, which may absorb rows); rows left over after the last level are dropped.

    At an absorbing level, a group that is still below k joins the unit that already
    holds only records of its key at that level (the coarsest such unit, then the one
    whose first base cell comes first): that unit covers at least k students before and
    after, and the records stay in the figures of their municipality (or, at the last
    level, of the region) instead of moving up or being dropped."""
    remaining = list(rows)
    units: list[Unit] = []
    levels = hierarchy.levels
    for index in range(1, len(levels)):
        groups: dict[tuple[object, ...], list[Row]] = defaultdict(list)
        for row in remaining:
            groups[level_key(row.key, levels[index])].append(row)
        remaining = []
        small: dict[tuple[object, ...], list[Row]] = {}
        for group_key, grouped in groups.items():
            if sum({row.member: row.weight for row in grouped}.values()) < k:
                small[group_key] = grouped
                continue
            unit = Unit(level=index, published=True)
            for row in grouped:
                unit.add(row)
            units.append(unit)
        if small and index in hierarchy.absorbing:
            hosts = _hosts([*cells, *units], levels[index])
            for group_key, grouped in list(small.items()):
                host = hosts.get(group_key)
                if host is not None:
                    for row in grouped:
                        host.add(row)
                    del small[group_key]
        remaining = [row for grouped in small.values() for row in grouped]
    return units


def _hosts(units: Iterable[Unit], level: Level) -> dict[tuple[object, ...], Unit]:
    """Per key at `level`, the published unit whose records all have that key: the
    coarsest, then the one whose first base cell comes first (a stable choice)."""
    best: dict[tuple[object, ...], tuple[tuple[int, CellKey], Unit]] = {}
    for unit in units:
        if not unit.published:
            continue
        keys = {level_key(key, level) for key in unit.keys}
        if len(keys) != 1:
            continue
        (key,) = keys
        rank = (-unit.level, min(unit.keys))
        if key not in best or rank < best[key][0]:
            best[key] = (rank, unit)
    return {key: unit for key, (_, unit) in best.items()}


def absorbed_shadows(cells: Iterable[Unit]) -> list[Unit]:
    """Shadows of the base cells whose unit absorbed small groups: their own groups are
    then listed (suppressed) as well, since the unit now spans more than the cell."""
    return [
        Unit(level=0, published=False, keys={cell.base}, figures=[0 * f for f in cell.figures])
        for cell in cells
        if cell.published and cell.base is not None and len(cell.keys) > 1
    ]


def split_cells(rows: Iterable[Row], k: int) -> tuple[list[Unit], list[Row]]:
    """Base cells from member rows (lessons: counted here, not by the database): the
    cells' units and shadows, and the rows of the small cells (to merge)."""
    by_cell: dict[CellKey, list[Row]] = defaultdict(list)
    for row in rows:
        by_cell[row.key].append(row)
    cells: list[Unit] = []
    small: list[Row] = []
    for key, grouped in by_cell.items():
        unit = Unit(level=0, published=True, base=key)
        for row in grouped:
            unit.add(row)
        if unit.students < k:
            small.extend(grouped)
            unit = Unit(level=0, published=False, keys={key}, members=unit.members)
            unit.figures = [Decimal(0)] * len(grouped[0].figures)
        cells.append(unit)
    return cells, small


@dataclass(frozen=True, slots=True)
class UnitColumns:
    """A unit's key columns (None = several values) and its values per dimension."""

    school_id: int | None
    municipality_id: int | None
    grade: int | None
    subject_id: int | None
    year_id: int
    period_scheme: str | None
    period_number: int | None
    detail: int | str | None
    school_ids: list[int]
    municipality_ids: list[int]
    grades: list[int]
    subject_ids: list[int]
    period_schemes: list[str]
    period_numbers: list[int]
    details: list[int | str]


def _single(values: set[T]) -> T | None:
    return next(iter(values)) if len(values) == 1 else None


def columns_of(unit: Unit) -> UnitColumns:
    """The unit's key columns and value arrays (for grouping and filters)."""
    keys = unit.keys
    schools = {key.school_id for key in keys}
    municipalities = {key.municipality_id for key in keys}
    grades = {key.grade for key in keys}
    subjects = {key.subject_id for key in keys}
    periods = {(key.period_scheme, key.period_number) for key in keys}
    details = {key.detail for key in keys if key.detail is not None}
    years = {key.year_id for key in keys}
    period = _single(periods)
    return UnitColumns(
        school_id=_single(schools),
        municipality_id=_single(municipalities),
        grade=_single(grades),
        subject_id=_single(subjects),
        year_id=years.pop(),  # every level keeps the year: one per unit
        period_scheme=None if period is None else period[0],
        period_number=None if period is None else period[1],
        detail=_single(details),
        school_ids=sorted(schools),
        municipality_ids=sorted(municipalities),
        grades=sorted(grades),
        subject_ids=sorted(subjects),
        period_schemes=sorted({scheme for scheme, _ in periods}),
        period_numbers=sorted({number for _, number in periods}),
        details=sorted(details, key=str),
    )

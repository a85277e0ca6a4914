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
    unit = Unit(level=0, published=published, keys={key}, counted_students=students)
    unit.figures = list(figures) if published else [Decimal(0)] * len(figures)
    return unit


def merge(rows: Iterable[Row], levels: Sequence[Level], k: int, *, first: int = 1) -> list[Unit]:
    """The units that the rows of the small cells form from level `first` up; rows left
    over after the last level are dropped."""
    remaining = list(rows)
    units: list[Unit] = []
    for index in range(first, len(levels)):
        groups: dict[tuple[object, ...], list[Row]] = defaultdict(list)
        for row in remaining:
            groups[level_key(row.key, levels[index])].append(row)
        remaining = []
        for grouped in groups.values():
            if sum({row.member: row.weight for row in grouped}.values()) < k:
                remaining.extend(grouped)
                continue
            unit = Unit(level=index, published=True)
            for row in grouped:
                unit.add(row)
            units.append(unit)
    return units


def split_cells(rows: Iterable[Row], k: int) -> tuple[list[Unit], list[Row]]:
    """Base cells from member rows (lessons: counted here, not by the database): the
    cells' units and shadows, and the rows of the small cells (to merge)."""
    by_cell: dict[CellKey, list[Row]] = defaultdict(list)
    for row in rows:
        by_cell[row.key].append(row)
    cells: list[Unit] = []
    small: list[Row] = []
    for key, grouped in by_cell.items():
        unit = Unit(level=0, published=True)
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

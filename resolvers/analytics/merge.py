"""Small-group disclosure control: base cells merged into units of at least k students.

No SQL here (resolvers.analytics.sql feeds it cells and stores what it returns).

A base cell (school x grade x subject x period x work type / code; lessons without the
last) with at least k distinct students is a unit by itself. Smaller cells are merged up
a fixed hierarchy of coarser keys (`MARK_LEVELS`, ...): at each level the cells left over
are grouped by the level's key, and every group that covers at least k distinct students
becomes a unit; at an absorbing level (from the municipality's up) a group still below k
joins an existing unit that holds only cells of its key. What is left after the last
level is in no figure (and tried again at the next refresh).

Units are STICKY for the school year: a cell, once in a unit, stays in it at every later
refresh (`Assignment`), even when it has grown to k students on its own; only cells never
seen before are placed by the rules above. Otherwise a cell published inside a merged unit
at one refresh and alone at the next would give away its merged siblings' figures (the
difference of the two answers). A unit is published while it covers at least k students
(a unit that fell below k, e.g. after marks were deleted, is withheld, not re-merged).

Every figure the API releases is a sum over whole published units (never a part of one),
so no combination of answers says anything about fewer than k children.
"""

from __future__ import annotations

import hashlib
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


def rules(k: int) -> str:
    """A fingerprint of the placement rules (k and the hierarchies): an assignment made
    by other rules is not kept."""
    hierarchies = [
        ([sorted(level) for level in hierarchy.levels], sorted(hierarchy.absorbing))
        for hierarchy in (MARKS, ATTENDANCE, LESSONS)
    ]
    text = repr((k, hierarchies))  # sorted: a frozenset's order changes between processes
    return hashlib.sha256(text.encode()).hexdigest()[:16]


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


@dataclass(slots=True)
class Cell:
    """A base cell as the database counted it: distinct students, figures (sums in a
    fixed order), marks per value; `members` (student id → 1, or for lessons class id →
    its enrolment) when loaded, to count distinct students across cells."""

    key: CellKey
    students: int
    figures: tuple[Decimal, ...]
    values: Counter[str] = field(default_factory=Counter)
    members: dict[int, int] | None = None


@dataclass(slots=True)
class Unit:
    """Cells whose figures are released together, while they cover at least k students."""

    unit_id: int
    level: int
    cells: list[Cell] = field(default_factory=list)

    @property
    def students(self) -> int:
        """Distinct students, or a lower bound of them when a cell's members are not
        loaded (a cell that was big enough on its own: its count is the bound)."""
        if len(self.cells) == 1:
            return self.cells[0].students
        known: dict[int, int] = {}
        bound = 0
        for cell in self.cells:
            if cell.members is None:
                bound = max(bound, cell.students)
            else:
                known.update(cell.members)
        return max(bound, sum(known.values()))

    @property
    def keys(self) -> list[CellKey]:
        return [cell.key for cell in self.cells]

    def figures(self) -> list[Decimal]:
        columns = zip(*(cell.figures for cell in self.cells), strict=True)
        return [sum(column, Decimal(0)) for column in columns]

    def values(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for cell in self.cells:
            total.update(cell.values)
        return total


# Cell → (unit id, level): where each cell went at the refreshes of the year so far.
Assignment = dict[CellKey, tuple[int, int]]


@dataclass(slots=True)
class Placement:
    """The units of one kind of figures after a refresh, and the assignment to keep."""

    units: list[Unit]
    assignment: Assignment
    unplaced: list[Cell]  # below k after every level: in no figure this time


def _distinct(cells: Iterable[Cell]) -> int:
    members: dict[int, int] = {}
    for cell in cells:
        members.update(cell.members or {})
    return sum(members.values())


def place(cells: Iterable[Cell], hierarchy: Hierarchy, k: int, assignment: Assignment) -> Placement:
    """Cells already assigned go to their units; the others become units of their own
    (>= k students) or are merged up the hierarchy. The small cells placed here need
    their members loaded; cells already in a unit of several cells too (see `needs`)."""
    by_id: dict[int, Unit] = {}
    fresh: list[Cell] = []
    for cell in cells:
        placed = assignment.get(cell.key)
        if placed is None:
            fresh.append(cell)
            continue
        unit_id, level = placed
        by_id.setdefault(unit_id, Unit(unit_id, level)).cells.append(cell)
    next_id = max((unit_id for unit_id, _ in assignment.values()), default=0) + 1
    small: list[Cell] = []
    for cell in fresh:
        if cell.students >= k:
            by_id[next_id] = Unit(next_id, 0, [cell])
            next_id += 1
        else:
            small.append(cell)
    units = list(by_id.values())
    levels = hierarchy.levels
    for index in range(1, len(levels)):
        groups: dict[tuple[object, ...], list[Cell]] = defaultdict(list)
        for cell in small:
            groups[level_key(cell.key, levels[index])].append(cell)
        small = []
        hosts = _hosts(units, levels[index], k) if index in hierarchy.absorbing else {}
        for key, grouped in groups.items():
            if _distinct(grouped) >= k:
                units.append(Unit(next_id, index, grouped))
                next_id += 1
            elif key in hosts:
                hosts[key].cells.extend(grouped)
            else:
                small.extend(grouped)
    new_assignment = {cell.key: (unit.unit_id, unit.level) for unit in units for cell in unit.cells}
    return Placement(units, new_assignment, small)


def needs_members(cells: Iterable[Cell], k: int, assignment: Assignment) -> list[CellKey]:
    """The cells whose members `place` needs: new small cells, and cells of units of
    several cells (to count the unit's distinct students)."""
    sizes: Counter[int] = Counter(unit_id for unit_id, _ in assignment.values())
    wanted = []
    for cell in cells:
        placed = assignment.get(cell.key)
        new_and_small = placed is None and cell.students < k
        if new_and_small or (placed is not None and sizes[placed[0]] > 1):
            wanted.append(cell.key)
    return wanted


def _hosts(units: Iterable[Unit], level: Level, k: int) -> dict[tuple[object, ...], Unit]:
    """Per key at `level`, the published unit whose cells all have that key: the
    coarsest, then the one whose first cell comes first (a stable choice)."""
    best: dict[tuple[object, ...], tuple[tuple[int, CellKey], Unit]] = {}
    for unit in units:
        if unit.students < k:
            continue
        keys = {level_key(key, level) for key in unit.keys}
        if len(keys) != 1:
            continue
        (key,) = keys
        rank = (-unit.level, min(unit.keys))
        if key not in best or rank < best[key][0]:
            best[key] = (rank, unit)
    return {key: unit for key, (_, unit) in best.items()}


def shadows(units: Iterable[Unit], unplaced: Iterable[Cell], k: int) -> list[CellKey]:
    """The cells not published as a unit of their own: their groups are listed (as
    suppressed unless another unit counts in them)."""
    hidden = [cell.key for cell in unplaced]
    for unit in units:
        if len(unit.cells) > 1 or unit.students < k:
            hidden += unit.keys
    return hidden


def cells_from_members(rows: Iterable[tuple[CellKey, int, int, tuple[Decimal, ...]]]) -> list[Cell]:
    """Base cells from (key, member, weight, figures) rows (lessons: the database gives
    classes with their enrolment, and the cells are counted here)."""
    by_key: dict[CellKey, Cell] = {}
    for key, member, weight, figures in rows:
        cell = by_key.get(key)
        if cell is None:
            by_key[key] = Cell(key, 0, figures, members={member: weight})
            continue
        cell.members = {**(cell.members or {}), member: weight}
        cell.figures = tuple(a + b for a, b in zip(cell.figures, figures, strict=True))
    for cell in by_key.values():
        cell.students = sum((cell.members or {}).values())
    return list(by_key.values())


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


def columns_of(keys: Sequence[CellKey]) -> UnitColumns:
    """The key columns and value arrays of a unit of these cells (grouping, filters)."""
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

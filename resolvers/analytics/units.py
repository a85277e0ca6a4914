"""The stored form of the units and of the year's assignment (no SQL: resolvers.analytics.sql
copies these rows into gateway.analytics_*_units and gateway.analytics_assignments)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final

from resolvers.analytics import merge


def _int_detail(text: str) -> int | str | None:
    return int(text)


def _text_detail(text: str) -> int | str | None:
    return text


def _no_detail(_text: str) -> int | str | None:
    return None


@dataclass(frozen=True, slots=True)
class Kind:
    """One kind of figures: where its units go and how its cells merge."""

    name: str
    table: str
    hierarchy: merge.Hierarchy
    figures: tuple[str, ...]
    detail_column: str | None  # work_type_id, code, or None (lessons)
    detail_of: Callable[[str], int | str | None]  # the assignment table's text → the key's


MARKS: Final = Kind(
    "marks",
    "analytics_mark_units",
    merge.MARKS,
    ("marks", "counted_marks", "weighted_sum", "weight_sum"),
    "work_type_id",
    _int_detail,
)
ATTENDANCE: Final = Kind(
    "attendance",
    "analytics_attendance_units",
    merge.ATTENDANCE,
    ("records",),
    "code",
    _text_detail,
)
LESSONS: Final = Kind(
    "lessons",
    "analytics_lesson_units",
    merge.LESSONS,
    ("lessons", "student_lessons"),
    None,
    _no_detail,
)
_DECIMAL_FIGURES: Final = frozenset({"weighted_sum", "weight_sum"})


def assignment_records(kind: Kind, assignment: merge.Assignment) -> list[tuple[Any, ...]]:
    """Rows of gateway.analytics_assignments (the detail as text; '' for lessons)."""
    return [
        (
            kind.name,
            key.school_id,
            key.municipality_id,
            key.grade,
            key.subject_id,
            key.year_id,
            key.period_scheme,
            key.period_number,
            "" if key.detail is None else str(key.detail),
            unit_id,
            level,
        )
        for key, (unit_id, level) in assignment.items()
    ]


@dataclass(slots=True)
class UnitRows:
    """The rows of a kind's units table (published units and shadows) and mark values."""

    columns: tuple[str, ...] = ()
    records: list[tuple[Any, ...]] = field(default_factory=list)
    values: list[tuple[int, str, int]] = field(default_factory=list)


def _columns(
    kind: Kind, unit_id: int, published: bool, level: int, keys: list[merge.CellKey]
) -> dict[str, Any]:
    columns = merge.columns_of(keys)
    stored: dict[str, Any] = {
        "unit_id": unit_id,
        "published": published,
        "level": level,
        "school_id": columns.school_id,
        "municipality_id": columns.municipality_id,
        "grade": columns.grade,
        "subject_id": columns.subject_id,
        "year_id": columns.year_id,
        "period_scheme": columns.period_scheme,
        "period_number": columns.period_number,
        "school_ids": columns.school_ids,
        "municipality_ids": columns.municipality_ids,
        "grades": columns.grades,
        "subject_ids": columns.subject_ids,
        "period_schemes": columns.period_schemes,
        "period_numbers": columns.period_numbers,
    }
    if kind.detail_column == "work_type_id":
        stored["work_type_id"] = columns.detail
        stored["work_type_ids"] = columns.details
    elif kind.detail_column == "code":
        stored["code"] = columns.detail
    return stored


def _figure(name: str, value: Decimal) -> int | Decimal:
    """Counts are integers; weighted sums stay exact decimals."""
    return value if name in _DECIMAL_FIGURES else int(value)


def unit_rows(kind: Kind, placement: merge.Placement, k: int) -> UnitRows:
    """The published units (>= k students now) with their figures, and a figure-less
    shadow per cell not published on its own (negative ids)."""
    rows = UnitRows()
    for unit in placement.units:
        if unit.students < k:
            continue
        stored = _columns(kind, unit.unit_id, True, unit.level, unit.keys)
        stored["students"] = unit.students
        for name, value in zip(kind.figures, unit.figures(), strict=True):
            stored[name] = _figure(name, value)
        rows.columns = tuple(stored)
        rows.records.append(tuple(stored.values()))
        rows.values += [(unit.unit_id, value, n) for value, n in unit.values().items()]
    hidden = merge.shadows(placement.units, placement.unplaced, k)
    for index, key in enumerate(hidden, start=1):
        stored = _columns(kind, -index, False, 0, [key])
        stored["students"] = 0
        for name in kind.figures:
            stored[name] = _figure(name, Decimal(0))
        rows.columns = tuple(stored)
        rows.records.append(tuple(stored.values()))
    return rows

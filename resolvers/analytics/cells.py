"""The analytics' model: dimensions, the cell filter, freshness and labels (no SQL).

A base cell is the finest group the analytics know; units are base cells or small cells
merged (resolvers.analytics.merge); a dimension names the unit columns of its groups.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Final

# Dimension → the cell columns naming a group of it.
MARK_DIMENSIONS: Final[Mapping[str, tuple[str, ...]]] = {
    "SCHOOL": ("school_id",),
    "MUNICIPALITY": ("municipality_id",),
    "GRADE": ("grade",),
    "SUBJECT": ("subject_id",),
    "PERIOD": ("year_id", "period_scheme", "period_number"),
    "WORK_TYPE": ("work_type_id",),
}
ATTENDANCE_DIMENSIONS: Final[Mapping[str, tuple[str, ...]]] = {
    **{name: columns for name, columns in MARK_DIMENSIONS.items() if name != "WORK_TYPE"},
    "CODE": ("code",),
}
# The columns every kind of base cell has (a lesson cell has only these).
COMMON_KEY: Final = (
    "school_id",
    "municipality_id",
    "grade",
    "subject_id",
    "year_id",
    "period_scheme",
    "period_number",
)
KEY_COLUMNS: Final = (*COMMON_KEY, "work_type_id", "code")


def group_columns(dimensions: Sequence[str], known: Mapping[str, tuple[str, ...]]) -> list[str]:
    """The cell columns of the requested dimensions, in a stable order, without repeats."""
    wanted = {column for name in dimensions for column in known[name]}
    return [column for column in KEY_COLUMNS if column in wanted]


@dataclass(frozen=True, slots=True)
class CellFilter:
    """Which cells a query covers; None means every value. Filters name cell columns."""

    school_ids: Sequence[int] | None = None
    municipality_ids: Sequence[int] | None = None
    grades: Sequence[int] | None = None
    subject_ids: Sequence[int] | None = None
    period_scheme: str | None = None
    period_numbers: Sequence[int] | None = None
    work_type_ids: Sequence[int] | None = None
    codes: Sequence[str] | None = None


@dataclass(frozen=True, slots=True)
class Freshness:
    """When the units were rebuilt, as of which diary date, how long it took, and for
    which k (units depend on it)."""

    refreshed_at: datetime
    as_of: date
    duration_ms: int
    min_group_size: int


@dataclass(frozen=True, slots=True)
class Labels:
    """Names of the dimension values (schools, municipalities, subjects, ...)."""

    schools: dict[int, tuple[str, str, str]]  # id → (name, short name, municipality)
    municipalities: dict[int, str]
    subjects: dict[int, str]
    work_types: dict[int, tuple[str, str, Decimal]]  # id → (name, short name, weight)
    periods: dict[tuple[int, str, int], tuple[str, str]]  # key → (year title, title)

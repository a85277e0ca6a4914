"""GraphQL types of the regional analytics: aggregates only, no person.

No type here has a field naming, identifying or counting individual students: groups
are keyed by school, municipality, grade, subject, period, work type or attendance
code, and carry sums over published base cells (see resolvers.analytics.sql).
"""

from __future__ import annotations

import enum
from datetime import date, datetime

import strawberry

from resolvers.common.fields import loads, sized
from resolvers.common.types import PeriodScheme, School, Subject, WorkType

SUPPRESSION_RULE = (
    "Small groups are suppressed: figures are sums over base cells (school × grade × "
    "subject × period × work type for marks; × attendance code for attendance records; "
    "school × grade × subject × period for lessons) that each cover at least "
    "`minGroupSize` distinct students. A cell below that size is left out of every "
    "figure of every grouping, totals included, so no combination of answers (e.g. a "
    "total minus the other groups) recovers it; consequently totals cover publishable "
    "cells only and can be smaller than the sum of the journal. A group without any "
    "publishable cell is returned with `suppressed: true` and no figures."
)


@strawberry.enum(description="What marks can be grouped by.")
class MarkDimension(enum.Enum):
    SCHOOL = "SCHOOL"
    MUNICIPALITY = "MUNICIPALITY"
    GRADE = "GRADE"
    SUBJECT = "SUBJECT"
    PERIOD = "PERIOD"
    WORK_TYPE = "WORK_TYPE"


@strawberry.enum(description="What attendance can be grouped by.")
class AttendanceDimension(enum.Enum):
    SCHOOL = "SCHOOL"
    MUNICIPALITY = "MUNICIPALITY"
    GRADE = "GRADE"
    SUBJECT = "SUBJECT"
    PERIOD = "PERIOD"
    CODE = "CODE"


@strawberry.input(description="Which cells to aggregate; an omitted list means all values.")
class AnalyticsFilter:
    school_ids: list[strawberry.ID] | None = None
    municipality_ids: list[strawberry.ID] | None = None
    grades: list[int] | None = None
    subject_ids: list[strawberry.ID] | None = None
    period_scheme: PeriodScheme | None = None
    period_numbers: list[int] | None = None
    work_type_ids: list[strawberry.ID] | None = strawberry.field(
        default=None, description="Marks only (ignored by attendance)."
    )
    codes: list[str] | None = strawberry.field(
        default=None, description="Attendance only: journal codes Н, Б, У, П, О, ОП."
    )


class MarkPart(enum.Enum):
    """What the marks aggregate reads only when selected (one more statement)."""

    VALUES = "values"  # the per-value counts behind MarkGroup.distribution


@strawberry.type(description="A municipality (district or city) of the region.")
class AnalyticsMunicipality:
    id: strawberry.ID
    name: str


@strawberry.type(description="A study period, the same in every school: e.g. 2nd quarter.")
class AnalyticsPeriod:
    year_title: str = strawberry.field(description="School year, e.g. «2026/2027».")
    scheme: PeriodScheme
    number: int
    title: str = strawberry.field(description="E.g. «2 четверть».")


@strawberry.type(description="The values of the grouped dimensions; the others are null.")
class AnalyticsGroupKey:
    school: School | None = None
    municipality: AnalyticsMunicipality | None = None
    grade: int | None = None
    subject: Subject | None = None
    period: AnalyticsPeriod | None = None
    work_type: WorkType | None = None
    code: str | None = strawberry.field(default=None, description="Attendance code.")


@strawberry.type(description="How many published marks have this value as written.")
class MarkValueCount:
    value: str = strawberry.field(description="As in the journal: 5, 4-, зачёт, осв, ...")
    count: int


@strawberry.type(description="Mark figures of one group. " + SUPPRESSION_RULE)
class MarkGroup:
    key: AnalyticsGroupKey
    suppressed: bool = strawberry.field(
        description="True when the group has no publishable cell: every figure is null."
    )
    mark_count: int | None = strawberry.field(description="Marks of any value.")
    counted_mark_count: int | None = strawberry.field(
        description="Marks counting toward the weighted average (numeric, counted, weight > 0)."
    )
    weight_sum: float | None
    weighted_average: float | None = strawberry.field(
        description="Σ(weight × mark) / Σ(weight) over the counted marks, 2 decimals."
    )
    distribution: list[MarkValueCount] | None = strawberry.field(
        resolver=lambda root: _distribution(root),
        description="Marks per value, most frequent first.",
        metadata=sized(6) | loads(MarkPart.VALUES),  # mark values are a handful
    )
    # (values, counts), most frequent first; None when suppressed.
    value_counts: strawberry.Private[tuple[list[str], list[int]] | None] = None


def _distribution(root: MarkGroup) -> list[MarkValueCount] | None:
    if root.value_counts is None:
        return None
    values, counts = root.value_counts
    return [
        MarkValueCount(value=value, count=count)
        for value, count in zip(values, counts, strict=True)
    ]


@strawberry.type(description="Marks aggregated by the requested dimensions. " + SUPPRESSION_RULE)
class MarkAggregates:
    refreshed_at: datetime
    min_group_size: int
    total: MarkGroup = strawberry.field(
        description="All publishable cells matching the filter (not the journal's total)."
    )
    # Groups of a region-wide grouping (the API refuses more than 5000).
    groups: list[MarkGroup] = strawberry.field(metadata=sized(1000))


@strawberry.type(description="Attendance records with one code.")
class AttendanceCodeCount:
    code: str = strawberry.field(description="Н absent, Б ill, У/П excused, О/ОП late.")
    records: int
    rate: float | None = strawberry.field(
        description="Records per student-lesson of the group (4 decimals)."
    )


@strawberry.type(description="Attendance figures of one group. " + SUPPRESSION_RULE)
class AttendanceGroup:
    key: AnalyticsGroupKey
    suppressed: bool = strawberry.field(
        description="True when the group has no publishable cell: every figure is null."
    )
    lessons: int | None = strawberry.field(description="Lessons held (not cancelled).")
    student_lessons: int | None = strawberry.field(
        description="Σ over held lessons of the class's enrolment: the rates' denominator."
    )
    records: int | None = strawberry.field(description="Attendance records of every code.")
    rate: float | None = strawberry.field(description="records / studentLessons.")
    by_code: list[AttendanceCodeCount] | None = strawberry.field(metadata=sized(6))


@strawberry.type(
    description="Attendance aggregated by the requested dimensions. " + SUPPRESSION_RULE
)
class AttendanceAggregates:
    refreshed_at: datetime
    min_group_size: int
    total: AttendanceGroup = strawberry.field(
        description="All publishable cells matching the filter (not the journal's total)."
    )
    groups: list[AttendanceGroup] = strawberry.field(metadata=sized(1000))


@strawberry.type(description="How fresh the pre-aggregated figures are.")
class AnalyticsFreshness:
    refreshed_at: datetime = strawberry.field(description="When the figures were rebuilt.")
    as_of: date = strawberry.field(description="The diary date they were rebuilt as of.")
    refresh_duration_ms: int

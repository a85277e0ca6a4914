"""GraphQL types of the regional analytics: aggregates only, no person.

No type here has a field naming, identifying or counting individual students: groups
are keyed by school, municipality, grade, subject, period, work type or attendance
code, and carry sums over published units (see resolvers.analytics.merge).
"""

from __future__ import annotations

import enum
from datetime import date, datetime

import strawberry

from resolvers.common.fields import loads, sized
from resolvers.common.types import PeriodScheme, School, Subject, WorkType

SUPPRESSION_RULE = (
    "Small groups are protected: figures are sums over units that each cover at least "
    "`minGroupSize` distinct students. A unit is a base cell (school × grade × subject × "
    "period × work type for marks; × attendance code for attendance records; school × "
    "grade × subject × period for lessons) of that size, or smaller cells merged up a "
    "fixed hierarchy until they are (docs/analytics.md). A unit is never split: a filter "
    "includes it only when all its values pass, and a group counts it only when it has "
    "one value of each grouped dimension; the others are in `spanning` and in `total`. "
    "What stays below the size after every merge is in no figure. A group without any "
    "unit of its own is returned with `suppressed: true` and no figures."
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


@strawberry.enum(description="How a figure relates to the units it sums.")
class FigureExactness(enum.Enum):
    EXACT = "EXACT"
    ROUNDED = "ROUNDED"
    NOISY = "NOISY"


@strawberry.type(
    description=(
        "How exact one figure of the groups is. Exact and rounded figures are computed over "
        "the units counted in the group; how much of the journal that leaves out is not "
        "released per group (it would be the small cells themselves)."
    )
)
class FigureAccuracy:
    figure: str = strawberry.field(description="The field, e.g. `weightedAverage`.")
    exactness: FigureExactness
    error_bound: float | None = strawberry.field(
        description="The largest difference from the unrounded value (null: none given)."
    )
    relative_error_bound: float | None = strawberry.field(
        description=(
            "The largest difference from the unrounded value relative to it (rates are "
            "rounded to 4 significant digits: 0.0005)."
        )
    )


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
        description="True when no published unit counts in the group: every figure is null."
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
        description="All units matching the filter: the groups and `spanning`."
    )
    # Groups of a region-wide grouping (the API refuses more than 5000).
    groups: list[MarkGroup] = strawberry.field(metadata=sized(1000))
    spanning: MarkGroup | None = strawberry.field(
        description=(
            "Units of merged small cells with several values of a grouped dimension (e.g. "
            "grades merged within a school, grouped by grade): in `total`, in no group. "
            "Null when there are none."
        )
    )
    accuracy: list[FigureAccuracy] = strawberry.field(
        description="How exact each figure is.", metadata=sized(6)
    )
    attributed_share: float | None = strawberry.field(
        description=(
            "The share of `total.markCount` counted in groups (without a grouping: in the "
            "total), 4 significant digits; the rest is in `spanning`. Below 1, the groups' "
            "figures leave out those marks."
        )
    )


@strawberry.type(description="Attendance records with one code.")
class AttendanceCodeCount:
    code: str = strawberry.field(description="Н absent, Б ill, У/П excused, О/ОП late.")
    records: int
    rate: float | None = strawberry.field(
        description="Records per student-lesson of the group (4 significant digits)."
    )


@strawberry.type(description="Attendance figures of one group. " + SUPPRESSION_RULE)
class AttendanceGroup:
    key: AnalyticsGroupKey
    suppressed: bool = strawberry.field(
        description="True when no published unit counts in the group: every figure is null."
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
        description="All units matching the filter: the groups and `spanning`."
    )
    groups: list[AttendanceGroup] = strawberry.field(metadata=sized(1000))
    spanning: AttendanceGroup | None = strawberry.field(
        description=(
            "Units of merged small cells with several values of a grouped dimension: in "
            "`total`, in no group; its rates are null (no one denominator). Null when "
            "there are none."
        )
    )
    accuracy: list[FigureAccuracy] = strawberry.field(
        description="How exact each figure is.", metadata=sized(8)
    )
    attributed_share: float | None = strawberry.field(
        description=(
            "The share of `total.records` counted in groups (4 significant digits); the rest "
            "is in `spanning`. Below 1, the groups' records and rates leave those out (rates "
            "by subject, grade or period are then lower than the journal's)."
        )
    )


@strawberry.type(description="How fresh the pre-aggregated figures are.")
class AnalyticsFreshness:
    refreshed_at: datetime = strawberry.field(description="When the figures were rebuilt.")
    as_of: date = strawberry.field(description="The diary date they were rebuilt as of.")
    refresh_duration_ms: int

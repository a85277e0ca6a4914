"""GraphQL types of the regional analytics: aggregates only, no person.

No type here has a field naming, identifying or counting individual students: groups
are keyed by school, municipality, grade, subject, period, work type or attendance
code, and carry sums over published units (see resolvers.analytics.merge).
"""

from __future__ import annotations

import enum
from datetime import date, datetime
from typing import Final

import strawberry

from resolvers.common.fields import loads, sized
from resolvers.common.types import PeriodScheme, School, Subject, WorkType, described_value

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


_KEY = "The group's value of each grouped dimension (all null in `total` and `spanning`)."
_REFRESHED_AT = "When the figures were rebuilt: `freshness.refreshedAt`."
MIN_GROUP_SIZE_DESCRIPTION = (
    "The smallest group size k: the fewest distinct students a unit must cover to be "
    "published (SCHOOL_GATEWAY_MIN_GROUP_SIZE, default 10)."
)
_GROUPS = (
    "One per combination of grouped values found in the selected data, suppressed ones "
    "included; sorted by municipality, school, grade, subject, period, work type and code. "
    "At most 5000 (BAD_USER_INPUT beyond: narrow the filter or group by fewer dimensions)."
)


# The dimensions marks and attendance share, described once for both enums.
_SHARED_DIMENSIONS: Final[dict[str, str]] = {
    "SCHOOL": "By school: `key.school`.",
    "MUNICIPALITY": "By municipality: `key.municipality`.",
    "GRADE": "By grade (1–11): `key.grade`.",
    "SUBJECT": "By subject: `key.subject`.",
    "PERIOD": "By study period (school year, scheme, number): `key.period`.",
}


def dimension(name: str) -> str:
    """The enum value `name` of a dimension marks and attendance share, described."""
    return described_value(name, description=_SHARED_DIMENSIONS[name])


@strawberry.enum(description="What marks can be grouped by.")
class MarkDimension(enum.Enum):
    SCHOOL = dimension("SCHOOL")
    MUNICIPALITY = dimension("MUNICIPALITY")
    GRADE = dimension("GRADE")
    SUBJECT = dimension("SUBJECT")
    PERIOD = dimension("PERIOD")
    WORK_TYPE = described_value("WORK_TYPE", description="By the marks' work type: `key.workType`.")


@strawberry.enum(description="What attendance can be grouped by.")
class AttendanceDimension(enum.Enum):
    SCHOOL = dimension("SCHOOL")
    MUNICIPALITY = dimension("MUNICIPALITY")
    GRADE = dimension("GRADE")
    SUBJECT = dimension("SUBJECT")
    PERIOD = dimension("PERIOD")
    CODE = described_value(
        "CODE",
        description=(
            "By attendance code: `key.code`. A group's rate is per student-lesson of its group "
            "without the code (grouped by CODE alone: of the whole selection)."
        ),
    )


@strawberry.input(description="Which cells to aggregate; an omitted list means all values.")
class AnalyticsFilter:
    school_ids: list[strawberry.ID] | None = strawberry.field(
        default=None, description="Only these schools (`School.id`); at most 1000 values."
    )
    municipality_ids: list[strawberry.ID] | None = strawberry.field(
        default=None,
        description="Only schools of these municipalities (`AnalyticsMunicipality.id`); at "
        "most 1000 values.",
    )
    grades: list[int] | None = strawberry.field(
        default=None, description="Only these grades, 1–11; at most 1000 values."
    )
    subject_ids: list[strawberry.ID] | None = strawberry.field(
        default=None, description="Only these subjects (`Subject.id`); at most 1000 values."
    )
    period_scheme: PeriodScheme | None = strawberry.field(
        default=None, description="Only periods of this scheme; null: of every scheme."
    )
    period_numbers: list[int] | None = strawberry.field(
        default=None,
        description=(
            "Only periods with these numbers within their scheme and year, 1–4 (with "
            "QUARTERS, [2]: the 2nd quarters); at most 1000 values."
        ),
    )
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
    EXACT = described_value(
        "EXACT", description="An exact sum over the units counted in the group."
    )
    ROUNDED = described_value(
        "ROUNDED",
        description=(
            "Computed exactly over the units counted in the group, then rounded: by at most "
            "`errorBound`, or `relativeErrorBound` of the value."
        ),
    )
    NOISY = described_value(
        "NOISY", description="Reserved for figures with added noise; no figure is noisy today."
    )


@strawberry.type(
    description=(
        "How exact one figure of the groups is. Exact and rounded figures are computed over "
        "the units counted in the group; how much of the journal that leaves out is not "
        "released per group (it would be the small cells themselves)."
    )
)
class FigureAccuracy:
    figure: str = strawberry.field(description="The field, e.g. `weightedAverage`.")
    exactness: FigureExactness = strawberry.field(
        description="Whether the figure is exact or rounded."
    )
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
    id: strawberry.ID = strawberry.field(
        description="The municipality's id (as in `filter.municipalityIds`)."
    )
    name: str = strawberry.field(description="The municipality's name.")


@strawberry.type(description="A study period, the same in every school: e.g. 2nd quarter.")
class AnalyticsPeriod:
    year_title: str = strawberry.field(description="School year, e.g. «2026/2027».")
    scheme: PeriodScheme = strawberry.field(
        description="How the year is divided: quarters, half-years or trimesters."
    )
    number: int = strawberry.field(
        description=(
            "The period's number within its scheme and year: quarters 1–4, half-years 1–2, "
            "trimesters 1–3."
        )
    )
    title: str = strawberry.field(description="E.g. «2 четверть».")


@strawberry.type(description="The values of the grouped dimensions; the others are null.")
class AnalyticsGroupKey:
    school: School | None = strawberry.field(
        default=None, description="The school, when grouped by SCHOOL."
    )
    municipality: AnalyticsMunicipality | None = strawberry.field(
        default=None, description="The municipality, when grouped by MUNICIPALITY."
    )
    grade: int | None = strawberry.field(
        default=None, description="The grade (1–11), when grouped by GRADE."
    )
    subject: Subject | None = strawberry.field(
        default=None, description="The subject, when grouped by SUBJECT."
    )
    period: AnalyticsPeriod | None = strawberry.field(
        default=None, description="The study period, when grouped by PERIOD."
    )
    work_type: WorkType | None = strawberry.field(
        default=None, description="The work type, when grouped by WORK_TYPE (marks only)."
    )
    code: str | None = strawberry.field(default=None, description="Attendance code.")


@strawberry.type(description="How many published marks have this value as written.")
class MarkValueCount:
    value: str = strawberry.field(description="As in the journal: 5, 4-, зачёт, осв, ...")
    count: int = strawberry.field(description="Marks with this value.")


@strawberry.type(description="Mark figures of one group. " + SUPPRESSION_RULE)
class MarkGroup:
    key: AnalyticsGroupKey = strawberry.field(description=_KEY)
    suppressed: bool = strawberry.field(
        description="True when no published unit counts in the group: every figure is null."
    )
    mark_count: int | None = strawberry.field(description="Marks of any value.")
    counted_mark_count: int | None = strawberry.field(
        description="Marks counting toward the weighted average (numeric, counted, weight > 0)."
    )
    weight_sum: float | None = strawberry.field(
        description="Σ(weight) over the counted marks, each with its own weight."
    )
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
    refreshed_at: datetime = strawberry.field(description=_REFRESHED_AT)
    min_group_size: int = strawberry.field(description=MIN_GROUP_SIZE_DESCRIPTION)
    total: MarkGroup = strawberry.field(
        description="All units matching the filter: the groups and `spanning`."
    )
    # Groups of a region-wide grouping (the API refuses more than 5000).
    groups: list[MarkGroup] = strawberry.field(description=_GROUPS, metadata=sized(1000))
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
    records: int = strawberry.field(description="Records with this code.")
    rate: float | None = strawberry.field(
        description="Records per student-lesson of the group (4 significant digits)."
    )


@strawberry.type(description="Attendance figures of one group. " + SUPPRESSION_RULE)
class AttendanceGroup:
    key: AnalyticsGroupKey = strawberry.field(description=_KEY)
    suppressed: bool = strawberry.field(
        description="True when no published unit counts in the group: every figure is null."
    )
    lessons: int | None = strawberry.field(description="Lessons held (not cancelled).")
    student_lessons: int | None = strawberry.field(
        description="Σ over held lessons of the class's enrolment: the rates' denominator."
    )
    records: int | None = strawberry.field(description="Attendance records of every code.")
    rate: float | None = strawberry.field(
        description="`records / studentLessons` (4 significant digits)."
    )
    by_code: list[AttendanceCodeCount] | None = strawberry.field(
        description="Records per attendance code, by code; null when suppressed.",
        metadata=sized(6),
    )


@strawberry.type(
    description="Attendance aggregated by the requested dimensions. " + SUPPRESSION_RULE
)
class AttendanceAggregates:
    refreshed_at: datetime = strawberry.field(description=_REFRESHED_AT)
    min_group_size: int = strawberry.field(description=MIN_GROUP_SIZE_DESCRIPTION)
    total: AttendanceGroup = strawberry.field(
        description="All units matching the filter: the groups and `spanning`."
    )
    groups: list[AttendanceGroup] = strawberry.field(description=_GROUPS, metadata=sized(1000))
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
    refresh_duration_ms: int = strawberry.field(
        description=(
            "How long the last rebuild took, in milliseconds: from holding the refresh lock "
            "to the units stored (not the wait for the lock, the commit or the VACUUM after)."
        )
    )

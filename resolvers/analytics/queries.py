"""Regional analytics: `regionalAnalytics { freshness marks attendance }`.

Only REGIONAL_ANALYST viewers (people or machine clients with the `region:analytics`
scope) reach these fields; anyone else gets FORBIDDEN and no data. The figures are
read from the gateway's pre-aggregated units through the analytics service (own
pool, statement timeout and per-client rate limit) and are suppressed as described in
`SUPPRESSION_RULE` and docs/analytics.md.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated, Any, Final

import strawberry
from strawberry.permission import PermissionExtension

from auth.permissions import HasScope, IsAuthenticated, IsRegionalAnalyst, parse_int_id
from auth.viewer import SCOPE_REGION_ANALYTICS, Role
from gateway.core.errors import BadUserInputError, ForbiddenError
from resolvers.analytics import cells
from resolvers.analytics.service import AnalyticsService
from resolvers.analytics.types import (
    MIN_GROUP_SIZE_DESCRIPTION,
    SUPPRESSION_RULE,
    AnalyticsFilter,
    AnalyticsFreshness,
    AnalyticsGroupKey,
    AnalyticsMunicipality,
    AnalyticsPeriod,
    AttendanceAggregates,
    AttendanceCodeCount,
    AttendanceDimension,
    AttendanceGroup,
    FigureAccuracy,
    FigureExactness,
    MarkAggregates,
    MarkDimension,
    MarkGroup,
    MarkPart,
)
from resolvers.common.selection import SelectionMemo, parts_selected
from resolvers.common.types import PeriodScheme, School, Subject, WorkType
from resolvers.context import Context

Info = strawberry.Info[Context, None]
MAX_GROUPS: Final = 5000
_MARK_PARTS: SelectionMemo[frozenset[MarkPart]] = SelectionMemo(limit=1024)
MAX_FILTER_VALUES: Final = 1000
YIELD_EVERY: Final = 64  # groups assembled between two yields to the event loop
ATTENDANCE_CODES: Final = frozenset({"Н", "Б", "У", "П", "О", "ОП"})
_CENT = Decimal("0.01")
RATE_DIGITS: Final = 4  # significant digits of rates and shares
RATE_RELATIVE_ERROR: Final = 0.5 * 10 ** (1 - RATE_DIGITS)
Row = Mapping[str, Any]

_GROUP_BY = "The dimensions to group by, in any order, repeats ignored; []: only `total`."
MarkGroupByArg = Annotated[list[MarkDimension], strawberry.argument(description=_GROUP_BY)]
AttendanceGroupByArg = Annotated[
    list[AttendanceDimension], strawberry.argument(description=_GROUP_BY)
]
MarkFilterArg = Annotated[
    AnalyticsFilter | None,
    strawberry.argument(description="Which cells to aggregate; null: every cell."),
]
AttendanceFilterArg = Annotated[
    AnalyticsFilter | None,
    strawberry.argument(
        description="Which cells to aggregate (`workTypeIds` is ignored); null: every cell."
    ),
]


def _exact(*figures: str) -> list[FigureAccuracy]:
    return [
        FigureAccuracy(
            figure=f, exactness=FigureExactness.EXACT, error_bound=None, relative_error_bound=None
        )
        for f in figures
    ]


def _rounded(figure: str, bound: float | None, relative: float | None = None) -> FigureAccuracy:
    return FigureAccuracy(
        figure=figure,
        exactness=FigureExactness.ROUNDED,
        error_bound=bound,
        relative_error_bound=relative,
    )


# Sums over units are exact; averages are rounded to 2 decimals, rates to 4 significant
# digits (a rare code's rate is a few in ten thousand: decimals would lose it).
MARK_ACCURACY: Final = (
    *_exact("markCount", "countedMarkCount", "weightSum", "distribution"),
    _rounded("weightedAverage", 0.005),
)
ATTENDANCE_ACCURACY: Final = (
    *_exact("lessons", "studentLessons", "records", "byCode.records"),
    _rounded("rate", None, RATE_RELATIVE_ERROR),
    _rounded("byCode.rate", None, RATE_RELATIVE_ERROR),
)


def _service(info: Info) -> AnalyticsService:
    viewer = info.context.require_viewer()
    # The second layer behind the permission extension.
    if viewer.role is not Role.REGIONAL_ANALYST or SCOPE_REGION_ANALYTICS not in viewer.scopes:
        raise ForbiddenError()
    service = info.context.app.analytics
    if service is None:
        raise RuntimeError("the analytics service is not configured")
    return service


def _ids(values: list[strawberry.ID] | None, argument: str) -> list[int] | None:
    if values is None:
        return None
    return [parse_int_id(value, argument=f"filter.{argument}") for value in values]


def _in_range(values: list[int] | None, low: int, high: int, argument: str) -> list[int] | None:
    if values is not None and not all(low <= value <= high for value in values):
        raise BadUserInputError(f"Значения filter.{argument} должны быть от {low} до {high}.")
    return values


def _cell_filter(given: AnalyticsFilter | None) -> cells.CellFilter:
    if given is None:
        return cells.CellFilter()
    lists = (
        given.school_ids,
        given.municipality_ids,
        given.grades,
        given.subject_ids,
        given.period_numbers,
        given.work_type_ids,
        given.codes,
    )
    if any(values is not None and len(values) > MAX_FILTER_VALUES for values in lists):
        raise BadUserInputError(f"Не более {MAX_FILTER_VALUES} значений в одном списке filter.")
    if given.codes is not None and not set(given.codes) <= ATTENDANCE_CODES:
        raise BadUserInputError("Неизвестный код посещаемости в filter.codes.")
    return cells.CellFilter(
        school_ids=_ids(given.school_ids, "schoolIds"),
        municipality_ids=_ids(given.municipality_ids, "municipalityIds"),
        grades=_in_range(given.grades, 1, 11, "grades"),
        subject_ids=_ids(given.subject_ids, "subjectIds"),
        period_scheme=None if given.period_scheme is None else given.period_scheme.value,
        period_numbers=_in_range(given.period_numbers, 1, 4, "periodNumbers"),
        work_type_ids=_ids(given.work_type_ids, "workTypeIds"),
        codes=given.codes,
    )


# --- group keys ----------------------------------------------------------------------


class _Keys:
    """Builds group keys; the labelled objects are made once per value and shared."""

    def __init__(self, labels: cells.Labels) -> None:
        self.labels = labels
        self._made: dict[tuple[str, Any], Any] = {}

    def __call__(self, values: Mapping[str, Any]) -> AnalyticsGroupKey:
        key = AnalyticsGroupKey(grade=values.get("grade"), code=values.get("code"))
        if values.get("school_id") is not None:
            key.school = self._labelled("school", values["school_id"])
        if values.get("municipality_id") is not None:
            key.municipality = self._labelled("municipality", values["municipality_id"])
        if values.get("subject_id") is not None:
            key.subject = self._labelled("subject", values["subject_id"])
        if values.get("year_id") is not None:
            period = (values["year_id"], values["period_scheme"], values["period_number"])
            key.period = self._labelled("period", period)
        if values.get("work_type_id") is not None:
            key.work_type = self._labelled("work_type", values["work_type_id"])
        return key

    def _labelled(self, kind: str, value: Any) -> Any:
        made = self._made.get((kind, value))
        if made is None:
            made = self._made[(kind, value)] = self._make(kind, value)
        return made

    def _make(self, kind: str, value: Any) -> Any:
        labels = self.labels
        if kind == "school":
            name, short, municipality = labels.schools.get(value, ("?", "?", "?"))
            return School(
                id=strawberry.ID(str(value)), name=name, short_name=short, municipality=municipality
            )
        if kind == "municipality":
            name = labels.municipalities.get(value, "?")
            return AnalyticsMunicipality(id=strawberry.ID(str(value)), name=name)
        if kind == "subject":
            return Subject(id=strawberry.ID(str(value)), name=labels.subjects.get(value, "?"))
        if kind == "period":
            year_title, title = labels.periods.get(value, ("?", "?"))
            scheme = PeriodScheme(value[1])
            return AnalyticsPeriod(
                year_title=year_title, scheme=scheme, number=value[2], title=title
            )
        name, short, weight = labels.work_types.get(value, ("?", "?", Decimal(0)))
        return WorkType(
            id=strawberry.ID(str(value)), name=name, short_name=short, weight=float(weight)
        )


def _sort_key(key: AnalyticsGroupKey) -> tuple[Any, ...]:
    return (
        key.municipality.name if key.municipality else "",
        key.school.name if key.school else "",
        key.grade or 0,
        key.subject.name if key.subject else "",
        (key.period.year_title, key.period.scheme.value, key.period.number) if key.period else (),
        key.work_type.name if key.work_type else "",
        key.code or "",
    )


def _check_size(count: int) -> None:
    if count > MAX_GROUPS:
        raise BadUserInputError(
            f"Слишком много групп ({count}, допустимо не более {MAX_GROUPS}): "
            "сузьте фильтр или уменьшите число измерений группировки."
        )


# --- marks ---------------------------------------------------------------------------


def _average(weighted_sum: Decimal | None, weight_sum: Decimal | None) -> float | None:
    if not weighted_sum or not weight_sum:
        return None
    return float((weighted_sum / weight_sum).quantize(_CENT, rounding=ROUND_HALF_UP))


def _mark_group(key: AnalyticsGroupKey, row: Row | None, values: Row | None) -> MarkGroup:
    if row is None or not row["published"]:
        return MarkGroup(
            key=key,
            suppressed=True,
            mark_count=None,
            counted_mark_count=None,
            weight_sum=None,
            weighted_average=None,
        )
    return MarkGroup(
        key=key,
        suppressed=False,
        mark_count=int(row["marks"]),
        counted_mark_count=int(row["counted_marks"]),
        weight_sum=float(row["weight_sum"]),
        weighted_average=_average(row["weighted_sum"], row["weight_sum"]),
        value_counts=([], []) if values is None else (values["values"], values["counts"]),
    )


def _spans(group: tuple[Any, ...]) -> bool:
    """A group key with a NULL: units with several values of a grouped dimension."""
    return any(value is None for value in group)


def _summed(rows: Sequence[Row], figures: Sequence[str]) -> dict[str, Any]:
    """One row of the sums of `rows` (the spanning units' rows of an answer)."""
    summed: dict[str, Any] = {"published": True}
    for figure in figures:
        summed[figure] = sum((row[figure] for row in rows if row[figure] is not None), 0)
    return summed


def _summed_values(rows: Sequence[Row]) -> dict[str, Any]:
    """Value counts of several rows, most frequent first (as the values statement)."""
    counts: dict[str, int] = defaultdict(int)
    for row in rows:
        for value, count in zip(row["values"], row["counts"], strict=True):
            counts[value] += count
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return {"values": [v for v, _ in ordered], "counts": [c for _, c in ordered]}


def _by_key(rows: Iterable[Row], columns: Sequence[str]) -> dict[tuple[Any, ...] | None, list[Row]]:
    """Rows by group key (None for the total rows)."""
    grouped: dict[tuple[Any, ...] | None, list[Row]] = defaultdict(list)
    for row in rows:
        grouped[None if row["is_total"] else tuple(row[c] for c in columns)].append(row)
    return grouped


async def resolve_marks(
    root: RegionalAnalytics,
    info: Info,
    group_by: MarkGroupByArg,
    filter: MarkFilterArg = None,
) -> MarkAggregates:
    service = _service(info)
    columns = cells.group_columns([d.value for d in group_by], cells.MARK_DIMENSIONS)
    cell_filter = _cell_filter(filter)
    k = service.min_group_size
    with_values = MarkPart.VALUES in _MARK_PARTS.get(info, lambda: parts_selected(info, MarkPart))
    figures, values, labels = await service.marks(
        columns, cell_filter, root.freshness.refreshed_at, with_values=with_values
    )
    _check_size(
        sum(
            1
            for row in figures
            if not row["is_total"] and not _spans(tuple(row[c] for c in columns))
        )
    )
    async with service.turn():  # the analytics' share of the event loop is capped
        keys = _Keys(labels)
        value_rows = {
            None if row["is_total"] else tuple(row[c] for c in columns): row for row in values
        }
        groups: list[MarkGroup] = []
        spanning: list[tuple[Row, Row | None]] = []
        total = _mark_group(AnalyticsGroupKey(), None, None)
        for index, row in enumerate(figures):
            if index % YIELD_EVERY == YIELD_EVERY - 1:
                await asyncio.sleep(0)  # let diary requests in between
            if row["is_total"]:
                total = _mark_group(AnalyticsGroupKey(), row, value_rows.get(None))
                continue
            group = tuple(row[c] for c in columns)
            if _spans(group):
                spanning.append((row, value_rows.get(group)))
                continue
            key = keys(dict(zip(columns, group, strict=True)))
            groups.append(_mark_group(key, row, value_rows.get(group)))
        groups.sort(key=lambda g: _sort_key(g.key))
    spanning_group = _spanning_marks(spanning, with_values=with_values)
    return MarkAggregates(
        refreshed_at=root.freshness.refreshed_at,
        min_group_size=k,
        total=total,
        groups=groups,
        spanning=spanning_group,
        accuracy=list(MARK_ACCURACY),
        attributed_share=_share(
            total.mark_count, spanning_group.mark_count if spanning_group else None
        ),
    )


def _spanning_marks(
    rows: Sequence[tuple[Row, Row | None]], *, with_values: bool
) -> MarkGroup | None:
    if not rows:
        return None
    figures = _summed(
        [row for row, _ in rows], ("marks", "counted_marks", "weighted_sum", "weight_sum")
    )
    values = _summed_values([v for _, v in rows if v is not None]) if with_values else None
    return _mark_group(AnalyticsGroupKey(), figures, values)


# --- attendance ----------------------------------------------------------------------


def _rate(count: int, denominator: int | None) -> float | None:
    if not denominator:
        return None
    return _significant(count / denominator)


def _significant(value: float) -> float:
    """`value` rounded to RATE_DIGITS significant digits."""
    return float(f"{value:.{RATE_DIGITS}g}")


def _share(total: int | None, spanning: int | None) -> float | None:
    """The share of `total` counted in groups (not in `spanning`)."""
    if not total:
        return None
    return _significant((total - (spanning or 0)) / total)


def _attendance_group(
    key: AnalyticsGroupKey, lessons: Row | None, codes: Sequence[Row], *, by_code: bool
) -> AttendanceGroup:
    published_codes = [row for row in codes if row["published"]]
    lessons_published = lessons is not None and lessons["published"]
    if not published_codes and (by_code or not lessons_published):
        return AttendanceGroup(
            key=key,
            suppressed=True,
            lessons=None,
            student_lessons=None,
            records=None,
            rate=None,
            by_code=None,
        )
    student_lessons = int(lessons["student_lessons"]) if lessons and lessons_published else None
    if not published_codes and codes:
        # Its records are all in cells not published on their own: no count, not a false 0.
        return AttendanceGroup(
            key=key,
            suppressed=False,
            lessons=int(lessons["lessons"]) if lessons and lessons_published else None,
            student_lessons=student_lessons,
            records=None,
            rate=None,
            by_code=[],
        )
    counts = sorted(
        (
            AttendanceCodeCount(
                code=row["code"],
                records=int(row["records"]),
                rate=_rate(int(row["records"]), student_lessons),
            )
            for row in published_codes
        ),
        key=lambda count: count.code,
    )
    records = sum(count.records for count in counts)
    return AttendanceGroup(
        key=key,
        suppressed=False,
        lessons=int(lessons["lessons"]) if lessons and lessons_published else None,
        student_lessons=student_lessons,
        records=records,
        rate=_rate(records, student_lessons),
        by_code=counts,
    )


@dataclass(frozen=True, slots=True)
class _AttendanceRows:
    lesson_columns: list[str]
    lessons: dict[tuple[Any, ...] | None, Row]
    codes: dict[tuple[Any, ...] | None, list[Row]]


def _lesson_groups(rows: _AttendanceRows, *, by_code: bool) -> list[tuple[Any, ...] | None]:
    """The groups of the dimensions other than CODE (None: the total).

    The attendance query groups the codes as an extra column of both the groups and the
    total, so grouped by CODE alone every row it returns is a total row: then the codes
    of the total are the groups (without this, `[CODE]` answered no groups at all).
    """
    if by_code and not rows.lesson_columns:
        return [None]
    return [key for key in {*rows.lessons, *rows.codes} if key is not None and not _spans(key)]


def _spanning_attendance(rows: _AttendanceRows) -> AttendanceGroup | None:
    """The units with several values of a grouped dimension: records per code, lessons
    when any; no rates (they have no one denominator)."""
    lessons = [row for key, row in rows.lessons.items() if key is not None and _spans(key)]
    codes = [
        row for key, found in rows.codes.items() if key is not None and _spans(key) for row in found
    ]
    if not lessons and not codes:
        return None
    per_code: dict[str, int] = defaultdict(int)
    for row in codes:
        if row["published"]:
            per_code[row["code"]] += int(row["records"])
    summed = _summed(lessons, ("lessons", "student_lessons")) if lessons else None
    return AttendanceGroup(
        key=AnalyticsGroupKey(),
        suppressed=False,
        lessons=int(summed["lessons"]) if summed else None,
        student_lessons=int(summed["student_lessons"]) if summed else None,
        records=sum(per_code.values()),
        rate=None,
        by_code=[
            AttendanceCodeCount(code=code, records=count, rate=None)
            for code, count in sorted(per_code.items())
        ],
    )


async def _attendance_groups(
    rows: _AttendanceRows, keys: _Keys, *, by_code: bool
) -> list[AttendanceGroup]:
    groups: list[AttendanceGroup] = []
    columns = rows.lesson_columns
    for lesson_key in _lesson_groups(rows, by_code=by_code):
        if len(groups) % YIELD_EVERY == YIELD_EVERY - 1:
            await asyncio.sleep(0)  # let diary requests in between
        values = {} if lesson_key is None else dict(zip(columns, lesson_key, strict=True))
        lesson = rows.lessons.get(lesson_key)
        code_rows = rows.codes.get(lesson_key, [])
        if not by_code:
            key = keys(values)
            groups.append(_attendance_group(key, lesson, code_rows, by_code=False))
            continue
        for code_row in code_rows:
            key = keys({**values, "code": code_row["code"]})
            groups.append(_attendance_group(key, lesson, [code_row], by_code=True))
    return groups


async def resolve_attendance(
    root: RegionalAnalytics,
    info: Info,
    group_by: AttendanceGroupByArg,
    filter: AttendanceFilterArg = None,
) -> AttendanceAggregates:
    service = _service(info)
    columns = cells.group_columns([d.value for d in group_by], cells.ATTENDANCE_DIMENSIONS)
    lesson_columns = [column for column in columns if column != "code"]
    k = service.min_group_size
    lessons, codes, labels = await service.attendance(
        columns, _cell_filter(filter), root.freshness.refreshed_at
    )
    async with service.turn():  # the analytics' share of the event loop is capped
        rows = _AttendanceRows(
            lesson_columns=lesson_columns,
            lessons={key: found[0] for key, found in _by_key(lessons, lesson_columns).items()},
            codes=_by_key(codes, lesson_columns),
        )
        by_code = "code" in columns
        groups = await _attendance_groups(rows, _Keys(labels), by_code=by_code)
        _check_size(len(groups))
        groups.sort(key=lambda g: _sort_key(g.key))
        total = _attendance_group(
            AnalyticsGroupKey(), rows.lessons.get(None), rows.codes.get(None, []), by_code=False
        )
    spanning_group = _spanning_attendance(rows)
    return AttendanceAggregates(
        refreshed_at=root.freshness.refreshed_at,
        min_group_size=k,
        total=total,
        groups=groups,
        spanning=spanning_group,
        accuracy=list(ATTENDANCE_ACCURACY),
        attributed_share=_share(total.records, spanning_group.records if spanning_group else None),
    )


# --- the root ------------------------------------------------------------------------


@strawberry.type(description="Regional analytics: read-only aggregates. " + SUPPRESSION_RULE)
class RegionalAnalytics:
    freshness: AnalyticsFreshness = strawberry.field(
        description="When the pre-aggregated figures were last rebuilt."
    )
    min_group_size: int = strawberry.field(description=MIN_GROUP_SIZE_DESCRIPTION)
    marks: MarkAggregates = strawberry.field(
        resolver=resolve_marks,
        description="Current marks: counts, weighted average, distribution of values.",
    )
    attendance: AttendanceAggregates = strawberry.field(
        resolver=resolve_attendance,
        description="Attendance records and rates per student-lesson, by code.",
    )


async def resolve_regional_analytics(info: Info) -> RegionalAnalytics:
    """Counts one call of the client (rate limit) and makes sure the cells exist."""
    service = _service(info)
    viewer = info.context.require_viewer()
    current = await service.ready(viewer.account_id)
    return RegionalAnalytics(
        freshness=AnalyticsFreshness(
            refreshed_at=current.refreshed_at,
            as_of=current.as_of,
            refresh_duration_ms=current.duration_ms,
        ),
        min_group_size=service.min_group_size,
    )


@strawberry.type(description="Regional analytics queries.")
class AnalyticsQuery:
    regional_analytics: RegionalAnalytics | None = strawberry.field(
        resolver=resolve_regional_analytics,
        extensions=[
            PermissionExtension(
                [IsAuthenticated(), IsRegionalAnalyst(), HasScope(SCOPE_REGION_ANALYTICS)]
            )
        ],
        description=(
            "Aggregates over the whole region for regional analysts (machine clients need "
            "the `region:analytics` scope); anyone else gets FORBIDDEN and no data. Calls "
            "per client are limited (RATE_LIMITED beyond, with retryAfterSeconds). "
            + SUPPRESSION_RULE
        ),
    )

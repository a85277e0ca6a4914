"""Explainable weighted averages: Σ(w·m) / Σ(w) per subject, with every mark's part in it.

A mark counts when the teacher counts it, it has a numeric value and its weight is
positive; every other mark is listed with the reason it was left out.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

from gateway.core.errors import BadUserInputError, NotFoundError
from resolvers.common.arguments import MAX_YEAR_DAYS, check_window
from resolvers.common.types import Subject
from resolvers.diary.rows import PeriodRecord
from resolvers.diary.types import AverageContribution, ContributionReason, Mark, SubjectAverage

_CENT = Decimal("0.01")


def _decimal(value: float) -> Decimal:
    # Values come from numeric(3,2)/numeric(4,2) columns; repr round-trips them exactly.
    return Decimal(repr(value))


def contribution_reason(mark: Mark) -> ContributionReason:
    """Why a mark is or is not part of the average (the teacher's flag is checked first)."""
    if not mark.counts_in_average:
        return ContributionReason.NOT_COUNTED_BY_TEACHER
    if mark.numeric_value is None:
        return ContributionReason.NO_NUMERIC_VALUE
    if mark.weight <= 0:
        return ContributionReason.ZERO_WEIGHT
    return ContributionReason.COUNTED


def subject_average(subject: Subject, marks: Sequence[Mark]) -> SubjectAverage:
    """The weighted average of one subject's marks, with each mark's contribution."""
    contributions: list[AverageContribution] = []
    weighted_sum = Decimal(0)
    weight_sum = Decimal(0)
    for mark in marks:
        reason = contribution_reason(mark)
        counted = reason is ContributionReason.COUNTED
        if counted:
            assert mark.numeric_value is not None
            weight = _decimal(mark.weight)
            weighted_sum += weight * _decimal(mark.numeric_value)
            weight_sum += weight
        contributions.append(
            AverageContribution(
                mark=mark,
                counted=counted,
                weight=mark.weight,
                numeric_value=mark.numeric_value,
                reason=reason,
            )
        )
    average = None
    if weight_sum > 0:
        average = float((weighted_sum / weight_sum).quantize(_CENT, rounding=ROUND_HALF_UP))
    return SubjectAverage(
        subject=subject,
        weighted_average=average,
        weight_sum=float(weight_sum),
        marks_counted=sum(1 for item in contributions if item.counted),
        contributions=contributions,
    )


def subject_averages(marks: Iterable[Mark]) -> list[SubjectAverage]:
    """One average per subject that has marks, ordered by subject name."""
    by_subject: dict[str, list[Mark]] = defaultdict(list)
    subjects: dict[str, Subject] = {}
    for mark in marks:
        by_subject[mark.subject.id].append(mark)
        subjects[mark.subject.id] = mark.subject
    ordered = sorted(subjects.values(), key=lambda subject: (subject.name, subject.id))
    return [subject_average(subject, by_subject[subject.id]) for subject in ordered]


def current_period(periods: Sequence[PeriodRecord], *, today: date) -> PeriodRecord | None:
    """The period containing today; in holidays the last one begun; before all, the first."""
    begun = [period for period in periods if period.starts_on <= today]
    for period in begun:
        if period.contains(today):
            return period
    if begun:
        return max(begun, key=lambda period: period.starts_on)
    return min(periods, key=lambda period: period.starts_on, default=None)


def averages_window(
    *,
    periods: Sequence[PeriodRecord],
    period_id: int | None,
    date_from: date | None,
    date_to: date | None,
    today: date,
) -> tuple[date, date] | None:
    """The window averages are computed over; None when the student has no periods."""
    if period_id is not None and (date_from is not None or date_to is not None):
        raise BadUserInputError("Укажите либо periodId, либо даты from и to, но не всё вместе.")
    if date_from is not None or date_to is not None:
        if date_from is None or date_to is None:
            raise BadUserInputError("Для расчёта среднего по датам нужны обе даты: from и to.")
        return check_window(date_from, date_to, max_days=MAX_YEAR_DAYS)
    if period_id is not None:
        for period in periods:
            if period.id == period_id:
                return period.starts_on, period.ends_on
        raise NotFoundError("Учебный период не найден среди периодов ученика.")
    current = current_period(periods, today=today)
    return None if current is None else (current.starts_on, current.ends_on)

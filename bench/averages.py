"""Weighted averages Σ(w·m) / Σ(w) per subject, as the gateway defines them, on plain values.

Used by the raw-limit endpoint (to answer like the gateway) and by the checker (to derive
the averages from the marks PostGraphile returns). The gateway computes its own answer in
`resolvers.diary.averages`; the benchmark compares the three before timing anything.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

_CENT = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class MarkValue:
    """What the average needs of one mark."""

    subject_id: str
    subject_name: str
    numeric_value: Decimal | None
    weight: Decimal
    counts_in_average: bool


@dataclass(frozen=True, slots=True)
class SubjectResult:
    """One subject's average and the reason each of its marks is (not) counted."""

    subject_id: str
    subject_name: str
    weighted_average: float | None
    weight_sum: float
    marks_counted: int
    reasons: list[str]


def reason(mark: MarkValue) -> str:
    """COUNTED or why not (the teacher's flag first, then the value, then the weight)."""
    if not mark.counts_in_average:
        return "NOT_COUNTED_BY_TEACHER"
    if mark.numeric_value is None:
        return "NO_NUMERIC_VALUE"
    if mark.weight <= 0:
        return "ZERO_WEIGHT"
    return "COUNTED"


def subject_results(marks: Iterable[MarkValue]) -> list[SubjectResult]:
    """One result per subject having marks, ordered by (subject name, subject id)."""
    by_subject: dict[tuple[str, str], list[MarkValue]] = {}
    for mark in marks:
        by_subject.setdefault((mark.subject_name, mark.subject_id), []).append(mark)
    return [
        _subject_result(subject_id, name, group)
        for (name, subject_id), group in sorted(by_subject.items())
    ]


def _subject_result(subject_id: str, name: str, marks: Sequence[MarkValue]) -> SubjectResult:
    reasons = [reason(mark) for mark in marks]
    weighted_sum = Decimal(0)
    weight_sum = Decimal(0)
    for mark, why in zip(marks, reasons, strict=True):
        if why == "COUNTED" and mark.numeric_value is not None:
            weighted_sum += mark.weight * mark.numeric_value
            weight_sum += mark.weight
    average = None
    if weight_sum > 0:
        average = float((weighted_sum / weight_sum).quantize(_CENT, rounding=ROUND_HALF_UP))
    return SubjectResult(
        subject_id=subject_id,
        subject_name=name,
        weighted_average=average,
        weight_sum=float(weight_sum),
        marks_counted=reasons.count("COUNTED"),
        reasons=reasons,
    )

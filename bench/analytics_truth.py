"""The journal's truth per base cell, for bench/analytics_accuracy.py: read from the
`school` tables over the owner connection (every record, not only the published ones)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Final

import asyncpg

Key = tuple[Any, ...]
# Base cell key: (school, municipality, grade, subject, year title, scheme, number,
# work type | code); a lesson cell's key is the first seven.
DIMENSIONS: Final = ("SCHOOL", "MUNICIPALITY", "GRADE", "SUBJECT", "PERIOD")
INDEXES: Final = {
    **{name: (i,) for i, name in enumerate(DIMENSIONS[:-1])},
    "PERIOD": (4, 5, 6),
    "WORK_TYPE": (7,),
    "CODE": (7,),
}


def _joins(day: str) -> str:
    """From a lesson `l` to its class, school, year and the period holding `day`."""
    return f"""
JOIN school.classes c ON c.id = l.class_id
JOIN school.schools s ON s.id = c.school_id
JOIN school.academic_years y ON y.id = c.year_id
JOIN school.periods p ON p.school_id = c.school_id AND p.year_id = c.year_id
     AND p.scheme = c.period_scheme AND {day} BETWEEN p.starts_on AND p.ends_on
"""


_CELL = "JOIN school.lessons l ON l.id = x.lesson_id" + _joins("x.date")
_KEY = "c.school_id, s.municipality_id, c.grade, l.subject_id, y.title, p.scheme, p.number"
_COUNTED = "x.counts_in_average AND x.numeric_value IS NOT NULL AND x.weight > 0"
_MARK_CELLS = f"""
SELECT {_KEY}, x.work_type_id, count(*) AS marks,
       coalesce(sum(x.weight * x.numeric_value) FILTER (WHERE {_COUNTED}), 0)::float8,
       coalesce(sum(x.weight) FILTER (WHERE {_COUNTED}), 0)::float8
FROM school.marks x {_CELL}
GROUP BY {_KEY}, x.work_type_id
"""
_ATTENDANCE_CELLS = f"""
SELECT {_KEY}, x.code, count(*) AS records, count(DISTINCT x.student_id) AS students
FROM school.attendance x {_CELL}
GROUP BY {_KEY}, x.code
"""
# Lessons held (not cancelled) up to the as-of date, each counting its class's enrolment.
_LESSON_CELLS = f"""
SELECT {_KEY}, sum(e.enrolled)::bigint AS student_lessons
FROM school.lessons l {_joins("l.date")}
JOIN (SELECT class_id, count(*) AS enrolled FROM school.students GROUP BY class_id) e
  ON e.class_id = l.class_id
WHERE l.status <> 'cancelled' AND l.date <= $1
GROUP BY {_KEY}
"""

# --- the truth -------------------------------------------------------------------------


@dataclass(slots=True)
class MarkSums:
    """Marks, and the weighted sums of those counting toward the weighted average."""

    marks: int = 0
    weighted: float = 0.0
    weights: float = 0.0

    def add(self, other: MarkSums) -> None:
        self.marks += other.marks
        self.weighted += other.weighted
        self.weights += other.weights

    def average(self) -> float | None:
        return self.weighted / self.weights if self.weights else None


@dataclass(frozen=True, slots=True)
class Truth:
    """The journal per base cell."""

    marks: dict[Key, MarkSums]
    attendance: dict[Key, tuple[int, int]]  # (records, distinct students)
    student_lessons: dict[Key, int]


async def read_truth(url: str, as_of: date) -> Truth:
    """The journal's figures per base cell, from the `school` tables (owner connection)."""
    conn = await asyncpg.connect(url)
    try:
        marks = {tuple(r[:8]): MarkSums(*r[8:]) for r in await conn.fetch(_MARK_CELLS)}
        attendance = {tuple(r[:8]): (r[8], r[9]) for r in await conn.fetch(_ATTENDANCE_CELLS)}
        lessons = {tuple(r[:7]): int(r[7]) for r in await conn.fetch(_LESSON_CELLS, as_of)}
    finally:
        await conn.close()
    return Truth(marks, attendance, lessons)


def indexes_of(dimensions: Iterable[str]) -> tuple[int, ...]:
    return tuple(sorted({i for name in dimensions for i in INDEXES[name]}))


def mark_truth(truth: Truth, indexes: Sequence[int]) -> dict[Key, MarkSums]:
    groups: dict[Key, MarkSums] = defaultdict(MarkSums)
    for key, sums in truth.marks.items():
        groups[tuple(key[i] for i in indexes)].add(sums)
    return dict(groups)


@dataclass(frozen=True, slots=True)
class AttendanceTruth:
    """Records per group (without the code) and code, and student-lessons per group."""

    records: dict[Key, dict[str, int]]
    student_lessons: dict[Key, int]

    def code_records(self, key: Key, code: str | None) -> int:
        """The records of `code` in the group (None: of every code)."""
        found = self.records.get(key, {})
        return sum(found.values()) if code is None else found.get(code, 0)

    def rate(self, key: Key, code: str | None) -> float | None:
        denominator = self.student_lessons.get(key, 0)
        return self.code_records(key, code) / denominator if denominator else None


def attendance_truth(truth: Truth, indexes: Sequence[int]) -> AttendanceTruth:
    """`indexes`: those of the grouped dimensions other than the code."""
    records: dict[Key, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for key, (count, _students) in truth.attendance.items():
        records[tuple(key[i] for i in indexes)][key[7]] += count
    lessons: dict[Key, int] = defaultdict(int)
    for key, student_lessons in truth.student_lessons.items():
        lessons[tuple(key[i] for i in indexes)] += student_lessons
    return AttendanceTruth(dict(records), dict(lessons))


def code_totals(truth: Truth) -> dict[str, int]:
    return attendance_truth(truth, ()).records.get((), {})


# --- the application -------------------------------------------------------------------

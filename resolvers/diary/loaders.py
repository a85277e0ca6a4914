"""Per-request loaders: the diary's resolvers' one way to its data (resolvers.diary.sql),
batching the keys asked for in one tick into one SQL statement.

Every loader keyed by student ids checks, in its batch function, that every key is
inside the viewer's scope before any SQL runs: the data layer never sees an id the
viewer may not read, even if a resolver forgot its own check. Loaders are created per
request (`Loaders(pool, viewer, reference)`) and never shared, so their caches cannot
leak; what they share with other requests is the process's copy of the reference data
(names of subjects, teachers and work types, bell times: resolvers.diary.reference).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from functools import cached_property
from typing import Any, TypeVar

import asyncpg
from aiodataloader import DataLoader

from auth.viewer import Viewer
from gateway.core.errors import UnauthenticatedError
from gateway.core.metrics import observe_loader_batch
from gateway.core.tracing import loader_span
from resolvers.diary import sql as data
from resolvers.diary.reference import (
    NamesReader,
    ReferenceCache,
    ReferenceData,
    RequestReference,
)
from resolvers.diary.rows import (
    HomeworkRecord,
    LessonRecord,
    PeriodRecord,
    ReferenceInterner,
    StudentRecord,
    attendance_from_row,
    final_mark_from_row,
    has_mark_names,
    has_names,
    has_subject,
    homework_from_row,
    lesson_from_row,
    mark_from_row,
    period_from_row,
    student_from_row,
)
from resolvers.diary.sql import MarksFilter, StudentRange
from resolvers.diary.types import Attendance, FinalMark, Mark

K = TypeVar("K")
V = TypeVar("V")
T = TypeVar("T")

__all__ = [
    "AttendanceByStudentRangeLoader",
    "FinalMarksByStudentLoader",
    "HomeworkByStudentRangeLoader",
    "LastUpdatedByStudentLoader",
    "LessonsByStudentRangeLoader",
    "Loaders",
    "MarkPageByFilterLoader",
    "MarksByStudentRangeLoader",
    "MarksFilter",
    "PeriodsByStudentLoader",
    "StudentByIdLoader",
    "StudentRange",
]


def require_scope(viewer: Viewer | None, student_ids: Iterable[int]) -> None:
    """Raise unless every student id is inside the viewer's scope."""
    if viewer is None:
        raise UnauthenticatedError()
    viewer.require_students(student_ids)


class ScopedLoader(DataLoader[K, V]):
    """A loader whose keys name students; the scope check runs before any SQL."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        viewer: Viewer | None,
        accessed: set[int],
        reference: RequestReference,
    ) -> None:
        super().__init__()
        self.pool = pool
        self.viewer = viewer
        # Students whose data this request read (for the access audit).
        self.accessed = accessed
        # The reference data (names by id) this request names its rows with.
        self.reference = reference

    async def named(
        self,
        groups: Sequence[Sequence[Any]],
        *,
        subjects: Sequence[str] = (),
        teachers: Sequence[str] = (),
        work_types: Sequence[str] = (),
    ) -> ReferenceData:
        """The request's reference data with every id these columns of the rows name
        that exists (see RequestReference.naming)."""
        rows = [row for group in groups for row in group]
        read_names = names_reader(self.pool)
        return await self.reference.naming(
            rows, read_names, subjects=subjects, teachers=teachers, work_types=work_types
        )

    @staticmethod
    def student_of(key: K) -> int:
        """The student id a key refers to."""
        raise NotImplementedError

    async def batch_load_fn(self, keys: list[K]) -> list[V]:
        student_ids = [self.student_of(key) for key in keys]
        require_scope(self.viewer, student_ids)
        self.accessed.update(student_ids)
        observe_loader_batch(type(self).__name__, len(keys))
        with loader_span(type(self).__name__, len(keys)):
            return await self.load_batch(keys)

    async def load_batch(self, keys: list[K]) -> list[V]:
        """Fetch the values of keys already checked against the scope."""
        raise NotImplementedError


class _ByStudentId(ScopedLoader[int, V]):
    @staticmethod
    def student_of(key: int) -> int:
        return key


class _ByStudentRange(ScopedLoader[StudentRange, V]):
    @staticmethod
    def student_of(key: StudentRange) -> int:
        return key.student_id


def _per_student(
    rows: Sequence[Any], keys: Sequence[int], convert: Callable[[Any, ReferenceInterner], T]
) -> list[list[T]]:
    """Rows having a `student_id` column split into one converted list per key."""
    refs = ReferenceInterner()
    by_student: dict[int, list[T]] = {key: [] for key in keys}
    for row in rows:
        by_student[row["student_id"]].append(convert(row, refs))
    return [by_student[key] for key in keys]


def _period(row: Any, _refs: ReferenceInterner) -> PeriodRecord:
    return period_from_row(row)


class StudentByIdLoader(_ByStudentId[StudentRecord | None]):
    """Student (names, school, class) by id; None when the id names nobody.

    The same statement reads each student's periods; `periods` (when given) primes the
    periods loader with them, for students that passed this loader's scope check. It
    also keeps the reference data current (resolvers.diary.reference).
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        viewer: Viewer | None,
        accessed: set[int],
        reference: RequestReference,
        periods: Callable[[], DataLoader[int, list[PeriodRecord]]] | None = None,
    ) -> None:
        super().__init__(pool, viewer, accessed, reference)
        self.periods = periods

    async def load_batch(self, keys: list[int]) -> list[StudentRecord | None]:
        sent = self.reference.data
        rows = await data.get_students_by_ids(
            self.pool, student_ids=keys, reference_version=sent.version
        )
        if rows:  # the reference data, when it comes, is on one row (the statement's first)
            payload = next((row["reference"] for row in rows if row["reference"]), None)
            self.reference.received(sent, rows[0]["reference_version"], payload)
        by_id = {row["id"]: student_from_row(row) for row in rows}
        if self.periods is not None and rows:
            periods = self.periods()
            for row in rows:
                periods.prime(row["id"], [period_from_row(p) for p in row["periods"]])
        return [by_id.get(key) for key in keys]


class LessonsByStudentRangeLoader(_ByStudentRange[list[LessonRecord]]):
    """Lessons of the student's class in a date window, named from the reference data."""

    async def load_batch(self, keys: list[StudentRange]) -> list[list[LessonRecord]]:
        groups = await data.list_lessons_by_student_ranges(self.pool, keys=keys)
        reference = await self.named(
            groups,
            subjects=("subject_id", "replacement_subject_id"),
            teachers=("teacher_id", "replacement_teacher_id"),
        )
        return [
            [lesson_from_row(row, reference) for row in group if has_names(row, reference)]
            for group in groups
        ]


async def _marks(loader: ScopedLoader[Any, Any], groups: list[list[Any]]) -> list[list[Mark]]:
    reference = await loader.named(groups, subjects=("subject_id",), work_types=("work_type_id",))
    return [
        [mark_from_row(row, reference) for row in group if has_mark_names(row, reference)]
        for group in groups
    ]


class MarksByStudentRangeLoader(_ByStudentRange[list[Mark]]):
    """The student's marks dated in a window, oldest first."""

    async def load_batch(self, keys: list[StudentRange]) -> list[list[Mark]]:
        return await _marks(self, await data.list_marks_by_student_ranges(self.pool, keys=keys))


class AttendanceByStudentRangeLoader(_ByStudentRange[list[Attendance]]):
    """The student's attendance records in a window."""

    async def load_batch(self, keys: list[StudentRange]) -> list[list[Attendance]]:
        groups = await data.list_attendance_by_student_ranges(self.pool, keys=keys)
        reference = await self.named(groups, subjects=("subject_id",))
        return [
            [attendance_from_row(row, reference) for row in group if has_subject(row, reference)]
            for group in groups
        ]


class HomeworkByStudentRangeLoader(_ByStudentRange[list[HomeworkRecord]]):
    """Homework of the student's class due in a window, or given at one of its lessons in it."""

    async def load_batch(self, keys: list[StudentRange]) -> list[list[HomeworkRecord]]:
        groups = await data.list_homework_by_student_ranges(self.pool, keys=keys)
        reference = await self.named(groups, subjects=("subject_id",))
        return [
            [homework_from_row(row, reference) for row in group if has_subject(row, reference)]
            for group in groups
        ]


class MarkPageByFilterLoader(ScopedLoader[MarksFilter, list[Mark]]):
    """The newest marks of a student matching a filter, at most `limit`."""

    @staticmethod
    def student_of(key: MarksFilter) -> int:
        return key.student_id

    async def load_batch(self, keys: list[MarksFilter]) -> list[list[Mark]]:
        return await _marks(self, await data.list_mark_pages(self.pool, keys=keys))


class PeriodsByStudentLoader(_ByStudentId[list[PeriodRecord]]):
    """Study periods of the student's scheme in the current academic year."""

    async def load_batch(self, keys: list[int]) -> list[list[PeriodRecord]]:
        rows = await data.list_periods_by_student_ids(self.pool, student_ids=keys)
        return _per_student(rows, keys, _period)


class FinalMarksByStudentLoader(_ByStudentId[list[FinalMark]]):
    """Period, year and exam marks of the student in the current academic year."""

    async def load_batch(self, keys: list[int]) -> list[list[FinalMark]]:
        rows = await data.list_final_marks_by_student_ids(self.pool, student_ids=keys)
        return _per_student(rows, keys, final_mark_from_row)


class LastUpdatedByStudentLoader(_ByStudentId[datetime | None]):
    """When anything in the student's journal last changed; None for an empty journal."""

    async def load_batch(self, keys: list[int]) -> list[datetime | None]:
        rows = await data.list_last_updated_by_student_ids(self.pool, student_ids=keys)
        by_id = {row["student_id"]: row["last_updated_at"] for row in rows}
        return [by_id.get(key) for key in keys]


class Loaders:
    """One instance of every loader for one request; each is created on first use."""

    def __init__(
        self, pool: asyncpg.Pool, viewer: Viewer | None, reference: ReferenceCache
    ) -> None:
        self.pool = pool
        self.viewer = viewer
        # The reference data this request names rows with, from the application's copy.
        self.reference = RequestReference(reference)
        # Every student id a loader of this request was asked for (after the scope check).
        self.accessed_student_ids: set[int] = set()

    def release(self) -> None:
        """Forget every loaded value once the response is built.

        A loader's cache holds its futures and their callbacks reference the loader, a
        reference cycle: without this, a request's whole object graph (rows, records,
        typed objects) would wait for the cyclic garbage collector instead of being
        freed when the request ends.
        """
        for value in vars(self).values():
            if isinstance(value, DataLoader):
                value.clear_all()

    @cached_property
    def student_by_id(self) -> StudentByIdLoader:
        return StudentByIdLoader(
            self.pool,
            self.viewer,
            self.accessed_student_ids,
            self.reference,
            periods=self._periods_loader,
        )

    def _periods_loader(self) -> PeriodsByStudentLoader:
        return self.periods_by_student

    @cached_property
    def lessons_by_student_range(self) -> LessonsByStudentRangeLoader:
        return LessonsByStudentRangeLoader(
            self.pool, self.viewer, self.accessed_student_ids, self.reference
        )

    @cached_property
    def marks_by_student_range(self) -> MarksByStudentRangeLoader:
        return MarksByStudentRangeLoader(
            self.pool, self.viewer, self.accessed_student_ids, self.reference
        )

    @cached_property
    def attendance_by_student_range(self) -> AttendanceByStudentRangeLoader:
        return AttendanceByStudentRangeLoader(
            self.pool, self.viewer, self.accessed_student_ids, self.reference
        )

    @cached_property
    def homework_by_student_range(self) -> HomeworkByStudentRangeLoader:
        return HomeworkByStudentRangeLoader(
            self.pool, self.viewer, self.accessed_student_ids, self.reference
        )

    @cached_property
    def mark_page_by_filter(self) -> MarkPageByFilterLoader:
        return MarkPageByFilterLoader(
            self.pool, self.viewer, self.accessed_student_ids, self.reference
        )

    @cached_property
    def periods_by_student(self) -> PeriodsByStudentLoader:
        return PeriodsByStudentLoader(
            self.pool, self.viewer, self.accessed_student_ids, self.reference
        )

    @cached_property
    def final_marks_by_student(self) -> FinalMarksByStudentLoader:
        return FinalMarksByStudentLoader(
            self.pool, self.viewer, self.accessed_student_ids, self.reference
        )

    @cached_property
    def last_updated_by_student(self) -> LastUpdatedByStudentLoader:
        return LastUpdatedByStudentLoader(
            self.pool, self.viewer, self.accessed_student_ids, self.reference
        )


def names_reader(pool: asyncpg.Pool) -> NamesReader:
    """Reads the names of the ids a copy of the reference data lacks (one statement); for
    the loaders of other domains that name rows from the same copy (the change feed)."""
    return functools.partial(data.list_names_by_ids, pool)

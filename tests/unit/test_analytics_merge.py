"""The merge of small cells into units (resolvers.analytics.merge), on hand-made rows."""

from __future__ import annotations

from decimal import Decimal

from resolvers.analytics import merge
from resolvers.analytics.merge import CellKey, Row

K = 3


def key(
    school: int = 1,
    grade: int = 5,
    subject: int = 7,
    period: int = 1,
    detail: int | str | None = "Н",
    municipality: int | None = None,
) -> CellKey:
    return CellKey(
        school_id=school,
        municipality_id=municipality if municipality is not None else 100 + school // 10,
        grade=grade,
        subject_id=subject,
        year_id=1,
        period_scheme="quarters",
        period_number=period,
        detail=detail,
    )


def row(cell: CellKey, student: int, records: int = 1) -> Row:
    return Row(key=cell, member=student, weight=1, figures=(Decimal(records),))


def test_cells_of_k_are_units_and_small_ones_merge_at_the_first_level_that_reaches_k() -> None:
    big = key(subject=1)
    rows = [row(big, s) for s in (1, 2, 3)]
    # Two small cells of the same grade, other subjects: together 3 students.
    rows += [row(key(subject=2), 4), row(key(subject=2), 5, records=2), row(key(subject=3), 6)]
    cells, small = merge.split_cells(rows, K)
    assert [(c.published, c.students) for c in cells] == [(True, 3), (False, 2), (False, 1)]
    units = merge.merge(small, merge.ATTENDANCE, K)
    (unit,) = units
    assert unit.level == 1  # subject dropped first for attendance
    assert unit.students == 3 and unit.figures == [Decimal(4)]
    columns = merge.columns_of(unit)
    assert columns.subject_id is None and columns.subject_ids == [2, 3]
    assert columns.grade == 5 and columns.school_id == 1 and columns.detail == "Н"


def test_a_student_counts_once_in_a_unit_and_what_never_reaches_k_is_dropped() -> None:
    # One student in three cells: never 3 distinct students, at any level.
    rows = [row(key(subject=s, grade=g), 9) for s, g in ((1, 5), (2, 6), (3, 7))]
    assert merge.merge(rows, merge.ATTENDANCE, K) == []


def test_codes_never_merge() -> None:
    rows = [row(key(detail="О"), 1), row(key(detail="ОП"), 2), row(key(detail="О", school=2), 3)]
    assert merge.merge(rows, merge.ATTENDANCE, K) == []


def test_units_partition_the_rows_whatever_the_levels_order() -> None:
    """Every row is in at most one unit, and the figures add up to the merged rows."""
    rows = [
        row(key(school=school, grade=grade, subject=subject, period=period), student)
        for school in (1, 2, 11)
        for grade in (5, 6)
        for subject in (1, 2)
        for period in (1, 2)
        for student in range(school * 100 + grade, school * 100 + grade + (grade % 2) + 1)
    ]
    units = merge.merge(rows, merge.ATTENDANCE, K)
    merged = sum(unit.figures[0] for unit in units)
    keys = [k for unit in units for k in unit.keys]
    assert all(unit.students >= K for unit in units)
    assert merged <= len(rows)
    # A cell's rows are never split between two units at one level's grouping.
    assert len(keys) == len(set(keys))


def test_lessons_count_each_class_enrolment_once() -> None:
    cell = key(detail=None)
    rows = [
        Row(cell, member=1, weight=2, figures=(Decimal(5), Decimal(10))),
        Row(key(detail=None, grade=6), member=2, weight=2, figures=(Decimal(4), Decimal(8))),
    ]
    cells, small = merge.split_cells(rows, K)
    assert [c.published for c in cells] == [False, False]
    (unit,) = merge.merge(small, merge.LESSONS, K)
    assert unit.students == 4 and unit.figures == [Decimal(9), Decimal(18)]
    assert merge.columns_of(unit).grade is None


def test_a_unit_with_one_value_of_a_dropped_dimension_keeps_it_as_its_key() -> None:
    """Level 2 of marks drops grade and period: rows of one grade keep it in the key."""
    rows = [
        Row(key(detail=3, grade=5, period=p), member=s, weight=1, figures=(Decimal(1),) * 4)
        for p, s in ((1, 1), (2, 2), (3, 3))
    ]
    (unit,) = merge.merge(rows, merge.MARKS, K)
    columns = merge.columns_of(unit)
    assert unit.level == 2 and columns.grade == 5
    assert columns.period_number is None and columns.period_numbers == [1, 2, 3]
    assert unit.figures == [Decimal(3)] * 4

"""The placement of base cells into units (resolvers.analytics.merge), on hand-made cells."""

from __future__ import annotations

from decimal import Decimal

from resolvers.analytics import merge
from resolvers.analytics.merge import Cell, CellKey

K = 3


def key(
    school: int = 1,
    grade: int = 5,
    subject: int = 7,
    period: int = 1,
    detail: int | str | None = "Н",
) -> CellKey:
    return CellKey(
        school_id=school,
        municipality_id=100 + school // 10,
        grade=grade,
        subject_id=subject,
        year_id=1,
        period_scheme="quarters",
        period_number=period,
        detail=detail,
    )


def cell(at: CellKey, *students: int, records: int | None = None) -> Cell:
    count = len(students) if records is None else records
    return Cell(at, len(students), (Decimal(count),), members=dict.fromkeys(students, 1))


def place(*cells: Cell, hierarchy: merge.Hierarchy = merge.ATTENDANCE) -> merge.Placement:
    return merge.place(cells, hierarchy, K, {})


def test_cells_of_k_are_units_and_small_ones_merge_at_the_first_level_that_reaches_k() -> None:
    big = cell(key(subject=1), 1, 2, 3)
    small = [cell(key(subject=2), 4, 5, records=3), cell(key(subject=3), 6)]
    placement = place(big, *small)
    own, merged = placement.units
    assert own.level == 0 and own.keys == [big.key]
    assert merged.level == 1  # subject dropped first for attendance
    assert merged.students == 3 and merged.figures() == [Decimal(4)]
    columns = merge.columns_of(merged.keys)
    assert columns.subject_id is None and columns.subject_ids == [2, 3]
    assert columns.grade == 5 and columns.school_id == 1 and columns.detail == "Н"
    assert merge.shadows(placement.units, placement.unplaced, K) == [s.key for s in small]


def test_a_student_counts_once_and_what_never_reaches_k_is_unplaced() -> None:
    # One student in three cells of another school: never 3 distinct students.
    lonely = [cell(key(school=2, subject=s, grade=g), 9) for s, g in ((1, 5), (2, 6), (3, 7))]
    placement = place(*lonely)
    assert placement.units == [] and placement.unplaced == lonely
    assert set(placement.assignment) == set()  # tried again at the next refresh


def test_codes_never_merge() -> None:
    placement = place(cell(key(detail="О"), 1), cell(key(detail="ОП"), 2), cell(key(detail="О"), 3))
    assert {unit.keys[0].detail for unit in placement.units} <= {"О"}
    assert all(len({k.detail for k in unit.keys}) == 1 for unit in placement.units)


def test_a_group_still_below_k_joins_a_unit_of_its_municipality() -> None:
    """Attendance level 5 (municipality, code) absorbs: a school's lone late arrival joins
    the unit that already holds only that municipality's late arrivals."""
    host = cell(key(school=1, detail="О"), 1, 2, 3)
    lone = cell(key(school=2, grade=9, detail="О"), 4)
    placement = place(host, lone)
    (unit,) = placement.units
    assert unit.keys == [host.key, lone.key] and unit.students == 4
    assert placement.assignment[lone.key] == placement.assignment[host.key]
    # The host's own group is listed as suppressed now (its unit spans two schools).
    assert set(merge.shadows(placement.units, placement.unplaced, K)) == {host.key, lone.key}


def test_units_are_sticky_a_merged_cell_never_stands_alone_later() -> None:
    """Refresh 1 merges two small cells; at refresh 2 one of them has k students on its
    own, and it stays in the merged unit: otherwise the two answers' difference would be
    the other cell's figures."""
    first, second = cell(key(grade=6), 1, 2), cell(key(grade=9), 3)
    before = merge.place([first, second], merge.MARKS, K, {})
    (unit,) = before.units
    assert unit.level == 1
    grown = cell(key(grade=6), 1, 2, 4, 5)
    again = merge.Cell(second.key, 1, second.figures, members={3: 1})
    after = merge.place([grown, again], merge.MARKS, K, before.assignment)
    (still,) = after.units
    assert still.unit_id == unit.unit_id and set(still.keys) == {first.key, second.key}
    assert after.assignment == before.assignment


def test_a_sticky_unit_that_fell_below_k_is_not_published_nor_re_merged() -> None:
    before = place(cell(key(subject=1), 1, 2), cell(key(subject=2), 3))
    (unit,) = before.units
    shrunk = [cell(key(subject=1), 1), cell(key(subject=2), 3)]
    after = merge.place(shrunk, merge.ATTENDANCE, K, before.assignment)
    (same,) = after.units
    assert same.unit_id == unit.unit_id and same.students == 2 < K
    assert set(merge.shadows(after.units, after.unplaced, K)) == {c.key for c in shrunk}


def test_members_are_needed_for_new_small_cells_and_cells_of_merged_units() -> None:
    before = place(
        cell(key(subject=1), 1, 2), cell(key(subject=2), 3), cell(key(subject=9), 4, 5, 6)
    )
    cells = [
        Cell(key(subject=1), 5, (Decimal(5),)),  # grown, still in its merged unit
        Cell(key(subject=9), 3, (Decimal(3),)),  # a unit of its own
        Cell(key(subject=4), 1, (Decimal(1),)),  # new and small
        Cell(key(subject=5), 3, (Decimal(3),)),  # new and big enough
    ]
    wanted = merge.needs_members(cells, K, before.assignment)
    assert wanted == [key(subject=1), key(subject=4)]


def test_lessons_count_each_class_enrolment_once() -> None:
    cells = merge.cells_from_members(
        [
            (key(detail=None), 1, 2, (Decimal(5), Decimal(10))),
            (key(detail=None, grade=6), 2, 2, (Decimal(4), Decimal(8))),
        ]
    )
    placement = merge.place(cells, merge.LESSONS, K, {})
    (unit,) = placement.units
    assert unit.students == 4 and unit.figures() == [Decimal(9), Decimal(18)]
    assert merge.columns_of(unit.keys).grade is None


def test_a_unit_with_one_value_of_a_dropped_dimension_keeps_it_as_its_key() -> None:
    """Level 2 of marks drops grade and period: cells of one grade keep it in the key."""
    cells = [
        Cell(key(detail=3, grade=5, period=p), 1, (Decimal(1),) * 4, members={s: 1})
        for p, s in ((1, 1), (2, 2), (3, 3))
    ]
    (unit,) = merge.place(cells, merge.MARKS, K, {}).units
    columns = merge.columns_of(unit.keys)
    assert unit.level == 2 and columns.grade == 5
    assert columns.period_number is None and columns.period_numbers == [1, 2, 3]
    assert unit.figures() == [Decimal(3)] * 4

"""Parent registry quality: the findings of one school's registry rows.

Rules (the same for counts and lists):
- NO_SNILS: the SNILS is missing or blank;
- INVALID_SNILS: present but malformed or failing the checksum (gateway.core.identifiers.is_valid,
  the single implementation of the algorithm; spaces and dashes are ignored);
- NO_PHONE: the phone is missing or blank;
- MERGED_DATA_DIFFERS: a well-formed SNILS also held by another school's record (the
  records are merged into one account) whose last, first or patronymic name, birth date
  or phone differs (compared as stored).
Identifiers leave here masked only (gateway.core.identifiers.masked / masked_phone).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

import strawberry

from gateway.core.identifiers import is_valid, masked, masked_phone
from resolvers.common.arguments import check_page_size
from resolvers.context import Context
from resolvers.dashboard.service import CheckedSchool, DashboardService
from resolvers.dashboard.types import (
    PersonField,
    RegistryIssue,
    RegistryParentFinding,
    UnlinkedStudent,
)
from resolvers.diary.rows import school_class_from_row

Info = strawberry.Info[Context, None]
DEFAULT_PAGE_SIZE = 100

FirstArg = Annotated[
    int,
    strawberry.argument(
        description="At most this many: 1–500 (default 100; LIMIT_OUT_OF_RANGE outside)."
    ),
]
IssueArg = Annotated[
    RegistryIssue | None,
    strawberry.argument(description="Only records with this issue; null: with any issue."),
]

_DIFFERS_COLUMNS = (
    (PersonField.LAST_NAME, "last_name_differs"),
    (PersonField.FIRST_NAME, "first_name_differs"),
    (PersonField.PATRONYMIC, "patronymic_differs"),
    (PersonField.BIRTH_DATE, "birth_date_differs"),
    (PersonField.PHONE, "phone_differs"),
)


def _blank(value: str | None) -> bool:
    return value is None or not value.strip()


def _full_name(row: Any) -> str:
    names = (row["last_name"], row["first_name"], row["patronymic"])
    return " ".join(name for name in names if name)


def parent_issues(row: Any) -> tuple[list[RegistryIssue], list[PersonField]]:
    """The issues of one registry row and the fields differing in merged records."""
    issues: list[RegistryIssue] = []
    if _blank(row["snils"]):
        issues.append(RegistryIssue.NO_SNILS)
    elif not is_valid(row["snils"]):
        issues.append(RegistryIssue.INVALID_SNILS)
    if _blank(row["phone"]):
        issues.append(RegistryIssue.NO_PHONE)
    differing = [field for field, column in _DIFFERS_COLUMNS if row[column]]
    if differing:
        issues.append(RegistryIssue.MERGED_DATA_DIFFERS)
    return issues, differing


def _finding(
    row: Any, issues: list[RegistryIssue], differing: list[PersonField]
) -> RegistryParentFinding:
    return RegistryParentFinding(
        id=strawberry.ID(str(row["parent_id"])),
        full_name=_full_name(row),
        masked_snils=None if _blank(row["snils"]) else masked(row["snils"]),
        masked_phone=None if _blank(row["phone"]) else masked_phone(row["phone"]),
        children_count=row["children_count"],
        issues=issues,
        other_school_ids=[strawberry.ID(str(school)) for school in row["other_school_ids"]],
        differing_fields=differing,
    )


def _unlinked(row: Any) -> UnlinkedStudent:
    return UnlinkedStudent(
        id=strawberry.ID(str(row["student_id"])),
        full_name=_full_name(row),
        school_class=school_class_from_row(row),
    )


async def resolve_parent_findings(
    root: RegistryQuality, first: FirstArg = DEFAULT_PAGE_SIZE, issue: IssueArg = None
) -> list[RegistryParentFinding]:
    """Records with an issue (or with `issue`), by name; at most `first`."""
    limit = check_page_size(first)
    wanted = [finding for finding in root.findings if issue is None or issue in finding.issues]
    return wanted[:limit]


async def resolve_unlinked_students(
    root: RegistryQuality, info: Info, first: FirstArg = DEFAULT_PAGE_SIZE
) -> list[UnlinkedStudent]:
    """Students without any parent record, by class and name; at most `first`.

    The students returned are added to the request's access audit.
    """
    shown = root.unlinked[: check_page_size(first)]
    info.context.dashboard.record_shown_students(int(student.id) for student in shown)
    return shown


@strawberry.type(description="Parent registry quality of a school: counts and lists.")
class RegistryQuality:
    findings: strawberry.Private[list[RegistryParentFinding]]
    unlinked: strawberry.Private[list[UnlinkedStudent]]
    parent_records: int = strawberry.field(description="Parent records of the school.")
    parents_without_snils: int = strawberry.field(
        description="Records whose SNILS is missing or blank."
    )
    parents_with_invalid_snils: int = strawberry.field(
        description="Records whose SNILS is malformed or fails the checksum."
    )
    parents_without_phone: int = strawberry.field(
        description="Records whose phone is missing or blank."
    )
    merged_parents_with_differences: int = strawberry.field(
        description=(
            "Records whose SNILS is also in other schools' registries (one merged account) "
            "with a different last, first or patronymic name, birth date or phone."
        )
    )
    students_without_parents: int = strawberry.field(
        description="Students of the school without any linked parent record (of any school)."
    )
    parent_findings: list[RegistryParentFinding] = strawberry.field(
        resolver=resolve_parent_findings,
        description=(
            "Records with at least one issue (or with `issue`), by name; at most `first` (1–500)."
        ),
    )
    unlinked_students: list[UnlinkedStudent] = strawberry.field(
        resolver=resolve_unlinked_students,
        description=(
            "Students without any linked parent, by class and name; at most `first` (1–500)."
        ),
    )


def registry_quality(parents: Sequence[Any], students: Sequence[Any]) -> RegistryQuality:
    """Counts over every row, and every finding (the list fields slice them)."""
    counts = dict.fromkeys(RegistryIssue, 0)
    findings: list[RegistryParentFinding] = []
    for row in parents:
        issues, differing = parent_issues(row)
        for item in issues:
            counts[item] += 1
        if issues:
            findings.append(_finding(row, issues, differing))
    return RegistryQuality(
        findings=findings,
        unlinked=[_unlinked(row) for row in students],
        parent_records=len(parents),
        parents_without_snils=counts[RegistryIssue.NO_SNILS],
        parents_with_invalid_snils=counts[RegistryIssue.INVALID_SNILS],
        parents_without_phone=counts[RegistryIssue.NO_PHONE],
        merged_parents_with_differences=counts[RegistryIssue.MERGED_DATA_DIFFERS],
        students_without_parents=len(students),
    )


async def load_registry_quality(
    dashboard: DashboardService, school: CheckedSchool
) -> RegistryQuality:
    """The school's registry quality now: two statements."""
    parents, students = await dashboard.registry(school)
    return registry_quality(parents, students)

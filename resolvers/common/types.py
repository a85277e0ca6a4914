"""GraphQL types more than one domain shows: schools, classes, subjects, teachers, work types."""

from __future__ import annotations

import enum
from typing import cast

import strawberry


def described_value(value: str, description: str) -> str:
    """An enum member's value with its description in the schema.

    `strawberry.enum` unwraps the definition, so at run time the member's `.value` is
    `value` itself: the cast tells mypy so (`strawberry.enum_value` is typed as its
    definition object).
    """
    return cast(str, strawberry.enum_value(value, description=description))


@strawberry.enum(description="Scheme of school periods: quarters, half-years or trimesters.")
class PeriodScheme(enum.Enum):
    QUARTERS = described_value(
        "quarters", description="Four quarters (четверти): as a rule grades 1–9."
    )
    HALF_YEARS = described_value(
        "half_years", description="Two half-years (полугодия): as a rule grades 10–11."
    )
    TRIMESTERS = described_value(
        "trimesters", description="Three trimesters (триместры), in some schools."
    )


@strawberry.type(description="A school.")
class School:
    id: strawberry.ID = strawberry.field(description="The school's id in the school journal.")
    name: str = strawberry.field(
        description="Full official name, e.g. «МБОУ «Гимназия № 3» г. Ижевска»."
    )
    short_name: str = strawberry.field(
        description="Short name for lists and headings, e.g. «Гимназия № 3 (Ижевск)»."
    )
    municipality: str = strawberry.field(
        description="The municipality (city or district) of the school, e.g. «Ижевск»."
    )


@strawberry.type(description="The student's class in the current school year, e.g. «5Б».")
class SchoolClass:
    id: strawberry.ID = strawberry.field(description="The class's id in the school journal.")
    name: str = strawberry.field(description="Grade and letter, e.g. «5Б».")
    grade: int = strawberry.field(description="Grade (year of study), 1–11.")
    letter: str = strawberry.field(
        description="The letter telling apart classes of one grade, e.g. «Б»."
    )


@strawberry.type(description="A school subject.")
class Subject:
    id: strawberry.ID = strawberry.field(
        description="The subject's id in the school journal (e.g. for `marks(subjectId:)`)."
    )
    name: str = strawberry.field(description="The subject's name, e.g. «Математика».")


@strawberry.type(description="A teacher.")
class Teacher:
    id: strawberry.ID = strawberry.field(description="The teacher's id in the school journal.")
    name: str = strawberry.field(description="Last name, first name and patronymic.")


@strawberry.type(description="A kind of work and its default weight.")
class WorkType:
    id: strawberry.ID = strawberry.field(description="The work type's id in the school journal.")
    name: str = strawberry.field(description="Full name, e.g. «Контрольная работа».")
    short_name: str = strawberry.field(description="Short name for narrow columns, e.g. «КР».")
    weight: float = strawberry.field(description="Default weight; a mark may have its own.")

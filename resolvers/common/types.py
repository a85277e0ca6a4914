"""GraphQL types more than one domain shows: schools, classes, subjects, teachers, work types."""

from __future__ import annotations

import enum

import strawberry


@strawberry.enum(description="Scheme of school periods: quarters, half-years or trimesters.")
class PeriodScheme(enum.Enum):
    QUARTERS = "quarters"
    HALF_YEARS = "half_years"
    TRIMESTERS = "trimesters"


@strawberry.type(description="A school.")
class School:
    id: strawberry.ID
    name: str
    short_name: str
    municipality: str


@strawberry.type(description="The student's class in the current school year, e.g. «5Б».")
class SchoolClass:
    id: strawberry.ID
    name: str
    grade: int
    letter: str


@strawberry.type(description="A school subject.")
class Subject:
    id: strawberry.ID
    name: str


@strawberry.type(description="A teacher.")
class Teacher:
    id: strawberry.ID
    name: str = strawberry.field(description="Last name, first name and patronymic.")


@strawberry.type(description="A kind of work and its default weight.")
class WorkType:
    id: strawberry.ID
    name: str
    short_name: str
    weight: float = strawberry.field(description="Default weight; a mark may have its own.")

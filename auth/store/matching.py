"""Who a person is in the school registries: an ESIA person as parent, student or staff;
a student by school login (`find_student`, password sign-in).

The source: sign-in goes by the SNILS or the mobile phone present both in ESIA and in
the school's record. A record belongs to the person when it holds their SNILS, or, when
it holds no well-formed SNILS, their (ESIA-verified) mobile phone — the rule
auth.store.accounts.REGISTRY_MATCH_RULE, also used to compute a parent's scope on every
request. Staff are matched by SNILS only.

Precedence when one person is found in several registries: parent (every parent record
in every school: the merged account), else student, else staff.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import asyncpg

from auth.store.accounts import REGISTRY_MATCH_RULE
from auth.viewer import Role

_STUDENT_RULE = REGISTRY_MATCH_RULE.replace("pl.", "si.")

# One statement: every registry row that belongs to the person.
_MATCH = f"""
SELECT 'PARENT' AS kind, pl.school_id, pl.student_id AS id, NULL::text AS staff_role
FROM diary_api.parent_links pl
WHERE {REGISTRY_MATCH_RULE}
UNION ALL
SELECT 'STUDENT', si.school_id, si.student_id, NULL
FROM diary_api.student_identities si
WHERE {_STUDENT_RULE}
UNION ALL
SELECT 'STAFF', st.school_id, st.id, st.role
FROM diary_api.staff st
WHERE st.snils = $1::text
ORDER BY 1, 3
"""

# The student with this school login, with the name the account shows.
_FIND_STUDENT = """
SELECT si.student_id, si.school_id, si.birth_date, si.password_hash,
       concat_ws(' ', s.last_name, s.first_name, s.patronymic) AS display_name
FROM diary_api.student_identities si
JOIN diary_api.students s ON s.id = si.student_id
WHERE si.login = $1
ORDER BY si.student_id
LIMIT 1
"""

_STAFF_ROLES = {"it_admin": Role.SCHOOL_ADMIN, "regional_analyst": Role.REGIONAL_ANALYST}


@dataclass(frozen=True, slots=True)
class RegistryMatch:
    """What the registries hold for a person."""

    parent_student_ids: tuple[int, ...] = ()
    student_ids: tuple[int, ...] = ()
    staff: tuple[tuple[int, Role], ...] = ()  # (staff id, role)
    school_ids: tuple[int, ...] = ()  # every school where the person was found

    @property
    def role(self) -> Role | None:
        """The role the person signs in with, or None when found nowhere."""
        if self.parent_student_ids:
            return Role.PARENT
        if self.student_ids:
            return Role.STUDENT
        if self.staff:
            return self.staff[0][1]
        return None


async def match_registries(
    pool: asyncpg.Pool, *, snils: str | None, phone: str | None
) -> RegistryMatch:
    """Every parent, student and staff record of the person (by SNILS, else phone)."""
    if snils is None and phone is None:
        return RegistryMatch()
    rows = await pool.fetch(_MATCH, snils, phone)
    parents: list[int] = []
    students: list[int] = []
    staff: list[tuple[int, Role]] = []
    schools: set[int] = set()
    for row in rows:
        kind = row["kind"]
        if kind == "STAFF":
            role = _STAFF_ROLES.get(row["staff_role"])
            if role is None:
                continue
            staff.append((row["id"], role))
        elif kind == "PARENT":
            parents.append(row["id"])
        else:
            students.append(row["id"])
        if row["school_id"] is not None:
            schools.add(row["school_id"])
    return RegistryMatch(
        parent_student_ids=tuple(sorted(set(parents))),
        student_ids=tuple(students),
        staff=tuple(staff),
        school_ids=tuple(sorted(schools)),
    )


@dataclass(frozen=True, slots=True)
class Student:
    """A student record found by school login."""

    student_id: int
    school_id: int
    birth_date: date
    password_hash: str | None
    display_name: str


async def find_student(pool: asyncpg.Pool, *, login: str) -> Student | None:
    """The student with this school login, or None."""
    row = await pool.fetchrow(_FIND_STUDENT, login)
    if row is None:
        return None
    return Student(
        student_id=row["student_id"],
        school_id=row["school_id"],
        birth_date=row["birth_date"],
        password_hash=row["password_hash"],
        display_name=row["display_name"],
    )

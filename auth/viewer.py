"""The viewer: who is asking, in which role, and which students they may see."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from gateway.errors import ForbiddenError


class Role(enum.Enum):
    PARENT = "PARENT"
    STUDENT = "STUDENT"
    SCHOOL_ADMIN = "SCHOOL_ADMIN"
    REGIONAL_ANALYST = "REGIONAL_ANALYST"


FAMILY_ROLES = frozenset({Role.PARENT, Role.STUDENT})


@dataclass(frozen=True, slots=True)
class Viewer:
    """An authenticated caller. `student_ids` is the whole of their scope over children."""

    account_id: str
    role: Role
    display_name: str
    student_ids: frozenset[int]
    school_ids: frozenset[int] = frozenset()

    @property
    def is_family(self) -> bool:
        return self.role in FAMILY_ROLES

    def require_students(self, student_ids: Iterable[int]) -> None:
        """Raise FORBIDDEN unless every id is inside the viewer's scope."""
        outside = [sid for sid in student_ids if sid not in self.student_ids]
        if outside:
            raise ForbiddenError()

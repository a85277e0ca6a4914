"""The viewer: who is asking, in which role, and which students they may see."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from gateway.core.errors import ForbiddenError


class Role(enum.Enum):
    PARENT = "PARENT"
    STUDENT = "STUDENT"
    SCHOOL_ADMIN = "SCHOOL_ADMIN"
    REGIONAL_ANALYST = "REGIONAL_ANALYST"


FAMILY_ROLES = frozenset({Role.PARENT, Role.STUDENT})

# OAuth scopes: what a machine client (auth.store.clients) may be granted, per role. A person
# signed in has every scope of their role; a client has the scopes it was registered
# with, narrowed by its token request. A field that needs a scope the viewer lacks is
# FORBIDDEN (auth.permissions.HasScope).
SCOPE_DIARY = "diary:read"
SCOPE_SCHOOL_DASHBOARD = "school:dashboard"
SCOPE_SCHOOL_SIGN_INS = "school:sign-ins"
SCOPE_REGION_ANALYTICS = "region:analytics"
ROLE_SCOPES: dict[Role, frozenset[str]] = {
    Role.PARENT: frozenset({SCOPE_DIARY}),
    Role.STUDENT: frozenset({SCOPE_DIARY}),
    Role.SCHOOL_ADMIN: frozenset({SCOPE_SCHOOL_DASHBOARD, SCOPE_SCHOOL_SIGN_INS}),
    Role.REGIONAL_ANALYST: frozenset({SCOPE_REGION_ANALYTICS}),
}
# Roles a machine client may have (families are people, never programs).
CLIENT_ROLES = frozenset({Role.SCHOOL_ADMIN, Role.REGIONAL_ANALYST})


@dataclass(frozen=True, slots=True)
class Viewer:
    """An authenticated caller. `student_ids` is the whole of their scope over children.

    `scopes`: the OAuth scopes of the request; left empty for a person, it becomes every
    scope of their role. `client_id` is set for a machine client (auth.store.clients); its
    `account_id` is then the client id and its `scopes` are exactly what the token and
    the client's current registration both allow (possibly none).
    """

    account_id: str
    role: Role
    display_name: str
    student_ids: frozenset[int]
    school_ids: frozenset[int] = frozenset()
    scopes: frozenset[str] = frozenset()
    client_id: str | None = None
    # The sign-in session the request came with (None: a machine client or a tool's
    # token); long-lived streams check it again while they last.
    session_id: str | None = None

    def __post_init__(self) -> None:
        if self.client_id is None and not self.scopes:
            object.__setattr__(self, "scopes", ROLE_SCOPES[self.role])

    @property
    def is_client(self) -> bool:
        return self.client_id is not None

    @property
    def is_family(self) -> bool:
        return self.role in FAMILY_ROLES

    def administers(self, school_id: int) -> bool:
        """Whether the viewer is a school admin of this school."""
        return self.role is Role.SCHOOL_ADMIN and school_id in self.school_ids

    def require_students(self, student_ids: Iterable[int]) -> None:
        """Raise FORBIDDEN unless every id is inside the viewer's scope."""
        outside = [sid for sid in student_ids if sid not in self.student_ids]
        if outside:
            raise ForbiddenError()

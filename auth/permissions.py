"""Field permissions, printed as directives in `schema.graphql`.

Each permission class names the schema directive it shows as, so the published SDL says
who may ask for a field: `@authenticated`, `@roles(anyOf: [...])`, `@studentScope`,
`@schoolScope`.
They are the first layer; the loaders' scope check (`resolvers.diary.loaders`) is the second.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import strawberry
from strawberry.extensions import FieldExtension
from strawberry.permission import BasePermission, PermissionExtension
from strawberry.schema_directive import Location

from auth.viewer import FAMILY_ROLES, Role, Viewer
from gateway.core.errors import BadUserInputError, ForbiddenError, UnauthenticatedError

# The viewer's Role enum is exposed as the GraphQL enum `Role` (a plain enum in auth.viewer:
# its values' descriptions are set on strawberry's definition here).
ROLE_DESCRIPTIONS: dict[Role, str] = {
    Role.PARENT: (
        "A parent or guardian: sees the diaries of the children linked to them in the "
        "schools' parent registries."
    ),
    Role.STUDENT: "A student: sees their own diary.",
    Role.SCHOOL_ADMIN: (
        "A school's IT administrator (a person or a machine client): sees the dashboards "
        "of the schools they administer, never a diary."
    ),
    Role.REGIONAL_ANALYST: (
        "A regional analyst (a person or a machine client): sees the regional analytics "
        "(aggregates only, never a child's data)."
    ),
}
for _value in strawberry.enum(
    Role, name="Role", description="Role of a gateway user."
).__strawberry_definition__.values:  # type: ignore[attr-defined]
    _value.description = ROLE_DESCRIPTIONS[Role[_value.name]]

# Largest value of a PostgreSQL `integer` key.
MAX_INT_ID = 2_147_483_647


@strawberry.schema_directive(
    locations=[Location.FIELD_DEFINITION],
    name="authenticated",
    description="The field is available only to a signed-in user (otherwise UNAUTHENTICATED).",
)
class Authenticated:
    pass


@strawberry.schema_directive(
    locations=[Location.FIELD_DEFINITION],
    name="roles",
    description="The field is available only to the listed roles (otherwise FORBIDDEN).",
)
class Roles:
    any_of: list[Role]


@strawberry.schema_directive(
    locations=[Location.FIELD_DEFINITION],
    name="studentScope",
    description=(
        "Student data is returned only if the student is in the user's scope: "
        "their own children for a parent, the student themselves for a student "
        "(otherwise FORBIDDEN)."
    ),
)
class StudentScope:
    pass


def parse_int_id(value: str, *, argument: str = "id") -> int:
    """A decimal id argument as an int, or BAD_USER_INPUT naming the argument."""
    text = str(value)
    if not (text.isascii() and text.isdigit()) or len(text) > len(str(MAX_INT_ID)):
        raise BadUserInputError(f"Некорректный идентификатор в аргументе {argument}.")
    number = int(text)
    if not 0 < number <= MAX_INT_ID:
        raise BadUserInputError(f"Некорректный идентификатор в аргументе {argument}.")
    return number


def _viewer(info: strawberry.Info) -> Viewer | None:
    viewer: Viewer | None = info.context.viewer
    return viewer


class SignedInPermission(BasePermission):
    """A check on a signed-in viewer: UNAUTHENTICATED without one, FORBIDDEN when `allows`
    says no."""

    def has_permission(self, source: Any, info: strawberry.Info, **kwargs: Any) -> bool:
        viewer = _viewer(info)
        if viewer is None:
            raise UnauthenticatedError()
        return self.allows(viewer, source, kwargs)

    @abc.abstractmethod
    def allows(self, viewer: Viewer, source: Any, arguments: dict[str, Any]) -> bool:
        """Whether this signed-in viewer may see the field (`arguments` are the field's)."""

    def on_unauthorized(self) -> None:
        raise ForbiddenError()


class IsAuthenticated(BasePermission):
    """Any signed-in viewer."""

    _schema_directive: ClassVar[object | None] = Authenticated()

    def has_permission(self, source: Any, info: strawberry.Info, **kwargs: Any) -> bool:
        return _viewer(info) is not None

    def on_unauthorized(self) -> None:
        raise UnauthenticatedError()


class IsFamilyMember(SignedInPermission):
    """A parent or a student: the roles that see children's diaries."""

    _schema_directive: ClassVar[object | None] = Roles(
        any_of=sorted(FAMILY_ROLES, key=lambda role: role.value)
    )

    def allows(self, viewer: Viewer, source: Any, arguments: dict[str, Any]) -> bool:
        return viewer.is_family


class CanSeeStudent(SignedInPermission):
    """The student (the `id` argument, or the Student the field is on) is in scope.

    An id outside the scope is FORBIDDEN whether or not such a student exists, so the
    answer never tells a stranger which ids are real.
    """

    _schema_directive: ClassVar[object | None] = StudentScope()

    def allows(self, viewer: Viewer, source: Any, arguments: dict[str, Any]) -> bool:
        student_id: int = parse_int_id(arguments["id"]) if "id" in arguments else source.student_id
        return student_id in viewer.student_ids


# --- school dashboards ---------------------------------------------------------------


@strawberry.schema_directive(
    locations=[Location.FIELD_DEFINITION],
    name="schoolScope",
    description=(
        "School data is returned only to an administrator of that school: role "
        "SCHOOL_ADMIN, and the schoolId argument (or the school of the object the field "
        "is on) is one they administer (otherwise FORBIDDEN, and no data)."
    ),
)
class SchoolScope:
    pass


class IsSchoolAdmin(SignedInPermission):
    """A school's IT administrator (a person or a machine client with that role)."""

    _schema_directive: ClassVar[object | None] = Roles(any_of=[Role.SCHOOL_ADMIN])

    def allows(self, viewer: Viewer, source: Any, arguments: dict[str, Any]) -> bool:
        return viewer.role is Role.SCHOOL_ADMIN


class CanAdministerSchool(SignedInPermission):
    """A school admin of the school: the `schoolId` argument, else `source.school_id`.

    A school outside the viewer's schools is FORBIDDEN whether or not it exists.
    """

    _schema_directive: ClassVar[object | None] = SchoolScope()

    def allows(self, viewer: Viewer, source: Any, arguments: dict[str, Any]) -> bool:
        if viewer.role is not Role.SCHOOL_ADMIN:
            return False
        school_id: int = (
            parse_int_id(arguments["school_id"], argument="schoolId")
            if "school_id" in arguments
            else source.school_id
        )
        return viewer.administers(school_id)


def requires(*permissions: type[BasePermission]) -> list[FieldExtension]:
    """Field extensions enforcing `permissions` in order and printing their directives."""
    return [PermissionExtension([permission() for permission in permissions])]


# --- OAuth scopes (machine clients) --------------------------------------------------


@strawberry.schema_directive(
    locations=[Location.FIELD_DEFINITION],
    name="scope",
    description=(
        "The field needs this OAuth scope: a machine client must have been granted it "
        "(a signed-in person has every scope of their role); otherwise FORBIDDEN."
    ),
)
class Scope:
    name: str


class HasScope(SignedInPermission):
    """The viewer holds OAuth scope `scope` (auth.viewer.ROLE_SCOPES); FORBIDDEN otherwise.

    An instance per scope: `PermissionExtension([IsAuthenticated(), HasScope(SCOPE_...)])`
    next to the role check; the SDL shows `@scope(name: "...")`.
    """

    def __init__(self, scope: str) -> None:
        super().__init__()
        self.scope = scope
        self._directive = Scope(name=scope)

    @property
    def schema_directive(self) -> object:
        return self._directive

    def allows(self, viewer: Viewer, source: Any, arguments: dict[str, Any]) -> bool:
        return self.scope in viewer.scopes


class IsRegionalAnalyst(SignedInPermission):
    """A regional analyst (a person or a machine client with that role): aggregates only."""

    _schema_directive: ClassVar[object | None] = Roles(any_of=[Role.REGIONAL_ANALYST])

    def allows(self, viewer: Viewer, source: Any, arguments: dict[str, Any]) -> bool:
        return viewer.role is Role.REGIONAL_ANALYST

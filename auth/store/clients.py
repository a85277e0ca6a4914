"""Machine clients: registered programs (school dashboards, analytics tools) and their viewers.

A client (table gateway.service_clients, gateway/migrations/gateway_clients.sql) has an id (uuid,
the OAuth `client_id`), a secret of 256 random bits of which only the SHA-256 is stored,
a role (SCHOOL_ADMIN with the schools it may see, or REGIONAL_ANALYST) and the OAuth
scopes it may be granted (a subset of auth.viewer.ROLE_SCOPES of its role).

- `create_client` / `revoke_client` / `list_clients`: the `school-gateway clients` command.
- `fetch_client`: the token endpoint's lookup (auth.signin.client_routes).
- `load_client_viewer`: every request with a client token, ONE statement: the client's
  current role, schools and scopes; a revoked client → CLIENT_REVOKED, so its tokens stop
  working on the next request. The viewer's scopes are those of the token that the client
  still has (a client narrowed after the token was issued loses the rest at once).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import asyncpg
from authlib.oauth2.rfc6749 import ClientMixin

from auth.tokens import is_uuid
from auth.viewer import CLIENT_ROLES, ROLE_SCOPES, Role, Viewer
from gateway.core.errors import ApiError, ErrorCode

GRANT_TYPE: Final = "client_credentials"
AUTH_METHODS: Final = ("client_secret_basic", "client_secret_post")
SECRET_BYTES: Final = 32  # 256 bits
MAX_NAME_CHARS: Final = 200

_CLIENT_COLUMNS: Final = """
SELECT c.id::text AS id, c.secret_hash, c.name, c.role, c.school_ids, c.scopes,
       c.created_at, c.revoked_at
FROM gateway.service_clients c"""

# One statement per request made with a client token.
_LOAD_CLIENT_VIEWER: Final = """
SELECT c.name, c.role, c.school_ids, c.scopes, c.revoked_at IS NOT NULL AS revoked
FROM gateway.service_clients c
WHERE c.id = $1::uuid
"""


class ClientRevokedError(ApiError):
    """The client of the token was revoked (`school-gateway clients revoke`)."""

    code = ErrorCode.CLIENT_REVOKED


class ClientRegistrationError(ValueError):
    """A client cannot be registered as asked; the message says why (CLI output)."""


def hash_secret(secret: str) -> bytes:
    """SHA-256 of a client secret (gateway/migrations/gateway_clients.sql says why not argon2)."""
    return hashlib.sha256(secret.encode()).digest()


@dataclass(frozen=True, slots=True)
class ServiceClient(ClientMixin):  # type: ignore[misc]
    """A registered client as authlib's token endpoint sees it (rfc6749 ClientMixin)."""

    client_id: str
    secret_hash: bytes
    name: str
    role: Role
    school_ids: tuple[int, ...]
    scopes: frozenset[str]
    created_at: datetime
    revoked_at: datetime | None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        return None

    def get_allowed_scope(self, scope: str | None) -> str:
        """The granted scope: what was asked (already checked ⊆ ours), else all of ours."""
        asked = set((scope or "").split())
        return " ".join(sorted(asked & self.scopes if asked else self.scopes))

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return False

    def check_client_secret(self, client_secret: str) -> bool:
        return hmac.compare_digest(hash_secret(client_secret), self.secret_hash)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return endpoint == "token" and method in AUTH_METHODS

    def check_response_type(self, response_type: str) -> bool:
        return False

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == GRANT_TYPE

    def public(self) -> dict[str, Any]:
        """What `clients list` shows (never the secret or its hash)."""
        return {
            "client_id": self.client_id,
            "name": self.name,
            "role": self.role.value,
            "school_ids": list(self.school_ids),
            "scopes": sorted(self.scopes),
            "created_at": self.created_at.isoformat(),
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
        }


@dataclass(frozen=True, slots=True)
class CreatedClient:
    """A new client: the secret is here once and never again."""

    client: ServiceClient
    secret: str


def _client(row: asyncpg.Record) -> ServiceClient:
    return ServiceClient(
        client_id=row["id"],
        secret_hash=bytes(row["secret_hash"]),
        name=row["name"],
        role=Role(row["role"]),
        school_ids=tuple(row["school_ids"]),
        scopes=frozenset(row["scopes"]),
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
    )


def is_client_id(value: str | None) -> bool:
    """A well-formed client id (a uuid); anything else is never looked up."""
    return value is not None and len(value) <= 64 and is_uuid(value)


def check_registration(role: Role, school_ids: Iterable[int], scopes: Iterable[str]) -> None:
    """ClientRegistrationError unless the role, schools and scopes fit together."""
    schools, wanted = tuple(school_ids), frozenset(scopes)
    if role not in CLIENT_ROLES:
        raise ClientRegistrationError("a client's role is SCHOOL_ADMIN or REGIONAL_ANALYST")
    if role is Role.SCHOOL_ADMIN and not schools:
        raise ClientRegistrationError("a SCHOOL_ADMIN client needs at least one --school")
    if role is Role.REGIONAL_ANALYST and schools:
        raise ClientRegistrationError("a REGIONAL_ANALYST client covers the region: no --school")
    unknown = wanted - ROLE_SCOPES[role]
    if unknown:
        allowed = ", ".join(sorted(ROLE_SCOPES[role]))
        raise ClientRegistrationError(
            f"scope {', '.join(sorted(unknown))} is not available to {role.value} "
            f"(available: {allowed})"
        )


async def create_client(
    conn: asyncpg.Connection | asyncpg.Pool,
    *,
    name: str,
    role: Role,
    school_ids: Iterable[int] = (),
    scopes: Iterable[str] = (),
) -> CreatedClient:
    """Register a client; scopes default to every scope of the role."""
    schools = tuple(sorted(set(school_ids)))
    granted = frozenset(scopes) or ROLE_SCOPES.get(role, frozenset())
    check_registration(role, schools, granted)
    name = name.strip()
    if not 0 < len(name) <= MAX_NAME_CHARS:
        raise ClientRegistrationError(f"the name must have 1 to {MAX_NAME_CHARS} characters")
    if schools:
        known = await conn.fetchval(
            "SELECT count(*) FROM diary_api.schools WHERE id = ANY($1::integer[])", list(schools)
        )
        if known != len(schools):
            raise ClientRegistrationError("no such school: check the --school ids")
    secret = secrets.token_urlsafe(SECRET_BYTES)
    row = await conn.fetchrow(
        "INSERT INTO gateway.service_clients (secret_hash, name, role, school_ids, scopes) "
        "VALUES ($1, $2, $3, $4, $5) "
        "RETURNING id::text AS id, secret_hash, name, role, school_ids, scopes, "
        "created_at, revoked_at",
        hash_secret(secret),
        name,
        role.value,
        list(schools),
        sorted(granted),
    )
    return CreatedClient(client=_client(row), secret=secret)


async def revoke_client(conn: asyncpg.Connection | asyncpg.Pool, client_id: str) -> bool:
    """Revoke a client (its tokens stop working at once); False if there is no such client."""
    if not is_client_id(client_id):
        return False
    status = await conn.execute(
        "UPDATE gateway.service_clients SET revoked_at = coalesce(revoked_at, now()) "
        "WHERE id = $1::uuid",
        client_id,
    )
    return bool(status == "UPDATE 1")


async def list_clients(conn: asyncpg.Connection | asyncpg.Pool) -> list[ServiceClient]:
    """Every client, oldest first, revoked ones included."""
    rows = await conn.fetch(_CLIENT_COLUMNS + " ORDER BY c.created_at, c.id")
    return [_client(row) for row in rows]


async def fetch_client(pool: asyncpg.Pool, client_id: str | None) -> ServiceClient | None:
    """The client with this id (revoked or not), or None; malformed ids are not looked up."""
    if client_id is None or not is_client_id(client_id):
        return None
    row = await pool.fetchrow(_CLIENT_COLUMNS + " WHERE c.id = $1::uuid", client_id)
    return None if row is None else _client(row)


async def load_client_viewer(
    pool: asyncpg.Pool, client_id: str, token_scopes: frozenset[str]
) -> Viewer | None:
    """The viewer of a client token (one statement); None for an unknown client,
    ClientRevokedError for a revoked one."""
    row = await pool.fetchrow(_LOAD_CLIENT_VIEWER, client_id)
    if row is None:
        return None
    if row["revoked"]:
        raise ClientRevokedError()
    role = Role(row["role"])
    return Viewer(
        account_id=client_id,
        role=role,
        display_name=row["name"],
        student_ids=frozenset(),
        school_ids=frozenset(row["school_ids"]),
        scopes=token_scopes & frozenset(row["scopes"]) & ROLE_SCOPES[role],
        client_id=client_id,
    )

"""Accounts of the gateway and the viewer's scope, read fresh from the registries.

An account row (schema `gateway`) holds identity keys only: SNILS/phone for a parent, the
student's id, the staff member's id. The set of children a parent may see is computed on
every request from the school registries (the read contract), so it follows the
registries: a removed parent-child link is gone on the next request.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import asyncpg

from auth.viewer import Role, Viewer
from gateway.core.errors import ApiError, ErrorCode


class SessionRevokedError(ApiError):
    """The request's session was revoked (logout, a replayed refresh token) or has ended."""

    code = ErrorCode.SESSION_REVOKED


class AccountNotFoundError(LookupError):
    """The demo person is not in the school registries (is the demo data seeded?)."""


# A parent registry record belongs to a person when it holds the person's SNILS, or,
# when the record has no well-formed SNILS, the person's (ESIA-confirmed) mobile phone.
# A record with a different SNILS never matches by phone (another person sharing it).
REGISTRY_MATCH_RULE = "pl.snils = $1 OR (pl.phone = $2 AND coalesce(pl.snils, '') !~ '^[0-9]{11}$')"

_UPSERT_PARENT = """
INSERT INTO gateway.accounts (role, snils, phone, display_name)
VALUES ('PARENT', $1, $2, $3)
ON CONFLICT (snils) WHERE role = 'PARENT' AND snils IS NOT NULL
DO UPDATE SET phone = EXCLUDED.phone, display_name = EXCLUDED.display_name
RETURNING id::text
"""

# A student's account from their registry record; `{match}` picks the record, $1 is the
# display name.
_UPSERT_STUDENT = """
INSERT INTO gateway.accounts (role, snils, phone, student_id, display_name)
SELECT 'STUDENT', si.snils, si.phone, si.student_id, $1
FROM diary_api.student_identities si
WHERE {match}
ORDER BY si.student_id
LIMIT 1
ON CONFLICT (student_id) WHERE role = 'STUDENT'
DO UPDATE SET snils = EXCLUDED.snils, phone = EXCLUDED.phone,
              display_name = EXCLUDED.display_name
RETURNING id::text
"""
_UPSERT_STUDENT_BY_ID = _UPSERT_STUDENT.format(match="si.student_id = $2")
# A demo student is found by the school-issued login, else by SNILS.
_UPSERT_STUDENT_BY_LOGIN = _UPSERT_STUDENT.format(
    match="($2::text IS NOT NULL AND si.login = $2) OR ($2::text IS NULL AND si.snils = $3::text)"
)

_UPSERT_STAFF = """
INSERT INTO gateway.accounts (role, snils, phone, staff_id, display_name)
SELECT $1, st.snils, st.phone, st.id, $3
FROM diary_api.staff st
WHERE st.snils = $2::text
  AND st.role = CASE $1 WHEN 'SCHOOL_ADMIN' THEN 'it_admin' ELSE 'regional_analyst' END
ORDER BY st.id
LIMIT 1
ON CONFLICT (staff_id) WHERE staff_id IS NOT NULL
DO UPDATE SET role = EXCLUDED.role, snils = EXCLUDED.snils, phone = EXCLUDED.phone,
              display_name = EXCLUDED.display_name
RETURNING id::text
"""

# The account and its whole scope (the select list and join of _LOAD_VIEWER*).
# PARENT: every student linked to any registry record (in any school) that matches the
#         person (merged account): see REGISTRY_MATCH_RULE.
# STUDENT: themself. SCHOOL_ADMIN: their school. REGIONAL_ANALYST: nothing personal.
_ACCOUNT_MATCH_RULE = REGISTRY_MATCH_RULE.replace("$1", "a.snils::text").replace("$2", "a.phone")
_VIEWER_COLUMNS = f"""
SELECT a.id::text AS id, a.role, a.display_name,
       CASE a.role
         WHEN 'PARENT' THEN coalesce(
           (SELECT array_agg(DISTINCT pl.student_id)
            FROM diary_api.parent_links pl
            WHERE {_ACCOUNT_MATCH_RULE}),
           '{{}}'::int[])
         WHEN 'STUDENT' THEN ARRAY[a.student_id]
         ELSE '{{}}'::int[]
       END AS student_ids,
       CASE a.role
         WHEN 'SCHOOL_ADMIN' THEN coalesce(
           (SELECT array_agg(st.school_id) FROM diary_api.staff st
            WHERE st.id = a.staff_id AND st.school_id IS NOT NULL),
           '{{}}'::int[])
         ELSE '{{}}'::int[]
       END AS school_ids"""

# One statement: the account and its scope (no session: tools and tests).
_LOAD_VIEWER = (
    _VIEWER_COLUMNS
    + """
FROM gateway.accounts a
WHERE a.id = $1::uuid
"""
)

# One statement per request: the session (must belong to the account; revoked or expired
# → `session_ended`) together with the account and its scope.
_LOAD_SESSION_VIEWER = (
    _VIEWER_COLUMNS
    + """,
       (s.revoked_at IS NOT NULL OR s.expires_at <= now()) AS session_ended
FROM gateway.sessions s
JOIN gateway.accounts a ON a.id = s.account_id
WHERE s.id = $2::uuid AND a.id = $1::uuid
"""
)


# The accounts that may see each student of a relation `{students}` (one column,
# `student_id`) now, as rows (student_id, account_id text): the parents' accounts whose
# person matches one of the student's parent registry records (REGISTRY_MATCH_RULE, read
# from the records' side: by SNILS, or by phone for a record without a well-formed SNILS)
# and the student's own account. The change feed checks each event against it.
_AUDIENCE = """
SELECT s.student_id, a.id::text AS account_id
FROM ({students}) s
JOIN diary_api.parent_links pl ON pl.student_id = s.student_id
JOIN gateway.accounts a
  ON a.role = 'PARENT' AND pl.snils ~ '^[0-9]{{11}}$' AND a.snils = pl.snils::char(11)
UNION
SELECT s.student_id, a.id::text
FROM ({students}) s
JOIN diary_api.parent_links pl ON pl.student_id = s.student_id
JOIN gateway.accounts a
  ON a.role = 'PARENT' AND a.phone = pl.phone AND coalesce(pl.snils, '') !~ '^[0-9]{{11}}$'
UNION
SELECT s.student_id, a.id::text
FROM ({students}) s
JOIN gateway.accounts a ON a.role = 'STUDENT' AND a.student_id = s.student_id
"""


def audience_sql(students: str) -> str:
    """A subquery of (student_id, account_id) pairs: who may see each student of the
    relation `students` (SQL giving one column `student_id`) now."""
    return _AUDIENCE.format(students=students)


_ENDED_SESSIONS = """
SELECT k.id::text
FROM unnest($1::uuid[]) AS k(id)
LEFT JOIN gateway.sessions s ON s.id = k.id
WHERE s.id IS NULL OR s.revoked_at IS NOT NULL OR s.expires_at <= now()
"""


async def ended_sessions(pool: asyncpg.Pool, session_ids: Sequence[str]) -> set[str]:
    """Which of these sessions were revoked, have expired or do not exist (one statement)."""
    if not session_ids:
        return set()
    return {row[0] for row in await pool.fetch(_ENDED_SESSIONS, list(session_ids))}


class DemoPerson(Protocol):
    """What `ensure_demo_account` reads of a demo person (fixtures.demo.DemoAccount)."""

    @property
    def key(self) -> str: ...
    @property
    def role(self) -> str: ...
    @property
    def snils(self) -> str | None: ...
    @property
    def phone(self) -> str | None: ...
    @property
    def login(self) -> str | None: ...
    @property
    def full_name(self) -> str: ...


async def ensure_demo_account(pool: asyncpg.Pool, account: DemoPerson) -> str:
    """Create or refresh the gateway account of a demo person; returns its id (uuid text)."""
    role = Role(account.role)
    if role is Role.PARENT:
        account_id = await pool.fetchval(
            _UPSERT_PARENT, account.snils, account.phone, account.full_name
        )
    elif role is Role.STUDENT:
        account_id = await pool.fetchval(
            _UPSERT_STUDENT_BY_LOGIN, account.full_name, account.login, account.snils
        )
    else:
        account_id = await pool.fetchval(
            _UPSERT_STAFF, role.value, account.snils, account.full_name
        )
    if account_id is None:
        raise AccountNotFoundError(
            f"demo account {account.key!r} is not in the school registries; "
            "seed the demo data first (school-gateway seed)"
        )
    return str(account_id)


async def upsert_parent_account(
    pool: asyncpg.Pool, *, snils: str | None, phone: str | None, display_name: str
) -> str:
    """The gateway account of a parent (created on first sign-in); returns its id."""
    if snils is None:
        existing = await pool.fetchval(
            "SELECT id::text FROM gateway.accounts "
            "WHERE role = 'PARENT' AND snils IS NULL AND phone = $1",
            phone,
        )
        if existing is not None:
            return str(existing)
    account_id = await pool.fetchval(_UPSERT_PARENT, snils, phone, display_name)
    return str(account_id)


async def upsert_student_account(pool: asyncpg.Pool, *, student_id: int, display_name: str) -> str:
    """The gateway account of a student record (created on first sign-in); returns its id."""
    account_id = await pool.fetchval(_UPSERT_STUDENT_BY_ID, display_name, student_id)
    if account_id is None:
        raise AccountNotFoundError(f"no student record {student_id}")
    return str(account_id)


async def upsert_staff_account(
    pool: asyncpg.Pool, *, role: Role, snils: str, display_name: str
) -> str:
    """The gateway account of a staff member (school admin, analyst) found by SNILS."""
    account_id = await pool.fetchval(_UPSERT_STAFF, role.value, snils, display_name)
    if account_id is None:
        raise AccountNotFoundError(f"no {role.value} staff record with this SNILS")
    return str(account_id)


async def load_viewer(
    pool: asyncpg.Pool, account_id: str, *, session_id: str | None = None
) -> Viewer | None:
    """The viewer of an account with its current scope, or None if there is no such account.

    With `session_id` (every authenticated request): None unless that session exists and
    belongs to the account; SessionRevokedError when it was revoked or has expired. The
    session is checked in the same single statement that loads the scope.
    """
    if session_id is None:
        row = await pool.fetchrow(_LOAD_VIEWER, account_id)
    else:
        row = await pool.fetchrow(_LOAD_SESSION_VIEWER, account_id, session_id)
        if row is not None and row["session_ended"]:
            raise SessionRevokedError()
    if row is None:
        return None
    return Viewer(
        account_id=row["id"],
        role=Role(row["role"]),
        display_name=row["display_name"],
        student_ids=frozenset(row["student_ids"]),
        school_ids=frozenset(row["school_ids"]),
        session_id=session_id,
    )

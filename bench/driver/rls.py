"""The `postgraphile-rls` peer's database side: roles, policies, JWTs, and the proof.

bench/postgraphile/rls.sql creates the authenticator login role (no privileges of its
own), the viewer role the JWT names, and the row-level security policies that restrict
a viewer to the students of the `jwt.claims.parent_ids` parent records (or to the
`jwt.claims.student_id` student) and to their classes. This module applies it, signs the
bench's HS256 JWTs (the secret, generated once and kept 0600 in bench/.data like the
authenticator's password, reaches bench/postgraphile/graphile.rls.config.mjs as the
JWT_SECRET environment variable: bench/driver/targets.py), and proves the policies
restrict: as the viewer, an account sees exactly the gateway's scope of that account
among the students, and no lesson, homework, attendance or mark outside the scope's
classes and students.
"""

from __future__ import annotations

import functools
import hashlib
import time
from collections.abc import Sequence
from pathlib import Path

import asyncpg
from joserfc import jwt
from joserfc.jwk import OctKey

from auth.store.accounts import REGISTRY_MATCH_RULE
from fixtures.demo import DemoAccount
from gateway.core.db_roles import read_or_create_secret, set_password_sql, with_credentials

RLS_SQL = Path(__file__).resolve().parent.parent / "postgraphile" / "rls.sql"
AUTH_ROLE = "bench_postgraphile_auth"
VIEWER_ROLE = "bench_postgraphile_viewer"
PASSWORD_FILE = "db-postgraphile-auth-password"
JWT_SECRET_FILE = Path(__file__).resolve().parent.parent / ".data" / "postgraphile-jwt-secret"
JWT_AUDIENCE = "postgraphile"
JWT_TTL_S = 86400

Claims = dict[str, str | int]


class RlsCheckError(RuntimeError):
    """The policies do not restrict the viewer as they should."""


async def prepare_rls(url: str, data_dir: Path) -> str:
    """Apply rls.sql as the superuser (`url`); the authenticator's DSN.

    The authenticator's password is kept in `data_dir` (one for the cluster's databases).
    """
    password = read_or_create_secret(data_dir / PASSWORD_FILE)
    conn = await asyncpg.connect(url)
    try:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('bench-rls'))")
            await conn.execute(RLS_SQL.read_text(encoding="utf-8"))
            await conn.execute(set_password_sql(AUTH_ROLE, password))
    finally:
        await conn.close()
    return with_credentials(url, AUTH_ROLE, password)


@functools.cache
def jwt_secret() -> str:
    """The HS256 secret of PostGraphile-RLS's JWTs (JWT_SECRET_FILE, 0600, made once)."""
    return read_or_create_secret(JWT_SECRET_FILE)


def secret_fingerprint() -> str:
    """A short digest of the secret: saved tokens are reused only under the same one."""
    return hashlib.sha256(jwt_secret().encode()).hexdigest()[:16]


# The parent registry records of a scope that the gateway matches to an account
# ($1 SNILS, $2 phone, $3 the scope): the gateway's own rule, REGISTRY_MATCH_RULE.
_PARENT_RECORDS = f"""
SELECT array_agg(DISTINCT pl.parent_id ORDER BY pl.parent_id)
FROM diary_api.parent_links pl
WHERE pl.student_id = ANY($3::int[]) AND ({REGISTRY_MATCH_RULE})
"""


async def parent_records(
    conn: asyncpg.Connection | asyncpg.Pool,
    snils: str | None,
    phone: str | None,
    scope: Sequence[int],
) -> list[int]:
    """The parent registry records among `scope`'s links that the gateway matches to the
    account of this SNILS and phone."""
    ids = await conn.fetchval(_PARENT_RECORDS, snils, phone, list(scope))
    return list(ids or [])


async def viewer_claims(
    conn: asyncpg.Connection, account: DemoAccount, scope: Sequence[int]
) -> Claims:
    """The JWT claims of a demo account: its parent registry records, or its student id.

    A parent's records are those of the gateway's scope of the account that the gateway
    matches to it (`parent_records`).
    """
    if account.role == "STUDENT":
        (student_id,) = scope
        return {"role": VIEWER_ROLE, "student_id": student_id}
    parent_ids = await parent_records(conn, account.snils, account.phone, scope)
    if not parent_ids:
        raise RlsCheckError(f"{account.key}: no parent registry records for its scope")
    return parent_claims(parent_ids)


def parent_claims(parent_ids: Sequence[int]) -> Claims:
    """The claims of a parent viewer with these parent registry records (for request files
    of many families: sign each with `sign_jwt`)."""
    return {"role": VIEWER_ROLE, "parent_ids": ",".join(str(i) for i in sorted(parent_ids))}


def sign_jwt(claims: Claims) -> str:
    """An HS256 JWT for bench/postgraphile (audience `postgraphile`, a day's expiry)."""
    now = int(time.time())
    payload = {**claims, "aud": JWT_AUDIENCE, "iat": now, "exp": now + JWT_TTL_S}
    return jwt.encode({"alg": "HS256"}, payload, OctKey.import_key(jwt_secret()))


# As the viewer: every student it sees; per table, the rows it sees inside and outside
# ($1) the scope's classes (lessons, homework) or students (attendance, marks): each
# "outside" count must be 0.
_ALL_STUDENTS = "SELECT coalesce(array_agg(id ORDER BY id), '{}') FROM school.students"
_INSIDE_OUTSIDE = (
    "SELECT count(*) FILTER (WHERE {column} = ANY($1::int[])),"
    " count(*) FILTER (WHERE NOT {column} = ANY($1::int[])) FROM school.{table}"
)
_COUNTED = {
    "lessons": "class_id",
    "homework": "class_id",
    "attendance": "student_id",
    "marks": "student_id",
}


async def _as_viewer(conn: asyncpg.Connection, claims: Claims) -> None:
    """Become the viewer of `claims` in the open transaction, as PostGraphile does."""
    settings = {"role": str(claims["role"])} | {
        f"jwt.claims.{key}": str(value) for key, value in claims.items() if key != "role"
    }
    for name, value in settings.items():
        await conn.execute("SELECT set_config($1, $2, true)", name, value)


async def viewer_sees(
    rls_url: str, claims: Claims, classes: Sequence[int], scope: Sequence[int]
) -> tuple[list[int], dict[str, tuple[int, int]]]:
    """What the viewer of `claims` sees, logged in as the authenticator: every student id,
    and per table (lessons, homework, attendance, marks) the rows (inside, outside) the
    scope's classes or students."""
    conn = await asyncpg.connect(rls_url)
    try:
        async with conn.transaction():
            await _as_viewer(conn, claims)
            students = list(await conn.fetchval(_ALL_STUDENTS))
            counts: dict[str, tuple[int, int]] = {}
            for table, column in _COUNTED.items():
                ids = classes if column == "class_id" else scope
                sql = _INSIDE_OUTSIDE.format(column=column, table=table)
                row = await conn.fetchrow(sql, list(ids))
                assert row is not None
                counts[table] = (int(row[0]), int(row[1]))
    finally:
        await conn.close()
    return students, counts


async def scope_classes(url: str, scope: Sequence[int]) -> list[int]:
    """The classes of the scope's students (read as the superuser)."""
    conn = await asyncpg.connect(url)
    try:
        ids = await conn.fetchval(
            "SELECT array_agg(DISTINCT class_id ORDER BY class_id) FROM school.students "
            "WHERE id = ANY($1::int[])",
            list(scope),
        )
    finally:
        await conn.close()
    return list(ids or [])


async def other_family_student(url: str, scope: Sequence[int]) -> int:
    """A student with marks who is not in `scope` (read as the superuser)."""
    conn = await asyncpg.connect(url)
    try:
        student_id = await conn.fetchval(
            "SELECT student_id FROM school.marks WHERE NOT student_id = ANY ($1::integer[]) "
            "ORDER BY student_id LIMIT 1",
            list(scope),
        )
    finally:
        await conn.close()
    if student_id is None:
        raise RlsCheckError("no student outside the parent's scope to check the policies with")
    return int(student_id)


async def check_policies(
    url: str, rls_url: str, claims: Claims, scope: Sequence[int]
) -> tuple[list[int], int]:
    """Prove the policies: among all students the viewer sees exactly its scope, and no
    lesson or homework outside the scope's classes, no attendance or mark outside its
    students (and some lessons inside). Prints what it saw.

    Returns (the visible students, a student with marks outside the scope).
    """
    other = await other_family_student(url, scope)
    classes = await scope_classes(url, scope)
    students, counts = await viewer_sees(rls_url, claims, classes, scope)
    outside = {table: out for table, (_, out) in counts.items() if out}
    if students != sorted(scope) or outside or counts["lessons"][0] == 0:
        raise RlsCheckError(
            f"row-level security: the viewer {claims} sees students {students} (expected "
            f"exactly its scope {sorted(scope)}), rows outside the scope: {outside}, "
            f"lessons of its classes {classes}: {counts['lessons'][0]}"
        )
    seen = ", ".join(f"{table} {inside}" for table, (inside, _) in counts.items())
    print(
        f"      row-level security check, viewer {claims}: all students visible = the "
        f"scope {students}; rows visible in the scope's classes {classes} / students: "
        f"{seen}; outside them: 0 of each",
        flush=True,
    )
    return students, other

"""The `postgraphile-rls` peer's database side: roles, policies, JWTs, and the proof.

bench/postgraphile/rls.sql creates the authenticator login role (no privileges of its
own), the viewer role the JWT names, and the row-level security policies that restrict
a viewer to the students of the `jwt.claims.parent_ids` parent records (or to the
`jwt.claims.student_id` student) and to their classes. This module applies it, signs the
bench's HS256 JWTs (the secret is shared with bench/postgraphile/graphile.config.mjs
through POSTGRAPHILE_JWT_SECRET), and proves the policies restrict: as the viewer, a
parent sees exactly the gateway's scope of that parent, and nothing of another family.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import asyncpg
from joserfc import jwt
from joserfc.jwk import OctKey

from fixtures.demo import DemoAccount
from gateway.core.db_roles import read_or_create_secret, set_password_sql, with_credentials

RLS_SQL = Path(__file__).resolve().parent.parent / "postgraphile" / "rls.sql"
AUTH_ROLE = "bench_postgraphile_auth"
VIEWER_ROLE = "bench_postgraphile_viewer"
PASSWORD_FILE = "db-postgraphile-auth-password"
JWT_SECRET = "bench-postgraphile-rls-secret-not-for-production-0123456789"
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


_PARENT_RECORDS = """
SELECT array_agg(DISTINCT p.id ORDER BY p.id)
FROM school.parents p
JOIN school.parent_students ps ON ps.parent_id = p.id
WHERE ps.student_id = ANY ($1::integer[]) AND (p.snils = $2 OR p.phone = $3)
"""


async def viewer_claims(
    conn: asyncpg.Connection, account: DemoAccount, scope: Sequence[int]
) -> Claims:
    """The JWT claims of a demo account: its parent registry records, or its student id.

    A parent's records are those of the gateway's scope of the account that hold its
    SNILS or phone (the gateway matches registry records the same way).
    """
    if account.role == "STUDENT":
        (student_id,) = scope
        return {"role": VIEWER_ROLE, "student_id": student_id}
    parent_ids = await conn.fetchval(_PARENT_RECORDS, list(scope), account.snils, account.phone)
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
    return jwt.encode({"alg": "HS256"}, payload, OctKey.import_key(JWT_SECRET))


async def visible_students(rls_url: str, claims: Claims, student_ids: Sequence[int]) -> list[int]:
    """Which of `student_ids` the viewer of `claims` sees, as PostGraphile would ask:
    logged in as the authenticator, in a transaction with the claims as settings."""
    conn = await asyncpg.connect(rls_url)
    try:
        async with conn.transaction():
            settings = {"role": str(claims["role"])} | {
                f"jwt.claims.{key}": str(value) for key, value in claims.items() if key != "role"
            }
            for name, value in settings.items():
                await conn.execute("SELECT set_config($1, $2, true)", name, value)
            rows = await conn.fetch(
                "SELECT id FROM school.students WHERE id = ANY ($1::integer[]) "
                "UNION SELECT student_id FROM school.marks WHERE student_id = ANY ($1::integer[])",
                list(student_ids),
            )
    finally:
        await conn.close()
    return sorted(row["id"] for row in rows)


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
    """Prove the policies: the viewer sees its whole scope and not another family's student.

    Returns (the visible scope, the other family's student id).
    """
    other = await other_family_student(url, scope)
    visible = await visible_students(rls_url, claims, [*scope, other])
    if visible != sorted(scope):
        raise RlsCheckError(
            f"row-level security: the viewer {claims} sees students {visible}, "
            f"expected exactly its scope {sorted(scope)} (not {other})"
        )
    return visible, other

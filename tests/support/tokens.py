"""Hand-made bearer tokens (any claims, any secret) and a parent's registry links, read
and temporarily removed, for the token and session tests."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from joserfc import jwt
from joserfc.jwk import OctKey

from auth.tokens import AUDIENCE, ISSUER
from gateway.core.settings import Settings


def sign_token(settings: Settings, claims: dict[str, Any], *, secret: str | None = None) -> str:
    key = OctKey.import_key(secret or settings.jwt_secret)
    return jwt.encode({"alg": "HS256"}, claims, key)


def token_claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "typ": "access",
        "sub": str(uuid.uuid4()),
        "sid": str(uuid.uuid4()),
        "iat": now,
        "exp": now + 600,
        "jti": uuid.uuid4().hex,
    }
    claims.update(overrides)
    return {key: value for key, value in claims.items() if value is not None}


async def registry_children(owner_conn: asyncpg.Connection, snils: str) -> set[int]:
    rows = await owner_conn.fetch(
        "SELECT ps.student_id FROM school.parents p "
        "JOIN school.parent_students ps ON ps.parent_id = p.id WHERE p.snils = $1",
        snils,
    )
    return {row["student_id"] for row in rows}


@asynccontextmanager
async def link_removed(
    owner_conn: asyncpg.Connection, snils: str, student_id: int
) -> AsyncIterator[None]:
    """The registry link of the parent with `snils` to `student_id` deleted, then restored."""
    link = await owner_conn.fetchrow(
        "DELETE FROM school.parent_students ps USING school.parents p "
        "WHERE ps.parent_id = p.id AND p.snils = $1 AND ps.student_id = $2 "
        "RETURNING ps.parent_id, ps.student_id, ps.relation",
        snils,
        student_id,
    )
    assert link is not None
    try:
        yield
    finally:
        await owner_conn.execute(
            "INSERT INTO school.parent_students (parent_id, student_id, relation) "
            "VALUES ($1, $2, $3)",
            link["parent_id"],
            link["student_id"],
            link["relation"],
        )

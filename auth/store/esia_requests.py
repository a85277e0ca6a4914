"""Pending ESIA authorization requests (gateway.esia_requests): stored at login, taken once
at the callback."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from auth.store.sessions import ClientKind

# Expired rows are removed on the way.
_SAVE_REQUEST = """
WITH expired AS (DELETE FROM gateway.esia_requests WHERE expires_at < now())
INSERT INTO gateway.esia_requests (state, nonce, code_verifier, client_kind, return_to,
                                   expires_at, browser_hash)
VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6), $7)
"""

# One-time: the row is gone whatever happens next.
_TAKE_REQUEST = """
DELETE FROM gateway.esia_requests WHERE state = $1
RETURNING nonce, code_verifier, client_kind, return_to, expires_at > now() AS live,
          browser_hash
"""


@dataclass(frozen=True, slots=True)
class EsiaRequest:
    """A stored authorization request, as the callback takes it back."""

    nonce: str
    code_verifier: str
    kind: ClientKind
    return_to: str
    live: bool  # not expired yet
    browser_hash: bytes | None


async def save_esia_request(
    pool: asyncpg.Pool,
    *,
    state: str,
    nonce: str,
    code_verifier: str,
    kind: ClientKind,
    return_to: str,
    ttl_seconds: int,
    browser_hash: bytes,
) -> None:
    """Store a pending request for `ttl_seconds`, removing expired ones."""
    await pool.execute(
        _SAVE_REQUEST,
        state,
        nonce,
        code_verifier,
        kind.value,
        return_to,
        ttl_seconds,
        browser_hash,
    )


async def take_esia_request(pool: asyncpg.Pool, *, state: str) -> EsiaRequest | None:
    """The request of `state`, deleted as it is read (expired or not); None if unknown."""
    row = await pool.fetchrow(_TAKE_REQUEST, state)
    if row is None:
        return None
    browser_hash = row["browser_hash"]
    return EsiaRequest(
        nonce=row["nonce"],
        code_verifier=row["code_verifier"],
        kind=ClientKind(row["client_kind"]),
        return_to=row["return_to"] or "",
        live=row["live"],
        browser_hash=None if browser_hash is None else bytes(browser_hash),
    )

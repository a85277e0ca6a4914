"""Sessions of signed-in people (table gateway.sessions) and their refresh tokens.

A session is either a browser's (kind BROWSER: an HttpOnly cookie holding a signed
session token) or an API client's (kind API: a short-lived access token plus a rotating
refresh token, stored as SHA-256 in gateway.refresh_tokens). Every access token and
session cookie names its session (`sid`); auth.store.accounts.load_viewer checks the session
in the same statement that loads the viewer, so revoking a session (logout, a replayed
refresh token) takes effect on the very next request. A new sign-in in a browser that
still holds a session cookie ends that session (`end_replaced_session`).

Lifetimes: a browser session lasts `session_ttl_seconds`; an API session
`refresh_ttl_seconds` (no refresh token outlives its session); access tokens
`access_ttl_seconds`. Tokens are signed with the current key of the shared key set
(auth.signing_keys: loaded before the first signature of a process that did not start
an application, e.g. `dev-token`).
"""

from __future__ import annotations

import enum
import hashlib
import secrets
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

import asyncpg
import orjson
from starlette.responses import RedirectResponse, Response

from auth.signing_keys import keys_ready, learn_token_keys
from auth.tokens import SESSION, issue_session_cookie, issue_token, verify_token
from gateway.core.errors import ApiError
from gateway.core.settings import Settings

# `/` sends a signed-in browser to the page of its role (gateway.http.pages.LANDING).
DEFAULT_RETURN_TO: Final = "/"
MAX_RETURN_TO_LENGTH: Final = 2048
# Ours are 43 characters (new_refresh_token); anything much longer is not looked up.
MAX_REFRESH_TOKEN_LENGTH: Final = 256
SIGN_IN_METHODS: Final = frozenset({"ESIA", "PASSWORD", "DEV_TOKEN"})


class ClientKind(enum.StrEnum):
    BROWSER = "BROWSER"
    API = "API"


@dataclass(frozen=True, slots=True)
class IssuedSession:
    """A session just started or refreshed, with the credentials to hand to the client."""

    session_id: str
    account_id: str
    kind: ClientKind
    access_token: str
    expires_in: int
    refresh_token: str | None  # API clients only
    cookie_value: str | None  # browsers only


class RefreshTokenInvalidError(Exception):
    """A refresh token that is unknown, expired, already used, or of an ended session.

    `replayed` is true when an already used token came back: its session is now revoked.
    """

    def __init__(self, *, replayed: bool = False, account_id: str | None = None) -> None:
        super().__init__("refresh token invalid")
        self.replayed = replayed
        self.account_id = account_id


# One statement: the session and, for an API client, its first refresh token.
_START = """
WITH s AS (
    INSERT INTO gateway.sessions (account_id, kind, method, expires_at)
    VALUES ($1::uuid, $2, $3, now() + make_interval(secs => $4))
    RETURNING id, expires_at
), r AS (
    INSERT INTO gateway.refresh_tokens (token_hash, session_id, expires_at)
    SELECT $5::bytea, s.id, s.expires_at FROM s WHERE $5::bytea IS NOT NULL
)
SELECT s.id::text AS id, extract(epoch FROM s.expires_at)::bigint AS expires_at FROM s
"""

# One statement: mark a live refresh token of a live session used and store its successor
# (expiring with the session). A concurrent second use finds used_at set and gets no row.
_ROTATE = """
WITH used AS (
    UPDATE gateway.refresh_tokens rt SET used_at = now()
    FROM gateway.sessions s
    WHERE rt.token_hash = $1 AND rt.used_at IS NULL AND rt.expires_at > now()
      AND s.id = rt.session_id AND s.revoked_at IS NULL AND s.expires_at > now()
    RETURNING rt.session_id, s.account_id, s.kind, s.expires_at
), fresh AS (
    INSERT INTO gateway.refresh_tokens (token_hash, session_id, expires_at)
    SELECT $2::bytea, used.session_id, used.expires_at FROM used
)
SELECT session_id::text, account_id::text, kind FROM used
"""

# A token that failed to rotate: if it was already used, its session is revoked (replay).
_REVOKE_REPLAYED = """
WITH rt AS (
    SELECT session_id, used_at IS NOT NULL AS used
    FROM gateway.refresh_tokens WHERE token_hash = $1
), revoked AS (
    UPDATE gateway.sessions s SET revoked_at = coalesce(s.revoked_at, now())
    FROM rt WHERE s.id = rt.session_id AND rt.used
    RETURNING s.id
)
SELECT rt.used, s.account_id::text AS account_id
FROM rt JOIN gateway.sessions s ON s.id = rt.session_id
"""

_REVOKE = """
UPDATE gateway.sessions SET revoked_at = coalesce(revoked_at, now())
WHERE id = $1::uuid
RETURNING account_id::text
"""

_REVOKE_BY_REFRESH = """
UPDATE gateway.sessions s SET revoked_at = coalesce(s.revoked_at, now())
FROM gateway.refresh_tokens rt
WHERE rt.token_hash = $1 AND s.id = rt.session_id
RETURNING s.id::text
"""


async def start_session(
    pool: asyncpg.Pool,
    settings: Settings,
    *,
    account_id: str,
    kind: ClientKind,
    method: str,
) -> IssuedSession:
    """Start a session of `account_id` signed in by `method` (ESIA | PASSWORD | DEV_TOKEN)."""
    if method not in SIGN_IN_METHODS:
        raise ValueError(f"unknown sign-in method {method!r}")
    kind = ClientKind(kind)
    auth = settings.auth
    await keys_ready(settings, pool)
    refresh_token = new_refresh_token() if kind is ClientKind.API else None
    ttl = auth.refresh_ttl_seconds if kind is ClientKind.API else auth.session_ttl_seconds
    row = await pool.fetchrow(
        _START,
        account_id,
        kind.value,
        method,
        float(ttl),
        None if refresh_token is None else hash_refresh_token(refresh_token),
    )
    session_id: str = row["id"]
    cookie = None
    if kind is ClientKind.BROWSER:
        cookie = issue_session_cookie(
            settings, account_id=account_id, session_id=session_id, expires_at=row["expires_at"]
        )
    return _issued(settings, session_id, account_id, kind, refresh_token, cookie)


async def refresh_session(pool: asyncpg.Pool, settings: Settings, token: str) -> IssuedSession:
    """Rotate a refresh token: a new access and refresh token of the same session.

    Raises RefreshTokenInvalidError; a token used before revokes its session (replay).
    """
    if not token or len(token) > MAX_REFRESH_TOKEN_LENGTH:
        raise RefreshTokenInvalidError()
    presented = hash_refresh_token(token)
    successor = new_refresh_token()
    await keys_ready(settings, pool)
    row = await pool.fetchrow(_ROTATE, presented, hash_refresh_token(successor))
    if row is None:
        failed = await pool.fetchrow(_REVOKE_REPLAYED, presented)
        if failed is None:
            raise RefreshTokenInvalidError()
        raise RefreshTokenInvalidError(replayed=failed["used"], account_id=failed["account_id"])
    return _issued(
        settings, row["session_id"], row["account_id"], ClientKind(row["kind"]), successor, None
    )


async def revoke_session(pool: asyncpg.Pool, session_id: str) -> str | None:
    """Revoke a session (idempotent); the account id, or None for an unknown session."""
    account_id: str | None = await pool.fetchval(_REVOKE, session_id)
    return account_id


def cookie_session_id(settings: Settings, cookie: str | None) -> str | None:
    """The session a session cookie names (expired accepted); None for a cookie that is
    not ours."""
    if not cookie:
        return None
    try:
        claims = verify_token(settings, cookie, typ=SESSION, check_expiry=False)
    except ApiError:
        return None
    return claims.session_id


async def end_replaced_session(pool: asyncpg.Pool, settings: Settings, cookie: str | None) -> None:
    """A new sign-in in a browser ends the session of the cookie it still had, if any."""
    await learn_token_keys(settings, pool, cookie)
    session_id = cookie_session_id(settings, cookie)
    if session_id is not None:
        await revoke_session(pool, session_id)


async def revoke_by_refresh_token(pool: asyncpg.Pool, token: str) -> str | None:
    """Revoke the session a refresh token belongs to (used or not); its id or None."""
    if not token or len(token) > MAX_REFRESH_TOKEN_LENGTH:
        return None
    session_id: str | None = await pool.fetchval(_REVOKE_BY_REFRESH, hash_refresh_token(token))
    return session_id


async def issue_dev_token(pool: asyncpg.Pool, settings: Settings, account_id: str) -> str:
    """An access token of a new API session (method DEV_TOKEN): revocable like any other."""
    issued = await start_session(
        pool, settings, account_id=account_id, kind=ClientKind.API, method="DEV_TOKEN"
    )
    return issued.access_token


def signed_in_response(
    settings: Settings, issued: IssuedSession, *, return_to: str | None
) -> Response:
    """The answer to a successful sign-in.

    BROWSER: 303 to `safe_return_to(return_to)` setting the session cookie (HttpOnly,
    SameSite=Lax, Path=/, Secure when `settings.auth.cookie_secure`, Max-Age = session
    lifetime). API: 200 JSON token response (RFC 6749 §5.1), never cached.
    """
    if issued.kind is ClientKind.BROWSER:
        response: Response = RedirectResponse(safe_return_to(return_to), status_code=303)
        set_session_cookie(response, settings, issued.cookie_value or "")
        response.headers["Cache-Control"] = "no-store"
        return response
    return token_response(issued)


# A token answer opened as a page (an API sign-in in a browser tab or popup) gets an
# opaque origin: a script of the gateway's own pages (an injected one) cannot read the
# tokens out of it and run free queries around the cookie's registered-documents-only
# mode. Programs reading the JSON are not affected (CSP applies to documents).
TOKEN_PAGE_POLICY = "sandbox; default-src 'none'"


def token_response(issued: IssuedSession) -> Response:
    """200 JSON {access_token, token_type, expires_in, refresh_token}; no-store, and
    sandboxed when a browser renders it (`TOKEN_PAGE_POLICY`)."""
    body = {
        "access_token": issued.access_token,
        "token_type": "Bearer",
        "expires_in": issued.expires_in,
        "refresh_token": issued.refresh_token,
    }
    return Response(
        orjson.dumps(body),
        media_type="application/json",
        headers={
            "Cache-Control": "no-store",
            "Pragma": "no-cache",
            "Content-Security-Policy": TOKEN_PAGE_POLICY,
            "X-Content-Type-Options": "nosniff",
        },
    )


def set_session_cookie(response: Response, settings: Settings, value: str) -> None:
    """Set the session cookie with the gateway's flags."""
    response.set_cookie(
        settings.auth.session_cookie,
        value,
        max_age=settings.auth.session_ttl_seconds,
        path="/",
        secure=settings.auth.cookie_secure,
        httponly=True,
        samesite="lax",
    )


def clear_session_cookie(response: Response, settings: Settings) -> None:
    """Remove the session cookie (same name, path and flags as when it was set)."""
    response.delete_cookie(
        settings.auth.session_cookie,
        path="/",
        secure=settings.auth.cookie_secure,
        httponly=True,
        samesite="lax",
    )


def safe_return_to(value: str | None) -> str:
    """`value` when it is a same-site relative path ("/...", not "//..."), else "/" (the landing
    page of the viewer's role)."""
    if not value or len(value) > MAX_RETURN_TO_LENGTH:
        return DEFAULT_RETURN_TO
    if not value.startswith("/") or value.startswith("//"):
        return DEFAULT_RETURN_TO
    # Browsers read "\" as "/" ("/\evil.example") and drop tabs/newlines inside URLs.
    if "\\" in value or any(ord(char) < 0x20 or ord(char) == 0x7F for char in value):
        return DEFAULT_RETURN_TO
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return DEFAULT_RETURN_TO
    return value


def new_refresh_token() -> str:
    """A fresh refresh token: 256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)


def hash_refresh_token(token: str) -> bytes:
    """How a refresh token is stored: its SHA-256 (the token itself is never stored)."""
    return hashlib.sha256(token.encode()).digest()


def _issued(
    settings: Settings,
    session_id: str,
    account_id: str,
    kind: ClientKind,
    refresh_token: str | None,
    cookie_value: str | None,
) -> IssuedSession:
    return IssuedSession(
        session_id=session_id,
        account_id=account_id,
        kind=kind,
        access_token=issue_token(settings, account_id=account_id, session_id=session_id),
        expires_in=settings.jwt_ttl_seconds,
        refresh_token=refresh_token,
        cookie_value=cookie_value,
    )

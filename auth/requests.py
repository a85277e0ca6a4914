"""Who is asking: the viewer of an HTTP request (bearer token or, later, a cookie session).

A bad or expired bearer token → 401 with `WWW-Authenticate: Bearer error="invalid_token"`
(codes UNAUTHENTICATED / TOKEN_EXPIRED); no credentials at all → an anonymous viewer.
A verified token is remembered until it expires (`VerifiedTokens`); the viewer's scope is
loaded fresh on every request.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Final

import asyncpg
from starlette.requests import Request

from auth.accounts import load_viewer
from auth.tokens import TokenClaims, verify_token
from auth.viewer import Viewer
from gateway.errors import ApiError, ErrorCode, HttpError, UnauthenticatedError
from gateway.settings import Settings

VERIFIED_TOKENS: Final = 4096


class VerifiedTokens:
    """Bearer tokens whose signature and claims were verified, until they expire.

    A client sends the same token with every request; checking its HMAC signature and
    claims again each time is the same answer at a cost. A token found here is accepted
    only while its `exp` is still ahead (the one claim that changes its validity with
    time); otherwise, and for any token not seen, `verify_token` decides, exactly as
    without the cache. Bounded, least recently verified first out.
    """

    def __init__(self, settings: Settings, size: int = VERIFIED_TOKENS) -> None:
        self._settings = settings
        self._size = size
        self._claims: OrderedDict[str, TokenClaims] = OrderedDict()

    def verify(self, token: str) -> TokenClaims:
        """The claims of a valid token; TOKEN_EXPIRED or UNAUTHENTICATED otherwise."""
        claims = self._claims.get(token)
        if claims is not None and claims.expires_at > time.time():
            return claims
        claims = verify_token(self._settings, token)
        self._claims[token] = claims
        if len(self._claims) > self._size:
            self._claims.popitem(last=False)
        return claims


async def authenticate_request(
    request: Request,
    settings: Settings,
    pool: asyncpg.Pool,
    tokens: VerifiedTokens | None = None,
) -> Viewer | None:
    """The viewer of an HTTP request; None when it carries no credentials."""
    return await authenticate(request.headers.get("authorization"), settings, pool, tokens)


async def authenticate(
    authorization: str | None,
    settings: Settings,
    pool: asyncpg.Pool,
    tokens: VerifiedTokens | None = None,
) -> Viewer | None:
    """The viewer of a bearer token; None without one; 401 HttpError for a bad one."""
    if authorization is None:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    try:
        if scheme.lower() != "bearer" or not token.strip():
            raise UnauthenticatedError("Ожидается заголовок Authorization: Bearer <токен>.")
        if tokens is None:
            claims = verify_token(settings, token.strip())
        else:
            claims = tokens.verify(token.strip())
        viewer = await load_viewer(pool, claims.account_id)
        if viewer is None:
            raise UnauthenticatedError("Учётная запись не найдена.")
    except ApiError as error:
        raise HttpError(
            401,
            error.code,
            error.message,
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        ) from None
    except asyncpg.QueryCanceledError:
        raise HttpError(503, ErrorCode.TIMEOUT) from None
    return viewer

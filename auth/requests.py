"""Who is asking: the viewer of an HTTP request (a bearer token or a browser session cookie).

- `Authorization: Bearer <access token>` (API clients) always wins; the cookie is then
  ignored. A bad token → 401 UNAUTHENTICATED, an expired one → 401 TOKEN_EXPIRED, a
  token of a revoked or ended session → 401 SESSION_REVOKED (all with
  `WWW-Authenticate: Bearer error="invalid_token"`).
- The session cookie (browsers) authenticates only `POST /graphql`, and only after the
  CSRF check (`check_csrf`, require_json=True):
    * Content-Type is exactly `application/json` (a cross-site HTML form or a "simple"
      fetch can only send form/multipart/text/plain), and
    * the `Origin` header, or when there is none the origin of `Referer`, is one of
      `settings.auth.allowed_origins`;
  otherwise 403 CSRF_REJECTED and nothing is executed. A `GET /graphql` carrying only
  the cookie is anonymous: the cookie is not read (a GET can be triggered cross-site by
  a link or an <img>; GraphiQL and API clients use POST). A bad/expired/revoked cookie →
  401 with the same codes, and the response clears the cookie.
- No credentials at all → an anonymous viewer (None).
- A machine client's token (`typ` "client", from POST /oauth/token, auth.signin.client_routes)
  is a bearer token too: its viewer is the client's role, schools and scopes
  (auth.store.clients.load_client_viewer, one statement); a revoked client → 401
  CLIENT_REVOKED on the token's next request.

A verified token is remembered until it expires (`VerifiedTokens`); the session's state
and the viewer's scope are loaded fresh on every request, in one statement. A token
naming a signing key this process does not know yet makes it reload the shared key set
first (auth.signing_keys.learn_token_keys, rate-limited).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Final
from urllib.parse import urlsplit

import asyncpg
from starlette.requests import Request
from starlette.responses import Response

from auth.signing_keys import learn_token_keys
from auth.store.accounts import load_viewer
from auth.store.clients import load_client_viewer
from auth.store.sessions import clear_session_cookie
from auth.tokens import ACCESS, BEARER, CLIENT, SESSION, TokenClaims, TokenType, verify_token
from auth.viewer import Viewer
from gateway.core.bodies import media_type
from gateway.core.errors import ApiError, ErrorCode, HttpError, UnauthenticatedError
from gateway.core.outage import statement_timeout_as_503
from gateway.core.settings import Settings

VERIFIED_TOKENS: Final = 4096
JSON_MEDIA_TYPE: Final = "application/json"
_BEARER_CHALLENGE: Final = {"WWW-Authenticate": 'Bearer error="invalid_token"'}


class VerifiedTokens:
    """Tokens whose signature and claims were verified, until they expire.

    A client sends the same token with every request; checking its HMAC signature and
    claims again each time is the same answer at a cost. A token found here is accepted
    only while its `exp` is still ahead (the one claim that changes its validity with
    time); otherwise, and for any token not seen, `verify_token` decides, exactly as
    without the cache. Entries are per token kind (access / session cookie). Bounded,
    least recently verified first out. Revocation is not cached: it is read per request.
    """

    def __init__(self, settings: Settings, size: int = VERIFIED_TOKENS) -> None:
        self._settings = settings
        self._size = size
        self._claims: OrderedDict[tuple[TokenType | tuple[TokenType, ...], str], TokenClaims] = (
            OrderedDict()
        )

    def verify(self, token: str, typ: TokenType | tuple[TokenType, ...] = ACCESS) -> TokenClaims:
        """The claims of a valid token; TOKEN_EXPIRED or UNAUTHENTICATED otherwise."""
        key = (typ, token)
        claims = self._claims.get(key)
        if (
            claims is not None
            and claims.expires_at > time.time()
            and self._settings.signing_keys.keys.accepts(claims.key_id)
        ):
            return claims
        claims = verify_token(self._settings, token, typ=typ)
        self._claims[key] = claims
        if len(self._claims) > self._size:
            self._claims.popitem(last=False)
        return claims


async def authenticate_request(
    request: Request,
    settings: Settings,
    pool: asyncpg.Pool,
    tokens: VerifiedTokens | None = None,
) -> Viewer | None:
    """The viewer of a GraphQL HTTP request; None when it carries no usable credentials."""
    authorization = request.headers.get("authorization")
    if authorization is not None:
        return await authenticate(authorization, settings, pool, tokens)
    cookie = request.cookies.get(settings.auth.session_cookie)
    if not cookie or request.method != "POST":
        return None
    check_csrf(request, settings, require_json=True)
    return await authenticate_cookie(cookie, settings, pool, tokens)


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
        claims = await _verify_learning(settings, pool, tokens, token.strip(), BEARER)
        if claims.kind == CLIENT:
            return await _client_viewer(pool, claims)
        return await _session_viewer(pool, claims)
    except ApiError as error:
        raise HttpError(401, error.code, error.message, headers=_BEARER_CHALLENGE) from None


async def authenticate_cookie(
    cookie: str,
    settings: Settings,
    pool: asyncpg.Pool,
    tokens: VerifiedTokens | None = None,
) -> Viewer:
    """The viewer of a session cookie (CSRF already checked); 401 HttpError for a bad one."""
    try:
        claims = await _verify_learning(settings, pool, tokens, cookie, SESSION)
        return await _session_viewer(pool, claims)
    except ApiError as error:
        headers = {"Set-Cookie": cleared_cookie_header(settings)}
        raise HttpError(401, error.code, error.message, headers=headers) from None


def credentials_expire_at(
    request: Request, settings: Settings, tokens: VerifiedTokens | None = None
) -> float | None:
    """When the credentials `authenticate_request` accepted stop being valid (Unix time):
    the bearer token's expiry, else the session cookie's; None without credentials.
    Call it after `authenticate_request` succeeded (the token is verified and cached)."""
    claims = credential_claims(request, settings, tokens)
    return None if claims is None else float(claims.expires_at)


def credential_claims(
    request: Request, settings: Settings, tokens: VerifiedTokens | None = None
) -> TokenClaims | None:
    """The claims of the token `authenticate_request` accepted: the bearer token's, else
    the session cookie's (a cookie is a token too); None without credentials. Streams
    keep its expiry and its signing key (`key_id`: they end once the key is retired)."""
    authorization = request.headers.get("authorization")
    if authorization is not None:
        token = authorization.strip().partition(" ")[2].strip()
        return _verify(settings, tokens, token, BEARER)
    cookie = request.cookies.get(settings.auth.session_cookie)
    if not cookie:
        return None
    return _verify(settings, tokens, cookie, SESSION)


def check_csrf(request: Request, settings: Settings, *, require_json: bool) -> None:
    """403 CSRF_REJECTED unless the request comes from an allowed origin (see module doc)."""
    if require_json and media_type(request.headers.get("content-type")) != JSON_MEDIA_TYPE:
        raise HttpError(403, ErrorCode.CSRF_REJECTED)
    if request_origin(request) not in _allowed(settings):
        raise HttpError(403, ErrorCode.CSRF_REJECTED)


def request_origin(request: Request) -> str | None:
    """The `Origin` header, else the origin of `Referer`, lower-cased; None without both."""
    origin = request.headers.get("origin")
    if origin is not None:
        return origin.strip().lower()
    referer = request.headers.get("referer")
    if not referer:
        return None
    parts = urlsplit(referer.strip())
    if not parts.scheme or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}".lower()


def cleared_cookie_header(settings: Settings) -> str:
    """A `Set-Cookie` value that removes the session cookie."""
    response = Response()
    clear_session_cookie(response, settings)
    return response.headers["set-cookie"]


def _allowed(settings: Settings) -> frozenset[str]:
    return frozenset(origin.lower() for origin in settings.auth.allowed_origins)


def _verify(
    settings: Settings,
    tokens: VerifiedTokens | None,
    token: str,
    typ: TokenType | tuple[TokenType, ...],
) -> TokenClaims:
    if tokens is None:
        return verify_token(settings, token, typ=typ)
    return tokens.verify(token, typ)


async def _verify_learning(
    settings: Settings,
    pool: asyncpg.Pool,
    tokens: VerifiedTokens | None,
    token: str,
    typ: TokenType | tuple[TokenType, ...],
) -> TokenClaims:
    """`_verify`, once more after reloading the key set when the token was refused for a
    kid this process did not know (nothing extra for the tokens it knows)."""
    try:
        return _verify(settings, tokens, token, typ)
    except UnauthenticatedError:
        if not await learn_token_keys(settings, pool, token):
            raise
    return _verify(settings, tokens, token, typ)


async def _session_viewer(pool: asyncpg.Pool, claims: TokenClaims) -> Viewer:
    with statement_timeout_as_503():
        viewer = await load_viewer(pool, claims.account_id, session_id=claims.session_id)
    if viewer is None:
        raise UnauthenticatedError("Учётная запись или сеанс не найдены.")
    return viewer


async def _client_viewer(pool: asyncpg.Pool, claims: TokenClaims) -> Viewer:
    with statement_timeout_as_503():
        viewer = await load_client_viewer(pool, claims.account_id, claims.scopes)
    if viewer is None:
        raise UnauthenticatedError("Клиент не найден.")
    return viewer

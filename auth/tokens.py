"""Signed tokens of the gateway: HS256 JWTs via joserfc (the successor of authlib's JOSE).

Two kinds, told apart by the `typ` claim so one can never stand in for the other:

- access tokens (`typ` "access"): `Authorization: Bearer` of API clients, short-lived
  (`settings.auth.access_ttl_seconds`);
- session cookies (`typ` "session"): the value of the browser's session cookie, valid
  until the session expires.

Both name an account (`sub`) and a session (`sid`); neither carries a scope. The session's
revocation and the viewer's scope are read from the database on every request
(auth.store.accounts.load_viewer), so a token never outlives a logout or a removed
parent-child link.

A third kind, client tokens (`typ` "client"), is issued by the client-credentials grant
(auth.signin.client_routes) to machine clients: `sub` is the client id, `scope` the granted
OAuth scopes (space-separated), no `sid`; short-lived (`settings.client_token_ttl_seconds`).
The client's revocation and registration are read per request too (auth.store.clients).
A bearer header carries an access token or a client token (`BEARER`).

Every token names its signing key in the JWT header (`kid`, gateway.core.signing_keys):
it is signed with the current key of `settings.signing_keys` and verified with the key
its kid names while that key is current or previous; a token without a kid (issued
before kids existed) is key "0"'s. A retired key's signature only tells that a token has
expired (TOKEN_EXPIRED, so that a client refreshes as it would have); an unexpired token
of a retired or unknown key is UNAUTHENTICATED. Device cookies and change-feed cursors
are keyed by the secret itself, not by these keys (docs/deployment.md says why).
"""

from __future__ import annotations

import functools
import time
import uuid
from dataclasses import dataclass
from typing import Final, Literal

from joserfc import jws, jwt
from joserfc.errors import ExpiredTokenError, JoseError
from joserfc.jwk import OctKey

from gateway.core.errors import TokenExpiredError, UnauthenticatedError
from gateway.core.settings import Settings
from gateway.core.signing_keys import LEGACY_KID, KeyState, derive_key, is_kid

ISSUER = "school-gateway"
AUDIENCE = "school-gateway"
ALGORITHM = "HS256"
# Tokens are short; anything longer is not ours and is refused before decoding.
MAX_TOKEN_LENGTH = 4096
_ALGORITHMS = (ALGORITHM,)

TokenType = Literal["access", "session", "client"]
ACCESS: Final[TokenType] = "access"
SESSION: Final[TokenType] = "session"
CLIENT: Final[TokenType] = "client"
# What an `Authorization: Bearer` header may carry.
BEARER: Final[tuple[TokenType, ...]] = (ACCESS, CLIENT)
_INVALID = "Недействительный токен доступа."


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """What a verified token tells: the account, its session and when the token expires.

    For a client token (`kind` CLIENT): `account_id` is the client id, `session_id` is
    empty and `scopes` are the granted scopes.
    """

    account_id: str
    session_id: str
    expires_at: int
    token_id: str
    kind: TokenType = ACCESS
    scopes: frozenset[str] = frozenset()
    key_id: str = LEGACY_KID


def issue_token(settings: Settings, *, account_id: str, session_id: str) -> str:
    """An access token of `session_id`, valid for `settings.auth.access_ttl_seconds`."""
    now = int(time.time())
    return _sign(settings, ACCESS, account_id, session_id, now + settings.jwt_ttl_seconds)


def issue_session_cookie(
    settings: Settings, *, account_id: str, session_id: str, expires_at: int
) -> str:
    """The browser cookie value of `session_id`, valid until `expires_at` (the session's end)."""
    return _sign(settings, SESSION, account_id, session_id, expires_at)


def issue_client_token(
    settings: Settings, *, client_id: str, scopes: frozenset[str]
) -> tuple[str, int]:
    """A client token for `client_id` with `scopes`, and its lifetime in seconds."""
    now = int(time.time())
    ttl = settings.client_token_ttl_seconds
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "typ": CLIENT,
        "sub": client_id,
        "scope": " ".join(sorted(scopes)),
        "iat": now,
        "exp": now + ttl,
        "jti": uuid.uuid4().hex,
    }
    return _encode(settings, claims), ttl


def verify_token(
    settings: Settings,
    token: str,
    *,
    typ: TokenType | tuple[TokenType, ...] = ACCESS,
    check_expiry: bool = True,
) -> TokenClaims:
    """The claims of a valid token of kind `typ` (or of one of the kinds of a tuple, e.g.
    BEARER); TOKEN_EXPIRED or UNAUTHENTICATED otherwise.

    `check_expiry=False` accepts an expired (but otherwise valid) token: logout revokes
    the session of a token that has just run out.
    """
    if not token or len(token) > MAX_TOKEN_LENGTH:
        raise UnauthenticatedError(_INVALID)
    # Without the expiry check, a token up to the refresh lifetime past its `exp` passes.
    leeway = 0 if check_expiry else settings.auth.refresh_ttl_seconds
    kinds = typ if isinstance(typ, tuple) else (typ,)
    kid = token_kid(token)
    state = None if kid is None else settings.signing_keys.keys.state_of(kid)
    if kid is None or state is None:
        raise UnauthenticatedError(_INVALID)
    try:
        decoded = jwt.decode(token, _key(settings.jwt_secret, kid), algorithms=_ALGORITHMS)
        kind = decoded.claims.get("typ")
        if kind not in kinds:
            raise UnauthenticatedError(_INVALID)
        _claims_registry(kind, leeway).validate(decoded.claims)
    except ExpiredTokenError:
        raise TokenExpiredError() from None
    except (JoseError, ValueError):
        # ValueError covers malformed base64/JSON in a token that is not a JWT at all.
        raise UnauthenticatedError(_INVALID) from None
    if state is KeyState.RETIRED:  # only an expired token of a retired key is told so
        raise UnauthenticatedError(_INVALID)
    claims = decoded.claims
    if kind == CLIENT:
        return _client_claims(claims, kid)
    account_id, session_id = claims["sub"], claims["sid"]
    if not (is_uuid(account_id) and is_uuid(session_id)):
        raise UnauthenticatedError(_INVALID)
    return TokenClaims(
        account_id=account_id,
        session_id=session_id,
        expires_at=int(claims["exp"]),
        token_id=str(claims.get("jti", "")),
        key_id=kid,
    )


def token_kid(token: str) -> str | None:
    """The key id in a token's header ("0" when it has none); None when the token is not
    a JWT or its kid is nothing the gateway could have made."""
    if len(token) > MAX_TOKEN_LENGTH:
        return None
    try:
        header = jws.extract_compact(token.encode()).headers()
    except (JoseError, ValueError):
        return None
    kid = header.get("kid", LEGACY_KID)
    return kid if is_kid(kid) else None


def _client_claims(claims: dict[str, object], kid: str) -> TokenClaims:
    client_id, scope = claims["sub"], claims.get("scope", "")
    if not (is_uuid(client_id) and isinstance(scope, str)):
        raise UnauthenticatedError(_INVALID)
    return TokenClaims(
        account_id=str(client_id),
        session_id="",
        expires_at=int(str(claims["exp"])),
        token_id=str(claims.get("jti", "")),
        kind=CLIENT,
        scopes=frozenset(scope.split()),
        key_id=kid,
    )


def _sign(
    settings: Settings, typ: TokenType, account_id: str, session_id: str, expires_at: int
) -> str:
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "typ": typ,
        "sub": account_id,
        "sid": session_id,
        "iat": int(time.time()),
        "exp": expires_at,
        "jti": uuid.uuid4().hex,
    }
    return _encode(settings, claims)


def _encode(settings: Settings, claims: dict[str, object]) -> str:
    """`claims` signed with the current key, its kid in the header."""
    kid = settings.signing_keys.keys.signing_kid()
    header = {"alg": ALGORITHM, "kid": kid}
    return jwt.encode(header, claims, _key(settings.jwt_secret, kid), algorithms=_ALGORITHMS)


@functools.lru_cache(maxsize=64)
def _key(secret: str, kid: str) -> OctKey:
    return OctKey.import_key(derive_key(secret, kid))


def _claims_registry(typ: TokenType, leeway: int) -> jwt.JWTClaimsRegistry:
    return jwt.JWTClaimsRegistry(
        leeway=leeway,
        iss={"essential": True, "value": ISSUER},
        aud={"essential": True, "value": AUDIENCE},
        typ={"essential": True, "value": typ},
        sub={"essential": True},
        sid={"essential": typ != CLIENT},  # client tokens have no session
        exp={"essential": True},
        iat={"essential": True},
    )


def is_uuid(value: object) -> bool:
    """A string holding a UUID (the ids in our tokens: accounts, sessions, clients)."""
    if not isinstance(value, str):
        return False
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True

"""Bearer tokens: HS256 JWTs signed by the gateway (joserfc, the successor of authlib's JOSE).

A token names an account (`sub`); it carries no scope. The viewer's scope is read from
the registries on every request (auth.accounts.load_viewer), so a token never outlives a
removed parent-child link.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from joserfc import jwt
from joserfc.errors import ExpiredTokenError, JoseError
from joserfc.jwk import OctKey

from gateway.errors import TokenExpiredError, UnauthenticatedError
from gateway.settings import Settings

ISSUER = "school-gateway"
AUDIENCE = "school-gateway"
ALGORITHM = "HS256"
# Tokens are short; anything longer is not ours and is refused before decoding.
MAX_TOKEN_LENGTH = 4096
_ALGORITHMS = (ALGORITHM,)


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """What a verified token tells: the account and when the token expires."""

    account_id: str
    expires_at: int
    token_id: str


def issue_token(settings: Settings, *, account_id: str) -> str:
    """Sign a bearer token for `account_id`, valid for `settings.jwt_ttl_seconds`."""
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": account_id,
        "iat": now,
        "exp": now + settings.jwt_ttl_seconds,
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode({"alg": ALGORITHM}, claims, _key(settings), algorithms=_ALGORITHMS)


def verify_token(settings: Settings, token: str) -> TokenClaims:
    """The claims of a valid token; TOKEN_EXPIRED or UNAUTHENTICATED otherwise."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        raise UnauthenticatedError("Недействительный токен доступа.")
    try:
        decoded = jwt.decode(token, _key(settings), algorithms=_ALGORITHMS)
        _claims_registry().validate(decoded.claims)
    except ExpiredTokenError:
        raise TokenExpiredError() from None
    except (JoseError, ValueError):
        # ValueError covers malformed base64/JSON in a token that is not a JWT at all.
        raise UnauthenticatedError("Недействительный токен доступа.") from None
    claims = decoded.claims
    account_id = claims["sub"]
    if not _is_uuid(account_id):
        raise UnauthenticatedError("Недействительный токен доступа.")
    return TokenClaims(
        account_id=account_id,
        expires_at=int(claims["exp"]),
        token_id=str(claims.get("jti", "")),
    )


def _key(settings: Settings) -> OctKey:
    return OctKey.import_key(settings.jwt_secret)


def _claims_registry() -> jwt.JWTClaimsRegistry:
    return jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": ISSUER},
        aud={"essential": True, "value": AUDIENCE},
        sub={"essential": True},
        exp={"essential": True},
        iat={"essential": True},
    )


def _is_uuid(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True

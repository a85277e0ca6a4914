"""The verified-token cache answers exactly as `verify_token` does, expiry included."""

from __future__ import annotations

import time

import pytest

from auth.requests import VerifiedTokens
from gateway.core.errors import ApiError
from gateway.core.settings import Settings
from tests.support.tokens import sign_token, token_claims


def _code(tokens: VerifiedTokens, token: str) -> str:
    with pytest.raises(ApiError) as caught:
        tokens.verify(token)
    return str((caught.value.extensions or {})["code"])


def test_a_valid_token_is_verified_once_then_remembered(settings: Settings) -> None:
    tokens = VerifiedTokens(settings)
    token = sign_token(settings, token_claims())
    first = tokens.verify(token)
    assert tokens.verify(token) is first


def test_a_remembered_token_expires_on_time(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    tokens = VerifiedTokens(settings)
    now = int(time.time())
    token = sign_token(settings, token_claims(iat=now - 10, exp=now + 5))
    assert tokens.verify(token).expires_at == now + 5
    # The clock of the cache and of the token library move together past `exp`.
    monkeypatch.setattr(time, "time", lambda: now + 5.5)
    assert _code(tokens, token) == "TOKEN_EXPIRED"


def test_bad_tokens_are_never_remembered(settings: Settings) -> None:
    tokens = VerifiedTokens(settings)
    forged = sign_token(settings, token_claims(), secret="another-secret-another-secret-0123456789")
    for _ in range(2):
        assert _code(tokens, forged) == "UNAUTHENTICATED"
    past = int(time.time()) - 3600
    expired = sign_token(settings, token_claims(iat=past - 60, exp=past))
    assert _code(tokens, expired) == "TOKEN_EXPIRED"


def test_remembered_tokens_are_per_kind(settings: Settings) -> None:
    tokens = VerifiedTokens(settings)
    cookie = sign_token(settings, token_claims(typ="session"))
    assert tokens.verify(cookie, "session").session_id
    assert _code(tokens, cookie) == "UNAUTHENTICATED"  # never accepted as an access token
    access = sign_token(settings, token_claims())
    assert tokens.verify(access).session_id
    with pytest.raises(ApiError):
        tokens.verify(access, "session")


def test_the_cache_is_bounded(settings: Settings) -> None:
    tokens = VerifiedTokens(settings, size=2)
    issued = [sign_token(settings, token_claims()) for _ in range(3)]
    claims = [tokens.verify(token) for token in issued]
    assert tokens.verify(issued[2]) is claims[2]
    assert tokens.verify(issued[0]) is not claims[0]  # evicted, verified again
    assert tokens.verify(issued[0]) == claims[0]

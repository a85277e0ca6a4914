"""Device cookies (OWASP "Slow Down Online Guessing Attacks with Device Cookies").

A browser (or any client that keeps cookies) that signed in successfully with a
school login's password gets a cookie for that login: it names the login and a random
nonce and is signed with HMAC-SHA256 under the gateway's JWT secret. While the login is
locked for untrusted clients, an attempt carrying a valid cookie for *that* login is
still admitted; its failures are counted against the cookie's nonce (auth.store.throttle,
`device:<nonce>`), which is locked out on its own — never the login for others.

- Name: `sg_device_<24 hex>`, the hex an HMAC of the (case-folded) login: one cookie
  per login, so a shared computer keeps one for each student who signed in on it, and
  the login is not readable from the name.
- Value: `d1.<login, base64url>.<nonce>.<issued at, unix seconds>.<signature>`; the
  signature covers everything before it. A cookie whose signature does not verify, that
  names another login, or that is older than `device_cookie_ttl_seconds`, is ignored
  (the attempt is untrusted).
- Flags: HttpOnly, SameSite=Strict, Path=/auth/login (sent only to the sign-in form),
  Secure like the session cookie, Max-Age = `device_cookie_ttl_seconds`.

Every successful sign-in issues a fresh cookie (a new nonce and time).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from starlette.responses import Response

from gateway.core.settings import Settings

COOKIE_PREFIX: Final = "sg_device_"
COOKIE_PATH: Final = "/auth/login"
VERSION: Final = "d1"
MAX_COOKIE_LENGTH: Final = 512
_NAME_CONTEXT: Final = b"school-gateway device cookie name\x00"
_VALUE_CONTEXT: Final = b"school-gateway device cookie\x00"
_CLOCK_SKEW_SECONDS: Final = 60


@dataclass(frozen=True, slots=True)
class DeviceCookie:
    """A cookie to set: its name, value and the nonce that keys its failure counter."""

    name: str
    value: str
    nonce: str


def normalized_login(login: str) -> str:
    """The login as the throttle counts it: stripped and case-folded."""
    return login.strip().casefold()


def cookie_name(settings: Settings, login: str) -> str:
    """The name of the device cookie for `login`."""
    digest = _mac(settings, _NAME_CONTEXT + normalized_login(login).encode())
    return COOKIE_PREFIX + digest.hex()[:24]


def issue_device_cookie(settings: Settings, login: str, *, now: int | None = None) -> DeviceCookie:
    """A fresh cookie for `login`: a new random nonce, signed."""
    nonce = secrets.token_urlsafe(16)
    issued = int(time.time()) if now is None else now
    login_part = _b64(normalized_login(login).encode())
    payload = f"{VERSION}.{login_part}.{nonce}.{issued}"
    value = f"{payload}.{_signature(settings, payload)}"
    return DeviceCookie(cookie_name(settings, login), value, nonce)


def trusted_device(
    settings: Settings, cookies: Mapping[str, str], login: str, *, now: int | None = None
) -> str | None:
    """The nonce of a valid device cookie for `login` among `cookies`, else None."""
    value = cookies.get(cookie_name(settings, login), "")
    if not value or len(value) > MAX_COOKIE_LENGTH:
        return None
    parts = value.split(".")
    if len(parts) != 5 or parts[0] != VERSION:
        return None
    payload, signature = value.rsplit(".", 1)
    if not hmac.compare_digest(signature, _signature(settings, payload)):
        return None
    _, login_part, nonce, issued, _ = parts
    if _unb64(login_part) != normalized_login(login).encode():
        return None
    current = int(time.time()) if now is None else now
    if not issued.isdigit() or not _fresh(int(issued), current, settings):
        return None
    return nonce


def set_device_cookie(response: Response, settings: Settings, cookie: DeviceCookie) -> None:
    """Set `cookie` on `response` with the device cookie's flags."""
    response.set_cookie(
        cookie.name,
        cookie.value,
        max_age=settings.auth.device_cookie_ttl_seconds,
        path=COOKIE_PATH,
        secure=settings.auth.cookie_secure,
        httponly=True,
        samesite="strict",
    )


def _fresh(issued: int, now: int, settings: Settings) -> bool:
    return issued - _CLOCK_SKEW_SECONDS <= now < issued + settings.auth.device_cookie_ttl_seconds


def _mac(settings: Settings, message: bytes) -> bytes:
    return hmac.new(settings.jwt_secret.encode(), message, hashlib.sha256).digest()


def _signature(settings: Settings, payload: str) -> str:
    return _b64(_mac(settings, _VALUE_CONTEXT + payload.encode()))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes | None:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None

"""The ESIA (Госуслуги) adapter: an OAuth 2.0 / OpenID Connect client built on authlib.

ESIA follows the authorization-code flow with a few differences from plain OIDC, all
kept here:

* the client secret is a detached (GOST) signature of the request's parameters, made
  per request by an external signer: `SCHOOL_GATEWAY_ESIA_SIGNER_COMMAND` (text on
  stdin, base64url signature on stdout) or `SCHOOL_GATEWAY_ESIA_SIGNER_URL` (HTTP POST
  of the text, signature in the body). The development identity provider accepts a
  built-in HMAC signer instead (`DevSigner`), and only it does;
* every authorization and token request carries a `timestamp` ("yyyy.MM.dd HH:mm:ss Z")
  and a `state`; the token endpoint echoes its state back;
* the person's data comes from REST resources: `/rs/prns/{oid}` (names, birth date,
  SNILS, the `trusted` flag of a confirmed account) and `/rs/prns/{oid}/ctts`
  (contacts; a mobile phone counts only with `vrfStu == "VERIFIED"`).

The id_token's claims (iss, aud, exp, nonce) are always checked. Its signature is
verified with the development provider's JWKS; real ESIA signs with a GOST key that no
Python JOSE library verifies, so for real ESIA the gateway relies on the token having
come directly from the token endpoint over TLS (OpenID Connect Core 1.0 §3.1.3.7: "the
TLS server validation MAY be used to validate the issuer in place of checking the token
signature"). See docs/sign-in.md.

Nothing personal is logged: failures log a reason without identifiers.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import re
import shlex
import uuid
import warnings
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Protocol
from urllib.parse import urlencode, urlsplit

import authlib.deprecate  # noqa: F401  (installs authlib's warning filter first)
import httpx
from authlib.common.security import is_secure_transport
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from gateway.core import identifiers as snils_util
from gateway.core.auth_settings import DEV_IDP_PATH, AuthSettings
from gateway.core.errors import ErrorCode

with warnings.catch_warnings():
    # authlib 1.9 prefers the `httpx2` package and warns when it falls back to httpx,
    # the HTTP client this project uses (a supported fallback).
    warnings.filterwarnings(
        "ignore", message="The httpx module is deprecated", category=DeprecationWarning
    )
    from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuthError

log = logging.getLogger(__name__)

# Every ESIA endpoint, relative to settings.auth.esia_url (the development identity
# provider serves the same paths under /dev-idp).
AUTHORIZE_PATH = "/aas/oauth2/v2/ac"
TOKEN_PATH = "/aas/oauth2/v3/te"
PERSON_PATH = "/rs/prns/{oid}"
CONTACTS_PATH = "/rs/prns/{oid}/ctts"
JWKS_PATH = "/jwks"  # development provider only: real ESIA publishes no JWKS

# The development provider's signer key: it proves the signer wiring, nothing more.
DEV_SIGNER_KEY = b"school-gateway dev-idp client secret signer"
TIMESTAMP_FORMAT = "%Y.%m.%d %H:%M:%S %z"
ID_TOKEN_LEEWAY_SECONDS = 60
_PHONE_DIGITS = re.compile(r"\D")


class EsiaError(Exception):
    """A failed ESIA step: the outcome code and a reason for the log (no personal data)."""

    def __init__(self, code: ErrorCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True, slots=True)
class EsiaPerson:
    """The signed-in person as ESIA describes them."""

    oid: str
    last_name: str = field(repr=False)
    first_name: str = field(repr=False)
    patronymic: str = field(repr=False)
    # Personal data stays out of repr() (and so out of any log line or traceback).
    birth_date: date | None = field(repr=False)
    snils: str | None = field(repr=False)  # 11 digits; None only for an unconfirmed account
    mobile: str | None = field(repr=False)  # '+7XXXXXXXXXX', only a verified mobile
    trusted: bool = False

    @property
    def full_name(self) -> str:
        return " ".join(part for part in (self.last_name, self.first_name, self.patronymic) if part)


@dataclass(frozen=True, slots=True)
class EsiaEndpoints:
    """Absolute URLs of the provider's endpoints."""

    base: str

    @property
    def authorize(self) -> str:
        return self.base + AUTHORIZE_PATH

    @property
    def token(self) -> str:
        return self.base + TOKEN_PATH

    @property
    def jwks(self) -> str:
        return self.base + JWKS_PATH

    def person(self, oid: str) -> str:
        return self.base + PERSON_PATH.format(oid=oid)

    def contacts(self, oid: str) -> str:
        return self.base + CONTACTS_PATH.format(oid=oid)

    @property
    def issuer(self) -> str:
        """ESIA's `iss`: 'http://<host>/' whatever the scheme (the dev provider agrees)."""
        return f"http://{urlsplit(self.base).netloc}/"


# -- signers ------------------------------------------------------------------------------


class Signer(Protocol):
    async def sign(self, text: str) -> str:
        """The base64url detached signature of `text`."""
        ...


class CommandSigner:
    """Runs a command: the text on stdin, the base64url signature on stdout."""

    def __init__(self, command: str, timeout: float) -> None:
        self._argv = shlex.split(command)
        self._timeout = timeout

    async def sign(self, text: str) -> str:
        try:
            process = await asyncio.create_subprocess_exec(
                *self._argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
            )
        except OSError as error:
            raise EsiaError(
                ErrorCode.ESIA_UNAVAILABLE, f"signer command failed to start: {error.strerror}"
            ) from error
        try:
            async with asyncio.timeout(self._timeout):
                stdout, _ = await process.communicate(text.encode())
        except TimeoutError as error:
            process.kill()
            await process.wait()
            raise EsiaError(ErrorCode.ESIA_UNAVAILABLE, "signer command timed out") from error
        signature = stdout.decode(errors="replace").strip()
        if process.returncode != 0 or not signature:
            raise EsiaError(
                ErrorCode.ESIA_UNAVAILABLE,
                f"signer command failed (exit {process.returncode}, {len(signature)} chars)",
            )
        return signature


class UrlSigner:
    """POSTs the text (text/plain, UTF-8) to a signing service; the body is the signature."""

    def __init__(self, url: str, timeout: float) -> None:
        self._url = url
        self._timeout = timeout

    async def sign(self, text: str) -> str:
        try:
            async with httpx.AsyncClient(timeout=self._timeout) as client:
                response = await client.post(
                    self._url,
                    content=text.encode(),
                    headers={"Content-Type": "text/plain; charset=utf-8"},
                )
        except httpx.HTTPError as error:
            raise EsiaError(
                ErrorCode.ESIA_UNAVAILABLE, f"signer URL unreachable: {type(error).__name__}"
            ) from error
        signature = response.text.strip()
        if response.status_code != 200 or not signature:
            raise EsiaError(
                ErrorCode.ESIA_UNAVAILABLE, f"signer URL answered {response.status_code}"
            )
        return signature


class DevSigner:
    """HMAC-SHA256 with DEV_SIGNER_KEY: accepted by the development provider only."""

    async def sign(self, text: str) -> str:
        return dev_signature(text)


def dev_signature(text: str) -> str:
    digest = hmac.new(DEV_SIGNER_KEY, text.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def uses_dev_idp(auth: AuthSettings) -> bool:
    """The configured provider is the bundled development one (dev mode only)."""
    return auth.dev_idp and auth.esia_url == auth.public_url + DEV_IDP_PATH


def make_signer(auth: AuthSettings) -> Signer:
    """The configured signer; the built-in one only for the development provider."""
    if auth.esia_signer_command:
        return CommandSigner(auth.esia_signer_command, auth.esia_timeout_seconds)
    if auth.esia_signer_url:
        return UrlSigner(auth.esia_signer_url, auth.esia_timeout_seconds)
    if uses_dev_idp(auth):
        return DevSigner()
    raise EsiaError(ErrorCode.ESIA_NOT_CONFIGURED, "no client-secret signer configured")


def esia_timestamp(now: datetime | None = None) -> str:
    """'2026.11.28 18:05:00 +0000'."""
    return (now or datetime.now(UTC)).strftime(TIMESTAMP_FORMAT)


def secret_text(
    client_id: str, scope: str, timestamp: str, state: str, redirect_uri: str, code: str = ""
) -> str:
    """What the client secret signs (ESIA v2/ac and v3/te with client_certificate_hash)."""
    return client_id + scope + timestamp + state + redirect_uri + code


# -- the client ---------------------------------------------------------------------------


class EsiaClient:
    """One configured provider: builds authorization URLs and turns a code into a person."""

    def __init__(self, auth: AuthSettings, *, signer: Signer | None = None) -> None:
        if auth.esia_url is None:
            raise EsiaError(ErrorCode.ESIA_NOT_CONFIGURED, "SCHOOL_GATEWAY_ESIA_URL is not set")
        if not is_secure_transport(auth.esia_url):
            # The id_token is trusted for coming over TLS (see the module doc).
            raise EsiaError(ErrorCode.ESIA_NOT_CONFIGURED, "SCHOOL_GATEWAY_ESIA_URL must be https")
        self._auth = auth
        self._signer = signer or make_signer(auth)
        self.endpoints = EsiaEndpoints(auth.esia_url)
        self._dev = uses_dev_idp(auth)
        # PKCE where the provider supports it: the development provider requires it; ESIA's
        # method guide does not describe it, so real ESIA gets none.
        self._pkce = self._dev
        self._jwks: KeySet | None = None

    def _oauth(self) -> AsyncOAuth2Client:
        return AsyncOAuth2Client(
            client_id=self._auth.esia_client_id,
            scope=self._auth.esia_scope,
            redirect_uri=self._auth.redirect_uri,
            code_challenge_method="S256",
            token_endpoint_auth_method="none",  # the signed secret goes in the body
            timeout=self._auth.esia_timeout_seconds,
        )

    def _certificate_params(self) -> dict[str, str]:
        value = self._auth.esia_certificate_hash
        return {"client_certificate_hash": value} if value else {}

    async def authorization_url(self, *, state: str, nonce: str, code_verifier: str) -> str:
        """The provider's authorization URL (state, nonce, signed secret; PKCE S256 where
        supported)."""
        auth = self._auth
        timestamp = esia_timestamp()
        secret = await self._signer.sign(
            secret_text(auth.esia_client_id, auth.esia_scope, timestamp, state, auth.redirect_uri)
        )
        async with self._oauth() as client:
            url, _ = client.create_authorization_url(
                self.endpoints.authorize,
                state=state,
                code_verifier=code_verifier if self._pkce else None,
                nonce=nonce,
                client_secret=secret,
                timestamp=timestamp,
                access_type="online",
                **self._certificate_params(),
            )
        return str(url)

    async def sign_in(self, *, code: str, code_verifier: str, nonce: str) -> EsiaPerson:
        """Exchange the code, check the id_token, read the person and their contacts."""
        try:
            async with self._oauth() as client:
                token = await self._exchange(client, code, code_verifier)
                claims = await self._verify_id_token(client, token.get("id_token"), nonce)
                oid = _oid(claims)
                person = await _get_json(client, self.endpoints.person(oid))
                contacts = await _get_json(
                    client, self.endpoints.contacts(oid), params={"embed": "(elements)"}
                )
        except httpx.HTTPError as error:
            raise EsiaError(
                ErrorCode.ESIA_UNAVAILABLE, f"provider unreachable: {type(error).__name__}"
            ) from error
        return parse_person(oid, person, contacts)

    async def _exchange(
        self, client: AsyncOAuth2Client, code: str, code_verifier: str
    ) -> dict[str, Any]:
        auth = self._auth
        state = str(uuid.uuid4())
        timestamp = esia_timestamp()
        secret = await self._signer.sign(
            secret_text(
                auth.esia_client_id, auth.esia_scope, timestamp, state, auth.redirect_uri, code
            )
        )
        try:
            token: dict[str, Any] = await client.fetch_token(
                self.endpoints.token,
                body=urlencode({"state": state}),
                grant_type="authorization_code",
                code=code,
                client_secret=secret,
                scope=auth.esia_scope,
                timestamp=timestamp,
                token_type="Bearer",
                **self._certificate_params(),
                **({"code_verifier": code_verifier} if self._pkce else {}),
            )
        except OAuthError as error:
            raise EsiaError(
                ErrorCode.ESIA_DENIED, f"token endpoint refused: {error.error}"
            ) from error
        except ValueError as error:  # not JSON
            raise EsiaError(ErrorCode.ESIA_UNAVAILABLE, "token endpoint: bad response") from error
        echoed = token.get("state")
        if echoed is not None and echoed != state:
            raise EsiaError(ErrorCode.ESIA_STATE_MISMATCH, "token endpoint echoed another state")
        return token

    async def _verify_id_token(
        self, client: AsyncOAuth2Client, id_token: object, nonce: str
    ) -> dict[str, Any]:
        if not isinstance(id_token, str):
            raise EsiaError(ErrorCode.ESIA_UNAVAILABLE, "token response without id_token")
        if self._dev:
            claims = await self._verified_claims(client, id_token)
        else:
            claims = unverified_claims(id_token)  # came directly over TLS: see module doc
        check_id_token_claims(
            claims, issuer=self.endpoints.issuer, client_id=self._auth.esia_client_id, nonce=nonce
        )
        return claims

    async def _verified_claims(self, client: AsyncOAuth2Client, id_token: str) -> dict[str, Any]:
        if self._jwks is None:
            response = await client.get(self.endpoints.jwks)
            if response.status_code != 200:
                raise EsiaError(ErrorCode.ESIA_UNAVAILABLE, f"JWKS: HTTP {response.status_code}")
            self._jwks = KeySet.import_key_set(response.json())
        try:
            return dict(jwt.decode(id_token, self._jwks, algorithms=["RS256"]).claims)
        except (JoseError, ValueError) as error:
            raise EsiaError(
                ErrorCode.ESIA_UNAVAILABLE, f"id_token signature: {type(error).__name__}"
            ) from error


def unverified_claims(id_token: str) -> dict[str, Any]:
    """The payload of a compact JWS, without checking its signature."""
    try:
        payload = id_token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError) as error:
        raise EsiaError(ErrorCode.ESIA_UNAVAILABLE, "id_token is not a JWT") from error
    if not isinstance(claims, dict):
        raise EsiaError(ErrorCode.ESIA_UNAVAILABLE, "id_token payload is not an object")
    return claims


def check_id_token_claims(
    claims: dict[str, Any], *, issuer: str, client_id: str, nonce: str
) -> None:
    """iss, aud and exp must be right; a nonce, when present, must be ours."""
    registry = jwt.JWTClaimsRegistry(
        leeway=ID_TOKEN_LEEWAY_SECONDS,
        iss={"essential": True, "value": issuer},
        aud={"essential": True, "value": client_id},
        exp={"essential": True},
    )
    try:
        registry.validate(claims)
    except JoseError as error:
        raise EsiaError(ErrorCode.ESIA_UNAVAILABLE, f"id_token: {error.error}") from error
    if "nonce" in claims and claims["nonce"] != nonce:
        raise EsiaError(ErrorCode.ESIA_STATE_MISMATCH, "id_token nonce does not match")


def _oid(claims: dict[str, Any]) -> str:
    subject = claims.get("urn:esia:sbj")
    if isinstance(subject, dict) and subject.get("urn:esia:sbj:oid"):
        return str(subject["urn:esia:sbj:oid"])
    if claims.get("sub"):
        return str(claims["sub"])
    raise EsiaError(ErrorCode.ESIA_UNAVAILABLE, "id_token names no subject")


async def _get_json(
    client: AsyncOAuth2Client, url: str, params: dict[str, str] | None = None
) -> dict[str, Any]:
    response = await client.get(url, params=params)
    if response.status_code != 200:
        raise EsiaError(ErrorCode.ESIA_UNAVAILABLE, f"person data: HTTP {response.status_code}")
    try:
        body = response.json()
    except ValueError as error:
        raise EsiaError(ErrorCode.ESIA_UNAVAILABLE, "person data is not JSON") from error
    if not isinstance(body, dict):
        raise EsiaError(ErrorCode.ESIA_UNAVAILABLE, "person data is not an object")
    return body


# -- person data --------------------------------------------------------------------------


def parse_person(oid: str, person: dict[str, Any], contacts: dict[str, Any]) -> EsiaPerson:
    """An EsiaPerson from /rs/prns/{oid} and /rs/prns/{oid}/ctts?embed=(elements)."""
    raw_snils = person.get("snils")
    snils = snils_util.normalize(raw_snils) if isinstance(raw_snils, str) else None
    if snils is not None and not snils_util.is_valid(snils):
        raise EsiaError(ErrorCode.ESIA_UNAVAILABLE, "person data: malformed SNILS")
    return EsiaPerson(
        oid=oid,
        last_name=str(person.get("lastName") or ""),
        first_name=str(person.get("firstName") or ""),
        patronymic=str(person.get("middleName") or ""),
        birth_date=_birth_date(person.get("birthDate")),
        snils=snils,
        mobile=verified_mobile(contacts),
        trusted=person.get("trusted") is True,
    )


def _birth_date(raw: object) -> date | None:
    if not isinstance(raw, str):
        return None
    try:
        return datetime.strptime(raw, "%d.%m.%Y").date()
    except ValueError:
        return None


def verified_mobile(contacts: dict[str, Any]) -> str | None:
    """The first verified mobile phone ('MBT'), as '+7XXXXXXXXXX'."""
    elements = contacts.get("elements")
    if not isinstance(elements, list):
        return None
    for element in elements:
        if not isinstance(element, dict):
            continue
        if element.get("type") == "MBT" and element.get("vrfStu") == "VERIFIED":
            phone = normalize_phone(str(element.get("value") or ""))
            if phone is not None:
                return phone
    return None


def normalize_phone(raw: str) -> str | None:
    """'+7(912)5550101', '8 912 555-01-01' → '+79125550101'; None if not a Russian mobile."""
    digits = _PHONE_DIGITS.sub("", raw)
    if len(digits) == 11 and digits[0] in "78":
        return "+7" + digits[1:]
    if len(digits) == 10 and digits[0] == "9":
        return "+7" + digits
    return None

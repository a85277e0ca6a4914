"""The development identity provider's OAuth 2.0 / OpenID Connect server (authlib).

authlib's rfc6749 AuthorizationServer with the authorization-code grant, the OpenID
Connect extension (id_token signed RS256 with a key made at start, nonce required) and
PKCE (S256, required). ESIA's client authentication — a signed `client_secret` with a
`timestamp` — is a custom client-auth method that accepts the built-in development
signer (auth.esia.DevSigner) only. State lives in memory: one process, dev only.
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from authlib.oauth2.rfc6749 import (
    AuthorizationCodeMixin,
    AuthorizationServer,
    ClientMixin,
    OAuth2Request,
)
from authlib.oauth2.rfc6749.errors import InvalidClientError, InvalidRequestError
from authlib.oauth2.rfc6749.grants import AuthorizationCodeGrant
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import UserInfo
from authlib.oidc.core.grants import OpenIDCode
from joserfc.jwk import RSAKey
from starlette.responses import Response

from auth.dev_idp.persons import DevPerson
from auth.esia import TIMESTAMP_FORMAT, dev_signature, secret_text
from auth.oauth_payload import DictPayload

CODE_TTL_SECONDS = 300
TOKEN_TTL_SECONDS = 3600
TIMESTAMP_SKEW_SECONDS = 600
SUPPORTED_SCOPES = ("openid", "fullname", "birthdate", "gender", "snils", "mobile", "contacts")
ESIA_SIGNATURE = "esia_signature"


@dataclass(frozen=True, slots=True)
class Incoming:
    """A request already read (authlib's server is synchronous)."""

    method: str
    url: str
    headers: dict[str, str]
    query: dict[str, str]
    form: dict[str, str] = field(default_factory=dict)


class _Request(OAuth2Request):  # type: ignore[misc]
    def __init__(self, incoming: Incoming) -> None:
        super().__init__(incoming.method, incoming.url, headers=incoming.headers)
        self._incoming = incoming
        self.payload = DictPayload({**incoming.query, **incoming.form})

    @property
    def args(self) -> dict[str, str]:
        return self._incoming.query

    @property
    def form(self) -> dict[str, str]:
        return self._incoming.form


@dataclass(frozen=True, slots=True)
class DevClient(ClientMixin):  # type: ignore[misc]
    client_id: str
    redirect_uri: str

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_allowed_scope(self, scope: str) -> str:
        return " ".join(s for s in scope.split() if s in SUPPORTED_SCOPES)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri == self.redirect_uri

    def check_client_secret(self, client_secret: str) -> bool:
        return False  # ESIA has no shared secret: see check_signed_secret

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == ESIA_SIGNATURE

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "authorization_code"


@dataclass(slots=True)
class DevCode(AuthorizationCodeMixin):  # type: ignore[misc]
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    oid: str
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    auth_time: int
    expires_at: float

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time

    def get_acr(self) -> str | None:
        return None

    def get_amr(self) -> list[str]:
        return ["PWD"]


def check_signed_secret(values: dict[str, str], client: DevClient, *, code: str = "") -> bool:
    """ESIA's client authentication: the signature of the request's parameters, fresh."""
    try:
        stamp = datetime.strptime(values.get("timestamp", ""), TIMESTAMP_FORMAT)
    except ValueError:
        return False
    if abs((datetime.now(UTC) - stamp).total_seconds()) > TIMESTAMP_SKEW_SECONDS:
        return False
    expected = dev_signature(
        secret_text(
            client.client_id,
            values.get("scope", ""),
            values.get("timestamp", ""),
            values.get("state", ""),
            values.get("redirect_uri", ""),
            code,
        )
    )
    return hmac.compare_digest(expected, values.get("client_secret", ""))


class _CodeGrant(AuthorizationCodeGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = [ESIA_SIGNATURE]  # noqa: RUF012 (authlib's API)

    def save_authorization_code(self, code: str, request: _Request) -> None:
        data = request.payload.data
        server: DevAuthorizationServer = self.server
        server.codes[code] = DevCode(
            code=code,
            client_id=request.client.get_client_id(),
            redirect_uri=data.get("redirect_uri", ""),
            scope=request.scope or "",
            oid=request.user.oid,
            nonce=data.get("nonce"),
            code_challenge=data.get("code_challenge"),
            code_challenge_method=data.get("code_challenge_method"),
            auth_time=int(time.time()),
            expires_at=time.time() + CODE_TTL_SECONDS,
        )

    def query_authorization_code(self, code: str, client: DevClient) -> DevCode | None:
        server: DevAuthorizationServer = self.server
        item = server.codes.get(code)
        if item is None or item.client_id != client.client_id or item.expires_at < time.time():
            return None
        return item

    def delete_authorization_code(self, authorization_code: DevCode) -> None:
        server: DevAuthorizationServer = self.server
        server.codes.pop(authorization_code.code, None)

    def authenticate_user(self, authorization_code: DevCode) -> DevPerson | None:
        server: DevAuthorizationServer = self.server
        return server.persons_by_oid.get(authorization_code.oid)

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        status, token, headers = super().create_token_response()
        token["state"] = self.request.form.get("state")  # ESIA echoes the request's state
        return status, token, headers


class _OpenIDCode(OpenIDCode):  # type: ignore[misc]
    def __init__(self, server: DevAuthorizationServer) -> None:
        super().__init__(require_nonce=True)
        self._server = server

    def resolve_client_private_key(self, client: DevClient) -> RSAKey:
        return self._server.key

    def get_client_algorithm(self, client: DevClient) -> str:
        return "RS256"

    def get_encode_header(self, client: DevClient) -> dict[str, str]:
        return {"alg": "RS256", "kid": self._server.key.kid or ""}

    def get_client_claims(self, client: DevClient) -> dict[str, Any]:
        return {"iss": self._server.issuer, "aud": client.client_id}

    def exists_nonce(self, nonce: str, request: _Request) -> bool:
        return any(item.nonce == nonce for item in self._server.codes.values())

    def generate_user_info(self, user: DevPerson, scope: str) -> UserInfo:
        return UserInfo(
            sub=user.oid,
            **{
                "urn:esia:sbj": {
                    "urn:esia:sbj:typ": "P",
                    "urn:esia:sbj:oid": int(user.oid),
                    "urn:esia:sbj:nam": f"OID.{user.oid}",
                    "urn:esia:sbj:is_tru": user.trusted,
                }
            },
        )


class _RequiredS256(CodeChallenge):  # type: ignore[misc]
    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]  # noqa: RUF012 (authlib's API)

    def validate_code_challenge(self, grant: _CodeGrant, redirect_uri: str) -> None:
        if not grant.request.payload.data.get("code_challenge"):
            raise InvalidRequestError("Missing 'code_challenge'")
        super().validate_code_challenge(grant, redirect_uri)


class DevAuthorizationServer(AuthorizationServer):  # type: ignore[misc]
    """The provider: one client (the gateway), the dev persons, codes and tokens in memory."""

    def __init__(self, *, client: DevClient, persons: tuple[DevPerson, ...], issuer: str) -> None:
        super().__init__(scopes_supported=SUPPORTED_SCOPES)
        self.client = client
        self.persons = persons
        self.persons_by_oid = {person.oid: person for person in persons}
        self.issuer = issuer
        self.key = RSAKey.generate_key(2048, parameters={"use": "sig", "alg": "RS256"})
        self.key.ensure_kid()
        self.codes: dict[str, DevCode] = {}
        self.tokens: dict[str, tuple[str, float]] = {}  # access token → (oid, expires at)
        self.register_token_generator("default", self._generate_token)
        self.register_client_auth_method(ESIA_SIGNATURE, self._authenticate_client)
        self.register_grant(_CodeGrant, [_OpenIDCode(self), _RequiredS256(required=True)])

    # -- authlib's framework hooks ------------------------------------------------------

    def query_client(self, client_id: str) -> DevClient | None:
        return self.client if client_id == self.client.client_id else None

    def save_token(self, token: dict[str, Any], request: _Request) -> None:
        oid = request.user.oid
        self.tokens[token["access_token"]] = (oid, time.time() + TOKEN_TTL_SECONDS)

    def create_oauth2_request(self, request: Incoming | _Request) -> _Request:
        return request if isinstance(request, _Request) else _Request(request)

    def create_json_request(self, request: Incoming) -> Any:
        raise NotImplementedError("no JSON endpoints")

    def handle_response(
        self, status: int, body: object, headers: list[tuple[str, str]]
    ) -> Response:
        content = orjson.dumps(body) if isinstance(body, dict) else str(body or "").encode()
        response = Response(content, status_code=status)
        for name, value in headers:
            response.headers[name] = value
        if isinstance(body, dict):
            response.headers["Content-Type"] = "application/json"
        return response

    def send_signal(self, name: str, *args: object, **kwargs: object) -> None:
        return None

    # -- ESIA specifics -----------------------------------------------------------------

    def _generate_token(
        self,
        grant_type: str,
        client: DevClient,
        user: DevPerson | None = None,
        scope: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = True,
    ) -> dict[str, Any]:
        return {
            "token_type": "Bearer",
            "access_token": secrets.token_urlsafe(32),
            "expires_in": TOKEN_TTL_SECONDS,
            "scope": scope or "",
        }

    def _authenticate_client(self, query_client: Any, request: _Request) -> DevClient:
        form = request.form
        client = query_client(form.get("client_id", ""))
        if client is None or not check_signed_secret(form, client, code=form.get("code", "")):
            raise InvalidClientError(description="client_secret signature is not valid")
        return client  # type: ignore[no-any-return]

    def authorize_query_is_signed(self, query: dict[str, str]) -> bool:
        """ESIA authenticates the client at the authorization endpoint too."""
        return query.get("client_id") == self.client.client_id and check_signed_secret(
            query, self.client
        )

    def person_of_token(self, authorization: str | None) -> DevPerson | None:
        """The person an access token (an 'Authorization: Bearer …' header) was issued for."""
        if not authorization or not authorization.startswith("Bearer "):
            return None
        entry = self.tokens.get(authorization.removeprefix("Bearer ").strip())
        if entry is None or entry[1] < time.time():
            return None
        return self.persons_by_oid.get(entry[0])

    def jwks(self) -> dict[str, object]:
        return {"keys": [self.key.as_dict(private=False)]}

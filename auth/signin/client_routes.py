"""POST /oauth/token: the OAuth 2.0 client-credentials grant (RFC 6749 §4.4) for programs.

Served by authlib's framework-agnostic server components: an rfc6749
`AuthorizationServer` with the `ClientCredentialsGrant`, client authentication
`client_secret_basic` (HTTP Basic) or `client_secret_post` (form fields), and our
`create_oauth2_request` / `handle_response` around a Starlette request. authlib is
synchronous, so the one client the request names is read first (one statement,
auth.store.clients.fetch_client) and authlib's `query_client` answers from it.

Request: `application/x-www-form-urlencoded`, `grant_type=client_credentials`, optional
`scope` (space-separated, a subset of the client's scopes; without it, all of them).
Success (200, `Cache-Control: no-store`): `{"access_token", "token_type": "Bearer",
"expires_in", "scope"}` — a JWT of `typ` "client" (auth.tokens.issue_client_token),
valid `SCHOOL_GATEWAY_CLIENT_TOKEN_TTL` seconds (default 300), no refresh token.

Errors keep the RFC 6749 §5.2 shape (`error`, `error_description`) and add our stable
`code` and Russian `message`: invalid_client → 401 INVALID_CLIENT with
`WWW-Authenticate: Basic ...` (unknown client, wrong secret, revoked client),
invalid_scope → 400 INVALID_SCOPE, unsupported_grant_type → 400 UNSUPPORTED_GRANT_TYPE,
invalid_request → 400 BAD_REQUEST (malformed body, a repeated parameter); a body over
8 KiB (read as a bounded stream, gateway.core.bodies) → 413 PAYLOAD_TOO_LARGE.

Every token request is recorded as a sign-in event, method CLIENT, the client id (as
sent, truncated by the recorder) in `login`, outcome SIGNED_IN or the code (a revoked
client's attempts as CLIENT_REVOKED), the client's schools, the caller's address.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import parse_qsl

import asyncpg
import orjson
from authlib.oauth2.rfc6749 import AuthorizationServer, OAuth2Request
from authlib.oauth2.rfc6749.errors import (
    InvalidClientError,
    InvalidRequestError,
    InvalidScopeError,
    OAuth2Error,
)
from authlib.oauth2.rfc6749.grants import ClientCredentialsGrant
from authlib.oauth2.rfc6749.util import extract_basic_authorization
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from auth.signin.deps import AuthServices
from auth.signin.oauth_payload import DictPayload
from auth.signing_keys import keys_ready
from auth.store.audit import SIGNED_IN, SignInEvent
from auth.store.clients import AUTH_METHODS, ServiceClient, fetch_client
from auth.tokens import issue_client_token
from gateway.core.bodies import media_type, read_limited
from gateway.core.errors import MESSAGES, ErrorCode, HttpError
from gateway.core.settings import Settings

TOKEN_PATH: Final = "/oauth/token"
FORM_MEDIA_TYPE: Final = "application/x-www-form-urlencoded"
MAX_FORM_BYTES: Final = 8192
METHOD: Final = "CLIENT"
# RFC 6749 error → our code.
ERROR_CODES: Final = {
    "invalid_client": ErrorCode.INVALID_CLIENT,
    "invalid_scope": ErrorCode.INVALID_SCOPE,
    "unsupported_grant_type": ErrorCode.UNSUPPORTED_GRANT_TYPE,
    "unauthorized_client": ErrorCode.FORBIDDEN,
    "temporarily_unavailable": ErrorCode.TIMEOUT,
}

Answer = tuple[int, dict[str, Any], list[tuple[str, str]]]


class _Request(OAuth2Request):  # type: ignore[misc]
    def __init__(self, url: str, headers: Mapping[str, str], form: dict[str, str]) -> None:
        super().__init__("POST", url, headers=headers)
        self._form = form
        self.payload = DictPayload(form)

    @property
    def args(self) -> dict[str, str]:
        return {}

    @property
    def form(self) -> dict[str, str]:
        return self._form


class _ClientCredentials(ClientCredentialsGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = list(AUTH_METHODS)  # noqa: RUF012 (authlib's API)

    def validate_requested_scope(self) -> None:
        """The asked scope must be a non-empty subset of the client's own scopes."""
        scope = self.request.payload.scope
        if scope is None:
            return
        asked = set(scope.split())
        client: ServiceClient = self.request.client
        if not asked or not asked <= client.scopes:
            raise InvalidScopeError()


class TokenServer(AuthorizationServer):  # type: ignore[misc]
    """One per token request: knows the single client the request names (or none)."""

    def __init__(self, settings: Settings, client: ServiceClient | None) -> None:
        super().__init__()
        self.settings = settings
        self.client = client
        self.register_token_generator("default", self._generate_token)
        self.register_grant(_ClientCredentials)

    def query_client(self, client_id: str) -> ServiceClient | None:
        client = self.client
        if client is None or client.revoked or client.client_id != client_id:
            return None
        return client

    def save_token(self, token: dict[str, Any], request: _Request) -> None:
        return None  # self-contained JWTs; revocation is per client (auth.store.clients)

    def create_oauth2_request(self, request: _Request) -> _Request:
        return request

    def create_json_request(self, request: object) -> Any:
        raise NotImplementedError("no JSON endpoints")

    def handle_response(self, status: int, body: object, headers: list[tuple[str, str]]) -> Answer:
        return status, dict(body) if isinstance(body, dict | list) else {}, list(headers)

    def send_signal(self, name: str, *args: object, **kwargs: object) -> None:
        return None

    def _generate_token(
        self,
        grant_type: str,
        client: ServiceClient,
        user: object = None,
        scope: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = False,
    ) -> dict[str, Any]:
        granted = frozenset(client.get_allowed_scope(scope).split())
        token, ttl = issue_client_token(self.settings, client_id=client.client_id, scopes=granted)
        return {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": ttl,
            "scope": " ".join(sorted(granted)),
        }


def client_routes(services: AuthServices) -> list[BaseRoute]:
    """POST /oauth/token."""

    async def token(request: Request) -> Response:
        return await token_endpoint(request, services)

    return [Route(TOKEN_PATH, token, methods=["POST"])]


async def token_endpoint(request: Request, services: AuthServices) -> Response:
    """Authenticate the client, issue its token; always one sign-in event."""
    # The public URL (not the request's): authlib refuses plain http except on loopback.
    url = services.settings.auth.public_url.rstrip("/") + TOKEN_PATH
    headers = request.headers  # case-insensitive, as authlib's Basic parsing needs
    client: ServiceClient | None = None
    claimed_id: str | None = None
    try:
        form = await _read_form(request)
        claimed_id = _claimed_client_id(headers, form)
        client = await fetch_client(services.pool(), claimed_id)
        oauth_request = _Request(url, headers, form)
    except OAuth2Error as error:
        answer: Answer = (error.status_code or 400, dict(error.get_body()), error.get_headers())
    except HttpError as error:  # the body is over its limit
        answer = (error.status, {"error": "invalid_request", "code": error.code.value}, [])
    except asyncpg.QueryCanceledError:
        return _response(503, {"error": "temporarily_unavailable"}, [])
    else:
        await keys_ready(services.settings, services.pool())
        server = TokenServer(services.settings, client)
        answer = server.create_token_response(oauth_request)
    _record(services, request, claimed_id, client, answer)
    return _response(*answer)


async def _read_form(request: Request) -> dict[str, str]:
    """The form parameters; invalid_request for another media type, a big or repeated one."""
    if media_type(request.headers.get("content-type")) != FORM_MEDIA_TYPE:
        raise InvalidRequestError("Content-Type must be application/x-www-form-urlencoded")
    body = await read_limited(request, MAX_FORM_BYTES)
    try:
        pairs = parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise InvalidRequestError("The request body is not UTF-8") from None
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            raise InvalidRequestError(f"Repeated parameter {name!r}")  # RFC 6749 §3.2
        form[name] = value
    return form


def _claimed_client_id(headers: Mapping[str, str], form: dict[str, str]) -> str | None:
    """The client id of HTTP Basic, else of the form (client_secret_post)."""
    try:
        basic_id, _ = extract_basic_authorization(headers)
    except ValueError:  # Basic credentials that are not UTF-8
        raise InvalidClientError(status_code=401) from None
    if basic_id:
        return str(basic_id)
    return form.get("client_id") or None


def _record(
    services: AuthServices,
    request: Request,
    claimed_id: str | None,
    client: ServiceClient | None,
    answer: Answer,
) -> None:
    status, body, _ = answer
    if status == 200:
        outcome = SIGNED_IN
    elif client is not None and client.revoked:
        outcome = ErrorCode.CLIENT_REVOKED.value
    else:
        outcome = str(body.get("code") or _code(str(body.get("error", ""))).value)
    services.recorder.sign_in(
        SignInEvent(
            method=METHOD,
            outcome=outcome,
            login=claimed_id,
            school_ids=client.school_ids if client is not None else (),
            client_address=request.client.host if request.client is not None else None,
        )
    )


def _code(error: str) -> ErrorCode:
    return ERROR_CODES.get(error, ErrorCode.BAD_REQUEST)


def _response(status: int, body: dict[str, Any], headers: list[tuple[str, str]]) -> Response:
    if "error" in body:
        code = ErrorCode(body["code"]) if "code" in body else _code(str(body["error"]))
        body = {**body, "code": code.value, "message": MESSAGES[code]}
    response = Response(orjson.dumps(body), status_code=status)
    for name, value in headers:
        response.headers[name] = value
    response.headers["Content-Type"] = "application/json"
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response

"""Session routes: `POST /auth/token` (refresh-token rotation) and `POST /auth/logout`.

POST /auth/token — RFC 6749 §6, parameters as a form (`application/x-www-form-urlencoded`)
or JSON: `grant_type=refresh_token&refresh_token=...`. Success: 200, a new access token
and a new refresh token of the same session (the presented one is marked used).
Failure: 400 `{"error": "invalid_grant", "error_description": ..., "code":
"REFRESH_TOKEN_INVALID", "message": <Russian>}` for an unknown, expired or used token or
an ended session; presenting an already used token again (a replay: one of two holders
is not the owner) revokes the whole session. Every outcome is recorded as a sign-in
event with method REFRESH (outcome SIGNED_IN, REFRESH_TOKEN_INVALID, or SESSION_REVOKED
for a replay that revoked its session).

POST /auth/logout — revokes the session of the `Authorization: Bearer` token (expired
tokens accepted) and the session of the session cookie, and of a `refresh_token`
parameter if given; clears the cookie. A cookie alone is CSRF-checked (the
Origin/Referer must be an allowed origin; any content type, so a plain HTML form works);
with a bearer token it is not: a cross-site page cannot send an Authorization header
without a CORS preflight, which the gateway never grants. 204, or 303 to `return_to`
(default /) for a browser page navigation. No credentials at all → 401
UNAUTHENTICATED. A bearer token that is refused (e.g. an expired token of a retired
signing key) does not stop the rest: the cookie's session and the `refresh_token` are
still revoked (204); with nothing else given it is 401 with the token's code.

Both read their parameters from a body of at most 8 KiB, read as a bounded stream
(gateway.core.bodies): a larger one → 413 PAYLOAD_TOO_LARGE (`invalid_request`).
"""

from __future__ import annotations

from typing import Any, Final

import orjson
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from auth.requests import check_csrf
from auth.signin.deps import AuthServices
from auth.signin.pages import outcome_response, wants_html
from auth.signing_keys import learn_token_keys
from auth.store.audit import SIGNED_IN, SignInEvent
from auth.store.sessions import (
    RefreshTokenInvalidError,
    clear_session_cookie,
    cookie_session_id,
    refresh_session,
    revoke_by_refresh_token,
    revoke_session,
    safe_return_to,
    token_response,
)
from auth.tokens import ACCESS, verify_token
from gateway.core.bodies import AUTH_BODY_LIMIT, FORM_TYPES, media_type, read_form, read_limited
from gateway.core.errors import MESSAGES, ApiError, ErrorCode, HttpError, UnauthenticatedError

MAX_PARAMS_BYTES: Final = AUTH_BODY_LIMIT
MAX_PARAMS: Final = 16
_JSON = "application/json"


class ParamsError(Exception):
    """The request's parameters cannot be read: the HTTP status and an ASCII reason."""

    def __init__(self, status: int, code: ErrorCode, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.code = code
        self.description = description


def session_routes(services: AuthServices) -> list[BaseRoute]:
    """POST /auth/token and POST /auth/logout."""

    async def token(request: Request) -> Response:
        return await token_endpoint(services, request)

    async def logout(request: Request) -> Response:
        return await logout_endpoint(services, request)

    return [
        Route("/auth/token", token, methods=["POST"]),
        Route("/auth/logout", logout, methods=["POST"]),
    ]


async def token_endpoint(services: AuthServices, request: Request) -> Response:
    """The refresh-token grant with rotation and replay detection."""
    try:
        params = await read_params(request)
    except ParamsError as error:
        return oauth_error(error.status, "invalid_request", error.description, error.code)
    grant_type = params.get("grant_type")
    if grant_type != "refresh_token":
        error_name = "invalid_request" if not grant_type else "unsupported_grant_type"
        return oauth_error(
            400, error_name, "grant_type must be refresh_token", ErrorCode.BAD_REQUEST
        )
    presented = params.get("refresh_token")
    if not presented:
        return oauth_error(
            400, "invalid_request", "refresh_token is required", ErrorCode.BAD_REQUEST
        )
    try:
        issued = await refresh_session(services.pool(), services.settings, presented)
    except RefreshTokenInvalidError as error:
        outcome = ErrorCode.SESSION_REVOKED if error.replayed else ErrorCode.REFRESH_TOKEN_INVALID
        _record(services, request, outcome.value, error.account_id)
        return oauth_error(
            400,
            "invalid_grant",
            "refresh token is invalid, expired or already used",
            ErrorCode.REFRESH_TOKEN_INVALID,
        )
    _record(services, request, SIGNED_IN, issued.account_id)
    return token_response(issued)


async def logout_endpoint(services: AuthServices, request: Request) -> Response:
    """Revoke the request's session (bearer or cookie) and a given refresh token."""
    settings = services.settings
    cookie = request.cookies.get(settings.auth.session_cookie)
    authorization = request.headers.get("authorization")
    try:
        if authorization is None and cookie:
            check_csrf(request, settings, require_json=False)
        params = await read_params(request)
    except (HttpError, ParamsError) as error:
        return outcome_response(request, error.code, error.status)
    bearer_token = None if authorization is None else authorization.partition(" ")[2].strip()
    await learn_token_keys(settings, services.pool(), bearer_token, cookie)
    refused: ApiError | None = None
    bearer = None
    try:
        bearer = None if authorization is None else _bearer_session(services, authorization)
    except ApiError as error:
        # A refused bearer (e.g. an expired token of a retired key) must not keep the
        # refresh token or the cookie session given with it alive: those are ended below.
        refused = error
    cookie_session = cookie_session_id(settings, cookie)
    sessions = {s for s in (bearer, cookie_session) if s is not None}
    refresh = params.get("refresh_token")
    pool = services.pool()
    for session_id in sorted(sessions):
        await revoke_session(pool, session_id)
    if refresh:
        await revoke_by_refresh_token(pool, refresh)
    if refused is not None and not refresh and not cookie:  # nothing else was given
        headers = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
        return outcome_response(request, refused.code, 401, headers=headers)
    if not sessions and not refresh and not cookie:
        return outcome_response(request, ErrorCode.UNAUTHENTICATED, 401)
    return _logged_out(request, services, cookie_present=bool(cookie), params=params)


def _bearer_session(services: AuthServices, authorization: str) -> str:
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise UnauthenticatedError("Ожидается заголовок Authorization: Bearer <токен>.")
    claims = verify_token(services.settings, token.strip(), typ=ACCESS, check_expiry=False)
    return claims.session_id


def _logged_out(
    request: Request, services: AuthServices, *, cookie_present: bool, params: dict[str, str]
) -> Response:
    response: Response
    if cookie_present and wants_html(request):
        response = RedirectResponse(safe_return_to(params.get("return_to")), status_code=303)
    else:
        response = Response(status_code=204)
    response.headers["Cache-Control"] = "no-store"
    if cookie_present:
        clear_session_cookie(response, services.settings)
    return response


async def read_params(request: Request) -> dict[str, str]:
    """String parameters of a form or JSON body (an empty body gives none), read as a
    bounded stream."""
    kind = media_type(request.headers.get("content-type"))
    try:
        if kind in FORM_TYPES:
            form = await read_form(request, limit=MAX_PARAMS_BYTES, max_fields=MAX_PARAMS)
            return {key: value for key, value in form.items() if isinstance(value, str)}
        body = await read_limited(request, MAX_PARAMS_BYTES)
    except HttpError as error:
        raise ParamsError(error.status, error.code, _DESCRIPTIONS[error.code]) from None
    if not body:
        return {}
    if kind == _JSON:
        try:
            parsed: Any = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise ParamsError(400, ErrorCode.BAD_REQUEST, "body is not valid JSON") from None
        if not isinstance(parsed, dict):
            raise ParamsError(400, ErrorCode.BAD_REQUEST, "JSON body must be an object")
        return {key: value for key, value in parsed.items() if isinstance(value, str)}
    raise ParamsError(
        415, ErrorCode.UNSUPPORTED_MEDIA_TYPE, "use application/x-www-form-urlencoded or JSON"
    )


_DESCRIPTIONS: Final = {
    ErrorCode.PAYLOAD_TOO_LARGE: "request body too large",
    ErrorCode.BAD_REQUEST: "malformed form body",
}


def oauth_error(status: int, error: str, description: str, code: ErrorCode) -> Response:
    """An RFC 6749 §5.2 error with our stable code and the Russian message."""
    body = {
        "error": error,
        "error_description": description,
        "code": code.value,
        "message": MESSAGES[code],
    }
    return Response(
        orjson.dumps(body),
        status_code=status,
        media_type="application/json",
        headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
    )


def _record(services: AuthServices, request: Request, outcome: str, account_id: str | None) -> None:
    address = request.client.host if request.client is not None else None
    services.recorder.sign_in(
        SignInEvent(
            method="REFRESH", outcome=outcome, account_id=account_id, client_address=address
        )
    )

"""/auth/login: the school login and password page and its sign-in (students under 14.5).

GET shows a page like the regional service's: login and password, and the button
«Вход для пользователей старше 14,5 лет» leading to ESIA sign-in. `?error=CODE` (a
known ErrorCode, e.g. from a failed ESIA sign-in) shows that code's message.

POST takes either a form (a browser: on success a session cookie and 303 to
`return_to`, default / (the page of the role); on failure the page again with the message) or JSON
{"login", "password"} (an API client: on success the token response; on failure the
JSON error). Every attempt is recorded as a sign-in event (method PASSWORD). The rules
(throttling, timing, the age limit) are in auth.signin.password and auth.store.throttle.

A success also sets the login's device cookie (auth.signin.device_cookie: this client is then
trusted for that login while it is locked for others), and a browser sign-in ends the
session of the session cookie the browser still had. The body is read as a bounded
stream (gateway.core.bodies): over 8 KiB → 413 PAYLOAD_TOO_LARGE, whatever its framing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from html import escape
from typing import Final
from urllib.parse import quote

import orjson
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from auth.requests import request_origin
from auth.signin.deps import AuthServices
from auth.signin.device_cookie import issue_device_cookie, set_device_cookie, trusted_device
from auth.signin.pages import html_page, outcome_response
from auth.signin.password import (
    MAX_LOGIN_LENGTH,
    MAX_PASSWORD_LENGTH,
    PasswordOutcome,
    PasswordSignIn,
)
from auth.store.audit import SIGNED_IN, SignInEvent
from auth.store.sessions import (
    MAX_RETURN_TO_LENGTH,
    ClientKind,
    end_replaced_session,
    safe_return_to,
    signed_in_response,
    start_session,
)
from auth.store.throttle import retry_after_header
from gateway.core.bodies import AUTH_BODY_LIMIT, FORM_TYPES, media_type, read_form, read_limited
from gateway.core.errors import MESSAGES, ErrorCode, HttpError

LOGIN_PATH: Final = "/auth/login"
ESIA_LOGIN_PATH: Final = "/auth/esia/login"
MAX_BODY_BYTES: Final = AUTH_BODY_LIMIT
PAGE_TITLE: Final = "Электронные дневники и журналы"
_PAGE_HEADERS: Final = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "frame-ancestors 'none'",
}
_ENTER_LOGIN_AND_PASSWORD: Final = "Введите логин и пароль."
_TOO_LONG: Final = "Слишком длинный логин или пароль."


@dataclass(frozen=True, slots=True)
class Submitted:
    """What a sign-in request carried."""

    kind: ClientKind
    login: str
    password: str
    return_to: str | None = None


def password_routes(services: AuthServices) -> list[BaseRoute]:
    """GET and POST /auth/login."""
    sign_in = PasswordSignIn(services)

    async def login(request: Request) -> Response:
        if request.method == "GET":
            params = request.query_params
            return login_page(return_to=params.get("return_to"), error=_known(params.get("error")))
        return await _post(request, services, sign_in)

    return [Route(LOGIN_PATH, login, methods=["GET", "POST"])]


async def _post(request: Request, services: AuthServices, sign_in: PasswordSignIn) -> Response:
    browser = _is_form(request)
    try:
        submitted = await read_submission(request, allowed_origins=_origins(services))
    except HttpError as error:
        return _failure(request, browser, error.code, error.status, message=error.message)
    address = request.client.host if request.client is not None else "unknown"
    if not submitted.login or not submitted.password:
        _record(services, submitted, address, ErrorCode.BAD_USER_INPUT.value)
        return _failure(
            request,
            browser,
            ErrorCode.BAD_USER_INPUT,
            400,
            message=_ENTER_LOGIN_AND_PASSWORD,
            submitted=submitted,
        )
    device = trusted_device(services.settings, request.cookies, submitted.login)
    outcome = await sign_in.attempt(
        submitted.login, submitted.password, address=address, device=device
    )
    if outcome.code is not None:
        _record(services, submitted, address, outcome.code.value, outcome)
        headers = None if outcome.retry_after is None else retry_after_header(outcome.retry_after)
        return _failure(
            request, browser, outcome.code, outcome.status, headers=headers, submitted=submitted
        )
    return await _signed_in(request, services, submitted, outcome, address)


async def _signed_in(
    request: Request,
    services: AuthServices,
    submitted: Submitted,
    outcome: PasswordOutcome,
    address: str,
) -> Response:
    """Start the session (ending the browser's previous one); set the device cookie."""
    assert outcome.account_id is not None
    settings, pool = services.settings, services.pool()
    if submitted.kind is ClientKind.BROWSER:
        previous = request.cookies.get(settings.auth.session_cookie)
        await end_replaced_session(pool, settings, previous)
    issued = await start_session(
        pool, settings, account_id=outcome.account_id, kind=submitted.kind, method="PASSWORD"
    )
    _record(services, submitted, address, SIGNED_IN, outcome)
    response = signed_in_response(settings, issued, return_to=submitted.return_to)
    set_device_cookie(response, settings, issue_device_cookie(settings, submitted.login))
    return response


async def read_submission(request: Request, *, allowed_origins: frozenset[str]) -> Submitted:
    """The login and password of a form (browser) or JSON (API client) request.

    Raises HttpError: 413 PAYLOAD_TOO_LARGE for a body over MAX_BODY_BYTES (read as a
    bounded stream), 400 BAD_REQUEST for a malformed body, 415 for another content type,
    403 CSRF_REJECTED for a form posted from a foreign Origin.
    """
    if _is_form(request):
        # Login CSRF: a form posted from another site (Origin, else Referer) is refused.
        origin = request_origin(request)
        if origin is not None and origin not in {o.lower() for o in allowed_origins}:
            raise HttpError(403, ErrorCode.CSRF_REJECTED)
        form = await read_form(request, limit=MAX_BODY_BYTES, max_fields=8)
        values = {name: form.get(name) for name in ("login", "password", "return_to")}
        return Submitted(
            ClientKind.BROWSER,
            _field(values["login"], MAX_LOGIN_LENGTH).strip(),
            _field(values["password"], MAX_PASSWORD_LENGTH),
            _return_to(values["return_to"]),
        )
    if _media_type(request) != "application/json":
        raise HttpError(415, ErrorCode.UNSUPPORTED_MEDIA_TYPE)
    body = await read_limited(request, MAX_BODY_BYTES)
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise HttpError(400, ErrorCode.BAD_REQUEST) from None
    if not isinstance(payload, dict):
        raise HttpError(400, ErrorCode.BAD_REQUEST)
    return Submitted(
        ClientKind.API,
        _field(payload.get("login"), MAX_LOGIN_LENGTH).strip(),
        _field(payload.get("password"), MAX_PASSWORD_LENGTH),
    )


def login_page(
    *,
    return_to: str | None = None,
    error: ErrorCode | None = None,
    message: str | None = None,
    login: str = "",
    status: int = 200,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """The sign-in page, with an error message when there is one."""
    target = safe_return_to(return_to)
    esia_href = f"{ESIA_LOGIN_PATH}?return_to={quote(target, safe='')}"
    error_html = ""
    if error is not None:
        error_html = (
            f'<p class="error" role="alert">{escape(message or MESSAGES[error])}</p>'
            f'<p class="code">Код: {escape(error.value)}</p>'
        )
    body = (
        f"<h1>{escape(PAGE_TITLE)}</h1>{error_html}"
        f'<form method="post" action="{LOGIN_PATH}">'
        f'<input type="hidden" name="return_to" value="{escape(target)}">'
        '<label for="login">Логин</label>'
        f'<input id="login" name="login" autocomplete="username" required '
        f'maxlength="{MAX_LOGIN_LENGTH}" value="{escape(login)}">'
        '<label for="password">Пароль</label>'
        '<input id="password" name="password" type="password" '
        f'autocomplete="current-password" required maxlength="{MAX_PASSWORD_LENGTH}">'
        '<button type="submit">Вход</button></form>'
        '<p class="code">Забыли пароль? Логин и пароль выдаёт школа: обратитесь к классному '
        "руководителю.</p>"
        f'<p><a class="button" href="{escape(esia_href)}">'
        "Вход для пользователей старше 14,5 лет</a></p>"
        '<p class="code">Вход через ЕСИА (Госуслуги) — для родителей и учеников старше '
        "14,5 лет.</p>"
    )
    response = html_page(PAGE_TITLE, body, status=status)
    response.headers.update({**_PAGE_HEADERS, **(headers or {})})
    return response


def _failure(
    request: Request,
    browser: bool,
    code: ErrorCode,
    status: int,
    *,
    message: str | None = None,
    headers: Mapping[str, str] | None = None,
    submitted: Submitted | None = None,
) -> Response:
    """A refused attempt: the page again for a browser, the JSON error for an API client."""
    if not browser:
        return outcome_response(request, code, status, message=message, headers=headers)
    return login_page(
        return_to=None if submitted is None else submitted.return_to,
        error=code,
        message=message,
        login="" if submitted is None else submitted.login,
        status=status,
        headers=headers,
    )


def _record(
    services: AuthServices,
    submitted: Submitted,
    address: str,
    outcome_code: str,
    outcome: PasswordOutcome | None = None,
) -> None:
    services.recorder.sign_in(
        SignInEvent(
            method="PASSWORD",
            outcome=outcome_code,
            login=submitted.login or None,
            school_ids=() if outcome is None else outcome.school_ids,
            account_id=None if outcome is None else outcome.account_id,
            client_address=address,
        )
    )


def _field(value: object, max_length: int) -> str:
    """A text field, or "" when missing or not text; HttpError 400 when too long."""
    if isinstance(value, UploadFile) or not isinstance(value, str):
        return ""
    if len(value) > max_length:
        raise HttpError(400, ErrorCode.BAD_USER_INPUT, _TOO_LONG)
    return value


def _return_to(value: object) -> str | None:
    """The form's return path; one too long to be ours is ignored (safe_return_to's default),
    never an error about the login or password."""
    if not isinstance(value, str) or not value or len(value) > MAX_RETURN_TO_LENGTH:
        return None
    return value


def _known(code: str | None) -> ErrorCode | None:
    """The ErrorCode named by `?error=`, or None (arbitrary text is never shown)."""
    try:
        return ErrorCode(code) if code else None
    except ValueError:
        return None


def _media_type(request: Request) -> str:
    return media_type(request.headers.get("content-type")) or ""


def _is_form(request: Request) -> bool:
    return _media_type(request) in FORM_TYPES


def _origins(services: AuthServices) -> frozenset[str]:
    return services.settings.auth.allowed_origins

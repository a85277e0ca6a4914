"""Sign-in through ESIA: GET /auth/esia/login and GET /auth/esia/callback.

login: a one-time authorization request (state, nonce, PKCE verifier; 10 minutes) is
stored (auth.store.esia_requests) and the browser is sent to the provider. The request is
bound to the browser that started it (RFC 6749 §10.12): an HttpOnly cookie
(`BINDING_COOKIE`, path /auth/esia, 10 minutes) holds a random value whose SHA-256 is
stored with the state; one value serves every sign-in started in that browser.
callback: the state is consumed (unknown, expired, reused, or not started by this
browser → ESIA_STATE_MISMATCH; so a callback URL made with someone else's ESIA account
cannot sign a victim's browser in as that account), the code is exchanged and the
person read (auth.signin.esia), an unconfirmed account is refused, the person is matched to
the registries (auth.store.matching) and a session is started (auth.store.sessions). Every
attempt is recorded as a sign-in event with masked identifiers and the schools where
the person was found.

Starts are throttled per client address (`esia_starts_per_minute`, counted in the
database across workers, auth.store.throttle): over the limit → 429 RATE_LIMITED with
`Retry-After` (the seconds left of the minute) and a Russian page or JSON. A browser
sign-in that succeeds ends the session of the session cookie the browser still had.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets

import asyncpg
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from auth.signin.deps import AuthServices
from auth.signin.esia import EsiaClient, EsiaError, EsiaPerson
from auth.signin.pages import outcome_response
from auth.store.accounts import upsert_parent_account, upsert_staff_account, upsert_student_account
from auth.store.audit import SIGNED_IN, SignInEvent
from auth.store.esia_requests import EsiaRequest, save_esia_request, take_esia_request
from auth.store.matching import RegistryMatch, match_registries
from auth.store.sessions import (
    ClientKind,
    end_replaced_session,
    safe_return_to,
    signed_in_response,
    start_session,
)
from auth.store.throttle import SignInThrottle, retry_after_header
from auth.viewer import Role
from gateway.core.errors import ErrorCode

log = logging.getLogger(__name__)

LOGIN_PATH = "/auth/esia/login"
CALLBACK_PATH = "/auth/esia/callback"
REQUEST_TTL_SECONDS = 600
BINDING_COOKIE = "sg_esia_binding"
_BINDING_PATH = "/auth/esia"
_BINDING_VALUE = re.compile(r"[A-Za-z0-9_-]{43}")  # secrets.token_urlsafe(32)
_TOO_MANY_STARTS = (
    "Слишком много попыток входа через Госуслуги с этого адреса. "
    "Повторите попытку через {seconds} с."
)

_STATUS = {
    ErrorCode.ESIA_NOT_CONFIGURED: 503,
    ErrorCode.ESIA_UNAVAILABLE: 503,
    ErrorCode.ESIA_DENIED: 403,
    ErrorCode.ESIA_STATE_MISMATCH: 400,
    ErrorCode.ESIA_ACCOUNT_NOT_CONFIRMED: 403,
    ErrorCode.NOT_IN_REGISTRY: 403,
}


class EsiaSignIn:
    """The two ESIA routes of one application."""

    def __init__(self, services: AuthServices) -> None:
        self.services = services
        self.settings = services.settings
        self._client: EsiaClient | None = None
        self._throttle = SignInThrottle(services.settings.auth)

    def routes(self) -> list[BaseRoute]:
        return [
            Route(LOGIN_PATH, self.login, methods=["GET"]),
            Route(CALLBACK_PATH, self.callback, methods=["GET"]),
        ]

    def client(self) -> EsiaClient:
        if self._client is None:
            self._client = EsiaClient(self.settings.auth)
        return self._client

    # -- GET /auth/esia/login -----------------------------------------------------------

    async def login(self, request: Request) -> Response:
        retry_after = await self._throttle.count_esia_start(self.services.pool(), _address(request))
        if retry_after is not None:
            return self._too_many_starts(request, retry_after)
        kind = ClientKind.API if request.query_params.get("client") == "api" else ClientKind.BROWSER
        return_to = safe_return_to(request.query_params.get("return_to"))
        state, nonce = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        verifier = secrets.token_urlsafe(48)
        binding = request.cookies.get(BINDING_COOKIE, "")
        if not _BINDING_VALUE.fullmatch(binding):
            binding = secrets.token_urlsafe(32)
        try:
            url = await self.client().authorization_url(
                state=state, nonce=nonce, code_verifier=verifier
            )
        except EsiaError as error:
            log.warning("ESIA sign-in cannot start: %s", error.reason)
            return self._failed(request, error.code)
        await save_esia_request(
            self.services.pool(),
            state=state,
            nonce=nonce,
            code_verifier=verifier,
            kind=kind,
            return_to=return_to,
            ttl_seconds=REQUEST_TTL_SECONDS,
            browser_hash=_binding_hash(binding),
        )
        response = RedirectResponse(url, status_code=302, headers={"Cache-Control": "no-store"})
        response.set_cookie(
            BINDING_COOKIE,
            binding,
            max_age=REQUEST_TTL_SECONDS,
            path=_BINDING_PATH,
            secure=self.settings.auth.cookie_secure,
            httponly=True,
            samesite="lax",  # sent on the provider's top-level redirect back
        )
        return response

    # -- GET /auth/esia/callback --------------------------------------------------------

    async def callback(self, request: Request) -> Response:
        params = request.query_params
        pending = await self._take(params.get("state"), request.cookies.get(BINDING_COOKIE))
        if pending is None:
            return self._failed(request, ErrorCode.ESIA_STATE_MISMATCH)
        if params.get("error") or not params.get("code"):
            log.info("ESIA returned no code (error=%r)", (params.get("error") or "")[:40])
            return self._failed(request, ErrorCode.ESIA_DENIED)
        try:
            person = await self.client().sign_in(
                code=params["code"], code_verifier=pending.code_verifier, nonce=pending.nonce
            )
        except EsiaError as error:
            log.warning("ESIA sign-in failed: %s", error.reason)
            return self._failed(request, error.code)
        return await self._signed_in(request, person, pending)

    async def _take(self, state: str | None, binding: str | None) -> EsiaRequest | None:
        """The pending request of `state`, consumed; None unless live and this browser's."""
        if not state:
            return None
        pending = await take_esia_request(self.services.pool(), state=state)
        if pending is None or not pending.live or pending.browser_hash is None or not binding:
            return None
        if not hmac.compare_digest(pending.browser_hash, _binding_hash(binding)):
            return None
        return pending

    async def _signed_in(
        self, request: Request, person: EsiaPerson, pending: EsiaRequest
    ) -> Response:
        pool = self.services.pool()
        found = await match_registries(pool, snils=person.snils, phone=person.mobile)
        if not person.trusted:
            return self._failed(request, ErrorCode.ESIA_ACCOUNT_NOT_CONFIRMED, person, found)
        account_id = await _account_for(pool, person, found)
        if account_id is None:
            return self._failed(request, ErrorCode.NOT_IN_REGISTRY, person, found)
        if pending.kind is ClientKind.BROWSER:
            previous = request.cookies.get(self.settings.auth.session_cookie)
            await end_replaced_session(pool, self.settings, previous)
        issued = await start_session(
            pool, self.settings, account_id=account_id, kind=pending.kind, method="ESIA"
        )
        self._record(request, SIGNED_IN, person, found, account_id)
        return signed_in_response(self.settings, issued, return_to=pending.return_to)

    # -- outcomes -----------------------------------------------------------------------

    def _failed(
        self,
        request: Request,
        code: ErrorCode,
        person: EsiaPerson | None = None,
        found: RegistryMatch | None = None,
    ) -> Response:
        self._record(request, code.value, person, found, None)
        return self._fail(request, code)

    def _fail(self, request: Request, code: ErrorCode) -> Response:
        return outcome_response(request, code, _STATUS.get(code, 400))

    def _too_many_starts(self, request: Request, retry_after: int) -> Response:
        """429 RATE_LIMITED: this address started too many sign-ins this minute."""
        self._record(request, ErrorCode.RATE_LIMITED.value, None, None, None)
        return outcome_response(
            request,
            ErrorCode.RATE_LIMITED,
            429,
            message=_TOO_MANY_STARTS.format(seconds=retry_after),
            headers={**retry_after_header(retry_after), "Cache-Control": "no-store"},
        )

    def _record(
        self,
        request: Request,
        outcome: str,
        person: EsiaPerson | None,
        found: RegistryMatch | None,
        account_id: str | None,
    ) -> None:
        self.services.recorder.sign_in(
            SignInEvent(
                method="ESIA",
                outcome=outcome,
                snils=person.snils if person else None,
                phone=person.mobile if person else None,
                school_ids=found.school_ids if found else (),
                account_id=account_id,
                client_address=request.client.host if request.client else None,
            )
        )


def _address(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


def _binding_hash(binding: str) -> bytes:
    return hashlib.sha256(binding.encode()).digest()


async def _account_for(pool: asyncpg.Pool, person: EsiaPerson, found: RegistryMatch) -> str | None:
    """The gateway account of the matched person (created on first sign-in)."""
    role = found.role
    name = person.full_name
    if role is Role.PARENT:
        return await upsert_parent_account(
            pool, snils=person.snils, phone=person.mobile, display_name=name
        )
    if role is Role.STUDENT:
        return await upsert_student_account(
            pool, student_id=found.student_ids[0], display_name=name
        )
    if role is not None and person.snils is not None:
        return await upsert_staff_account(pool, role=role, snils=person.snils, display_name=name)
    return None


def esia_routes(services: AuthServices) -> list[BaseRoute]:
    """GET /auth/esia/login and /auth/esia/callback."""
    return EsiaSignIn(services).routes()

"""CORS for web clients on other origins that call `/graphql` with bearer tokens.

Only the origins of `settings.cors_origins` (SCHOOL_GATEWAY_CORS_ORIGINS, exact
`scheme://host[:port]`, no wildcard) are answered; with none configured the middleware
is not installed and no response carries a CORS header. For a request to `/graphql`
whose `Origin` is on the list:

- a preflight (`OPTIONS` with `Access-Control-Request-Method`) is answered here with
  204: the origin echoed (as configured, not the header's text), the methods GET and
  POST, the request headers web GraphQL clients send (`ALLOWED_HEADERS`: Apollo Client's
  and urql's among them) and `Access-Control-Max-Age`; it never reaches the routes, and is
  logged like any request;
- every other response gets `Access-Control-Allow-Origin` with that origin, errors
  included (the middleware is outside the one that answers 408/500/503).

Every `/graphql` response gets `Vary: Origin` (whether it carries the header depends on
the request's origin). Nothing else: `Access-Control-Allow-Credentials` is never sent,
so a browser neither sends the session cookie on a cross-origin preflighted request nor
lets a page read a credentialed response, and the cookie's CSRF check
(`auth.requests.check_csrf`: the origin must be one of `settings.auth.allowed_origins`)
refuses a cookie from any other origin anyway. No response header is exposed beyond the
CORS-safelisted ones. A preflight from an origin not on the list goes on to the routes
and gets what any `OPTIONS` gets (405), without CORS headers: the browser then sends
nothing.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from typing import Final

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.core.logging import log_request

ALLOWED_METHODS: Final = "GET, POST"
# Lower-case header names a cross-origin request may carry. Accept and Content-Type as
# GraphQL-over-HTTP uses them, Authorization for the bearer token; Apollo Client's CSRF
# marker, operation name and client awareness headers.
ALLOWED_HEADERS: Final = (
    "accept",
    "authorization",
    "content-type",
    "apollo-require-preflight",
    "x-apollo-operation-name",
    "apollographql-client-name",
    "apollographql-client-version",
)
# Seconds a browser may reuse a preflight's answer (Chromium caps it at 7200).
MAX_AGE_S: Final = 7200
PREFLIGHT_STATUS: Final = 204


class CorsMiddleware:
    """Answers allowed origins' preflights and marks their responses (see the module doc)."""

    def __init__(self, app: ASGIApp, *, origins: Collection[str], paths: Collection[str]) -> None:
        self.app = app
        self.origins = frozenset(origin.lower() for origin in origins)
        self.paths = frozenset(paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        origin = self.allowed(_header(scope, b"origin"))
        if origin is not None and _is_preflight(scope):
            await _preflight(scope, send, origin)
            return

        async def send_marked(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                headers = MutableHeaders(scope=message)
                add_vary(headers, "Origin")
                if origin is not None:
                    headers["Access-Control-Allow-Origin"] = origin
            await send(message)

        await self.app(scope, receive, send_marked)

    def allowed(self, origin: str | None) -> str | None:
        """The configured origin a request's `Origin` names (the canonical one, not the
        header's text, is echoed), or None."""
        if origin is None:
            return None
        canonical = origin.strip().lower()
        return canonical if canonical in self.origins else None


async def _preflight(scope: Scope, send: Send, origin: str) -> None:
    started = time.perf_counter()
    headers = [
        (b"access-control-allow-origin", origin.encode("latin-1")),
        (b"access-control-allow-methods", ALLOWED_METHODS.encode()),
        (b"access-control-allow-headers", ", ".join(ALLOWED_HEADERS).encode()),
        (b"access-control-max-age", str(MAX_AGE_S).encode()),
        (b"vary", b"Origin"),
    ]
    await send({"type": "http.response.start", "status": PREFLIGHT_STATUS, "headers": headers})
    await send({"type": "http.response.body", "body": b""})
    duration_ms = (time.perf_counter() - started) * 1000
    log_request(scope["method"], scope["path"][:200], PREFLIGHT_STATUS, duration_ms, None)


def _is_preflight(scope: Scope) -> bool:
    return scope["method"] == "OPTIONS" and (
        _header(scope, b"access-control-request-method") is not None
    )


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def add_vary(headers: MutableHeaders, name: str) -> None:
    """Add `name` to the response's `Vary` unless it is already there (or `*`)."""
    present = {
        token.strip().lower() for value in headers.getlist("vary") for token in value.split(",")
    }
    if name.lower() not in present and "*" not in present:
        headers["Vary"] = ", ".join([*headers.getlist("vary"), name])

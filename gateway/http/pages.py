"""The web pages and their static files, served from the repository's `web/` folder.

- `GET /static/<path>`: a file under `web/` (scripts, styles, GraphQL documents, images),
  read into memory when the application is built; only the suffixes of `CONTENT_TYPES`
  (so never the pages' HTML, READMEs or licences by accident). Files under `web/vendor/`
  carry their version in their names and are cached for a year (`immutable`); our own
  files are revalidated on every use (`no-cache` with an `ETag`: 304 when unchanged), so a
  new release is picked up at once although ES modules import each other by plain names.
  Every static answer, 304s included, says `Vary: Accept-Encoding` and carries the ETag
  its 200 would (weak where the compression middleware gzips it); `If-None-Match` compares
  weakly and `*` matches. A static file opened as a document runs nothing (`sandbox`).
- `GET /`: where a signed-in browser belongs (`LANDING`: parents and students `/diary`,
  school IT admins `/school`, regional analysts `/analytics`); without a valid session the
  sign-in page. It is the default `return_to` of every sign-in (auth.store.sessions).
- `GET /diary`, `/school`, `/analytics`: the pages (`web/pages/*.html`), each only for its
  roles: no session → 303 to the sign-in page with `return_to`; another role → 303 to its
  own page. The page is a shell: its script reads everything it shows through
  `POST /graphql` with the session cookie, exactly as any client (CSRF rules included).
- The GraphiQL page (`web/pages/graphiql.html`, only local files) for `GET /graphql` from a
  browser, where `settings.graphiql` allows it (gateway.app decides when).

The session cookie is read on these GET navigations only to choose a redirect; no data is
sent with a page. Pages are `no-store` (the back button after sign-out shows nothing
private) and carry a Content-Security-Policy that allows only this origin.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Final
from urllib.parse import quote

import asyncpg
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from auth.requests import authenticate_cookie
from auth.signin.pages import html_page
from auth.store.sessions import clear_session_cookie
from auth.viewer import Role, Viewer
from gateway.core.errors import HttpError
from gateway.core.settings import PROJECT_ROOT, Settings
from gateway.http.compression import accepts_gzip, compressible

WEB_ROOT: Final = PROJECT_ROOT / "web"
STATIC_PREFIX: Final = "/static/"
SIGN_IN_PATH: Final = "/auth/login"
LANDING: Final[dict[Role, str]] = {
    Role.PARENT: "/diary",
    Role.STUDENT: "/diary",
    Role.SCHOOL_ADMIN: "/school",
    Role.REGIONAL_ANALYST: "/analytics",
}
# The page of each path, and the roles it is for.
PAGES: Final[dict[str, tuple[str, frozenset[Role]]]] = {
    "/diary": ("diary.html", frozenset({Role.PARENT, Role.STUDENT})),
    "/school": ("school.html", frozenset({Role.SCHOOL_ADMIN})),
    "/analytics": ("analytics.html", frozenset({Role.REGIONAL_ANALYST})),
}
CONTENT_TYPES: Final = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".graphql": "text/plain; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".woff2": "font/woff2",
}
IMMUTABLE: Final = "public, max-age=31536000, immutable"
REVALIDATE: Final = "no-cache"
# The pages: only this origin's files, no inline script or style (data: images only: the
# pages' empty icon, `data:,`, which spares the browser a /favicon.ico request).
CONTENT_SECURITY_POLICY: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; font-src 'self'; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
# GraphiQL's alone: inline styles for its React components (style attributes); fonts and
# images may be data: URIs (GraphiQL's CSS inlines its fonts).
GRAPHIQL_POLICY: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
# A static file opened directly as a document (an SVG, a script) runs nothing on this
# origin; as a subresource of a page (script, style, image, fetch) it is not affected.
STATIC_POLICY: Final = "default-src 'none'; sandbox"
# The error page (auth.signin.pages.html_page) has no script and one inline <style>.
ERROR_PAGE_POLICY: Final = (
    "default-src 'none'; style-src 'unsafe-inline'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
PAGE_HEADERS: Final = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


@dataclass(frozen=True, slots=True)
class StaticFile:
    body: bytes
    content_type: str
    etag: str
    cache_control: str


def load_static(root: Path = WEB_ROOT) -> dict[str, StaticFile]:
    """Every servable file under `root`, by its path relative to it ('app/diary.js')."""
    files: dict[str, StaticFile] = {}
    for path in sorted(root.rglob("*")):
        content_type = CONTENT_TYPES.get(path.suffix)
        if content_type is None or not path.is_file():
            continue
        relative = path.relative_to(root).as_posix()
        body = path.read_bytes()
        cache = IMMUTABLE if relative.startswith("vendor/") else REVALIDATE
        etag = f'"{hashlib.sha256(body).hexdigest()[:32]}"'
        files[relative] = StaticFile(body, content_type, etag, cache)
    return files


def load_page(name: str, root: Path = WEB_ROOT) -> bytes:
    return (root / "pages" / name).read_bytes()


def page_response(body: bytes, policy: str = CONTENT_SECURITY_POLICY) -> Response:
    headers = {**PAGE_HEADERS, "Content-Security-Policy": policy}
    return Response(body, media_type="text/html; charset=utf-8", headers=headers)


def sign_in_redirect(path: str) -> Response:
    """303 to the sign-in page, coming back to `path` afterwards."""
    target = f"{SIGN_IN_PATH}?return_to={quote(path, safe='')}"
    return RedirectResponse(target, status_code=303, headers={"Cache-Control": "no-store"})


class WebPages:
    """The routes of the pages and of /static (see the module docstring)."""

    def __init__(
        self, settings: Settings, pool: Callable[[], asyncpg.Pool], root: Path = WEB_ROOT
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.static = load_static(root)
        self.pages = {path: load_page(name, root) for path, (name, _) in PAGES.items()}
        self.graphiql = load_page("graphiql.html", root)

    def routes(self) -> list[BaseRoute]:
        routes: list[BaseRoute] = [
            Route("/", self.landing, methods=["GET"]),
            Route(STATIC_PREFIX + "{path:path}", self.static_file, methods=["GET"]),
        ]
        routes.extend(Route(path, self.page, methods=["GET"]) for path in PAGES)
        return routes

    def graphiql_response(self) -> Response:
        return page_response(self.graphiql, GRAPHIQL_POLICY)

    async def static_file(self, request: Request) -> Response:
        found = self.static.get(request.path_params["path"])
        if found is None:
            return Response("Not Found", status_code=404, media_type="text/plain")
        etag = "W/" + found.etag if self.gzipped(request, found) else found.etag
        headers = {
            "Cache-Control": found.cache_control,
            "ETag": etag,
            "Vary": "Accept-Encoding",
            "Content-Security-Policy": STATIC_POLICY,
            "X-Content-Type-Options": "nosniff",
        }
        if _none_match(request.headers.get("if-none-match"), found.etag):
            return Response(status_code=304, headers=headers)
        return Response(found.body, media_type=found.content_type, headers=headers)

    def gzipped(self, request: Request, found: StaticFile) -> bool:
        """Whether the compression middleware gzips this file's 200 for this request (and
        so sends its ETag weak): the 304 then carries the same weak ETag (RFC 9110 15.4.5)."""
        threshold = self.settings.compression_min_bytes
        return (
            threshold > 0
            and request.method != "HEAD"
            and len(found.body) >= threshold
            and compressible(found.content_type)
            and accepts_gzip(request.headers.get("accept-encoding"))
        )

    async def landing(self, request: Request) -> Response:
        try:
            viewer = await self.viewer(request)
        except HttpError as error:
            return error_page(error)
        if viewer is None:
            return self.sign_in(request, "/")
        return _redirect(LANDING[viewer.role])

    async def page(self, request: Request) -> Response:
        path = request.url.path
        try:
            viewer = await self.viewer(request)
        except HttpError as error:
            return error_page(error)
        if viewer is None:
            query = request.url.query
            return self.sign_in(request, f"{path}?{query}" if query else path)
        if viewer.role not in PAGES[path][1]:
            return _redirect(LANDING[viewer.role])
        return page_response(self.pages[path])

    def sign_in(self, request: Request, return_to: str) -> Response:
        """The redirect to the sign-in page, clearing a session cookie that did not sign in."""
        response = sign_in_redirect(return_to)
        if request.cookies.get(self.settings.auth.session_cookie):
            clear_session_cookie(response, self.settings)
        return response

    async def viewer(self, request: Request) -> Viewer | None:
        """The person of the session cookie; None without one or for an ended session
        (HttpError when the session cannot be checked, e.g. a statement timeout: 503)."""
        cookie = request.cookies.get(self.settings.auth.session_cookie)
        if not cookie:
            return None
        try:
            viewer = await authenticate_cookie(cookie, self.settings, self.pool())
        except HttpError as error:
            if error.status == 401:
                return None
            raise
        return None if viewer.is_client else viewer


def error_page(error: HttpError) -> Response:
    """A page saying why the page cannot be shown now (the Russian message and the code)."""
    body = (
        f'<h1>Страница недоступна</h1><p class="error">{escape(error.message)}</p>'
        f'<p class="code">Код: {escape(error.code.value)}</p>'
    )
    response = html_page("Страница недоступна", body, status=error.status)
    response.headers.update(
        {
            **error.headers,
            "Cache-Control": "no-store",
            "Content-Security-Policy": ERROR_PAGE_POLICY,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "same-origin",
        }
    )
    return response


def _redirect(path: str) -> Response:
    return RedirectResponse(path, status_code=303, headers={"Cache-Control": "no-store"})


def _none_match(header: str | None, etag: str) -> bool:
    """Whether `If-None-Match` matches `etag`: `*`, or the tag compared weakly (RFC 9110
    13.1.2: `W/"x"` and `"x"` match, as the gzip's weak tag must)."""
    if not header:
        return False
    tags = {tag.strip().removeprefix("W/") for tag in header.split(",")}
    return "*" in tags or etag.removeprefix("W/") in tags

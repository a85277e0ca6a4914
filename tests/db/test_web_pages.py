"""The web pages and their static files over HTTP (gateway.http.pages): content types and
cache headers, the landing of each role, sign-in redirects, GraphiQL from local files only.
What the pages do in a browser is in tests/browser."""

from __future__ import annotations

import dataclasses
import re

import asyncpg
import httpx
import pytest

from auth.store.accounts import ensure_demo_account
from auth.store.sessions import ClientKind, revoke_session, start_session
from fixtures.demo import demo_account
from gateway.app import create_app
from gateway.core.db import create_pool
from gateway.core.settings import PROJECT_ROOT, Settings

HTML = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
GRAPHIQL_JS = "/static/vendor/graphiql/graphiql-3.8.3.min.js"


async def _cookie(pool: asyncpg.Pool, settings: Settings, key: str) -> tuple[str, str]:
    """A browser session of a demo account: (session id, cookie header value)."""
    account_id = await ensure_demo_account(pool, demo_account(key))
    issued = await start_session(
        pool, settings, account_id=account_id, kind=ClientKind.BROWSER, method="ESIA"
    )
    return issued.session_id, f"{settings.auth.session_cookie}={issued.cookie_value}"


async def test_vendor_files_are_cached_for_a_year(client: httpx.AsyncClient) -> None:
    response = await client.get(GRAPHIQL_JS)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/javascript; charset=utf-8"
    assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
    expected = (PROJECT_ROOT / "web/vendor/graphiql/graphiql-3.8.3.min.js").read_bytes()
    assert response.content == expected
    css = await client.get("/static/vendor/graphiql/graphiql-3.8.3.min.css")
    assert css.headers["content-type"] == "text/css; charset=utf-8"


async def test_own_files_are_revalidated_by_etag(client: httpx.AsyncClient) -> None:
    first = await client.get("/static/app/api.js")
    assert first.status_code == 200
    assert first.headers["cache-control"] == "no-cache"
    assert first.headers["x-content-type-options"] == "nosniff"
    again = await client.get("/static/app/api.js", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    document = await client.get("/static/documents/DiaryChildren.graphql")
    assert document.status_code == 200 and "query DiaryChildren" in document.text


@pytest.mark.parametrize(
    "path", ["/static/pages/diary.html", "/static/vendor/graphiql/README.md", "/static/../x.js"]
)
async def test_only_static_suffixes_are_served(client: httpx.AsyncClient, path: str) -> None:
    assert (await client.get(path)).status_code == 404


async def test_graphiql_page_loads_only_local_files(client: httpx.AsyncClient) -> None:
    response = await client.get("/graphql", headers=HTML)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    policy = response.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "script-src 'self';" in policy
    assert "style-src 'self' 'unsafe-inline'" in policy  # GraphiQL's style attributes only
    references = re.findall(r'(?:src|href)="([^"]+)"', response.text)
    assert GRAPHIQL_JS in references
    assert all(ref.startswith("/static/") or ref.startswith("data:") for ref in references)
    assert "unpkg" not in response.text and "cdn" not in response.text.lower()


async def test_no_graphiql_page_when_settings_forbid(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    app = create_app(dataclasses.replace(settings, graphiql=False), pool=pool)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as client:
        response = await client.get("/graphql", headers=HTML)
    assert response.status_code == 400
    assert "graphiql" not in response.text.lower()


@pytest.mark.parametrize("path", ["/", "/diary", "/school", "/analytics"])
async def test_without_a_session_pages_send_to_sign_in(
    client: httpx.AsyncClient, path: str
) -> None:
    response = await client.get(path, headers=HTML)
    assert response.status_code == 303
    assert response.headers["location"] == f"/auth/login?return_to=%2F{path[1:]}"
    assert response.headers["cache-control"] == "no-store"


async def test_sign_in_comes_back_to_the_same_address(client: httpx.AsyncClient) -> None:
    """The child and the week in the address survive the sign-in (the review found the
    query dropped: back at /diary, not at the week the link named)."""
    response = await client.get("/diary?child=172&week=2026-11-23", headers=HTML)
    assert response.status_code == 303
    assert response.headers["location"] == (
        "/auth/login?return_to=%2Fdiary%3Fchild%3D172%26week%3D2026-11-23"
    )


@pytest.mark.parametrize(
    ("key", "landing", "elsewhere"),
    [
        ("parent-two-schools", "/diary", "/school"),
        ("student-young", "/diary", "/analytics"),
        ("school-admin", "/school", "/diary"),
        ("regional-analyst", "/analytics", "/diary"),
    ],
)
async def test_each_role_lands_on_its_page(
    client: httpx.AsyncClient,
    pool: asyncpg.Pool,
    settings: Settings,
    key: str,
    landing: str,
    elsewhere: str,
) -> None:
    _, cookie = await _cookie(pool, settings, key)
    headers = {**HTML, "Cookie": cookie}
    root = await client.get("/", headers=headers)
    assert (root.status_code, root.headers["location"]) == (303, landing)
    page = await client.get(landing, headers=headers)
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"
    policy = page.headers["content-security-policy"]
    assert "style-src 'self';" in policy and "unsafe-inline" not in policy
    assert "font-src 'self';" in policy and "frame-ancestors 'none'" in policy
    assert '<html lang="ru">' in page.text and 'name="viewport"' in page.text
    other = await client.get(elsewhere, headers=headers)
    assert (other.status_code, other.headers["location"]) == (303, landing)


async def test_an_ended_session_is_sent_to_sign_in_and_its_cookie_cleared(
    client: httpx.AsyncClient, pool: asyncpg.Pool, settings: Settings
) -> None:
    session_id, cookie = await _cookie(pool, settings, "parent-one-school")
    await revoke_session(pool, session_id)
    response = await client.get("/diary", headers={**HTML, "Cookie": cookie})
    assert response.status_code == 303
    assert response.headers["location"] == "/auth/login?return_to=%2Fdiary"
    assert "Max-Age=0" in response.headers["set-cookie"]


async def test_the_landing_clears_a_cookie_that_did_not_sign_in(
    client: httpx.AsyncClient, pool: asyncpg.Pool, settings: Settings
) -> None:
    """`/` with an ended session: to the sign-in page and the cookie cleared, as the pages
    do (the review found the landing leaving it in place)."""
    session_id, cookie = await _cookie(pool, settings, "parent-one-school")
    await revoke_session(pool, session_id)
    response = await client.get("/", headers={**HTML, "Cookie": cookie})
    assert (response.status_code, response.headers["location"]) == (
        303,
        "/auth/login?return_to=%2F",
    )
    cleared = response.headers["set-cookie"]
    assert cleared.startswith(f"{settings.auth.session_cookie}=") and "Max-Age=0" in cleared


async def test_the_error_page_carries_the_pages_security_headers(
    database_url: str,
    settings: Settings,
    pool: asyncpg.Pool,
    owner_conn: asyncpg.Connection,
) -> None:
    """A session that cannot be checked in time: the 503 page, with a policy allowing no
    script and no framing, and nosniff (the review found them missing on it)."""
    _, cookie = await _cookie(pool, settings, "parent-one-school")
    quick = dataclasses.replace(
        settings, statement_timeout_ms=200, pool_min_size=1, pool_max_size=1
    )
    slow_pool = await create_pool(database_url, quick)
    transport = httpx.ASGITransport(app=create_app(quick, pool=slow_pool))
    locked = owner_conn.transaction()
    await locked.start()
    try:
        await owner_conn.execute("LOCK TABLE gateway.sessions IN ACCESS EXCLUSIVE MODE")
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as slow:
            response = await slow.get("/diary", headers={**HTML, "Cookie": cookie})
    finally:
        await locked.rollback()
        await slow_pool.close()
    assert response.status_code == 503 and "Страница недоступна" in response.text
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
    assert "script-src" not in policy
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("path", ["/static/app/api.js", "/static/app/viewer-page.js"])
async def test_static_files_vary_and_run_nothing_as_documents(
    client: httpx.AsyncClient, path: str
) -> None:
    """Every static answer says it varies by Accept-Encoding (also below the gzip threshold,
    also a 304), revalidates with `If-None-Match: *`, and opened directly as a document
    runs nothing on this origin (`sandbox`, no sources)."""
    response = await client.get(path, headers={"Accept-Encoding": "identity"})
    assert response.status_code == 200
    assert response.headers["vary"] == "Accept-Encoding"
    assert response.headers["content-security-policy"] == "default-src 'none'; sandbox"
    any_tag = await client.get(path, headers={"Accept-Encoding": "identity", "If-None-Match": "*"})
    assert (any_tag.status_code, any_tag.content) == (304, b"")
    assert any_tag.headers["vary"] == "Accept-Encoding"
    assert any_tag.headers["etag"] == response.headers["etag"]
    other = await client.get(
        path, headers={"Accept-Encoding": "identity", "If-None-Match": '"0123"'}
    )
    assert other.status_code == 200

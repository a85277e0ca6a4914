"""GraphiQL works offline: every file it needs comes from the gateway (web/vendor/graphiql),
and its requests carry the browser's session cookie to POST /graphql."""

from __future__ import annotations

import pytest
from playwright.async_api import Page, expect

from tests.support.live_server import LiveServer

EDITOR = ".graphiql-query-editor .CodeMirror"


@pytest.fixture(scope="module")
def live_env() -> dict[str, str]:
    """A developer's GraphiQL runs any query with the session cookie only where the cookie
    is not limited to registered documents (otherwise a bearer token in Headers)."""
    return {"SCHOOL_GATEWAY_COOKIE_REGISTERED_ONLY": "0"}


async def test_graphiql_renders_from_local_files(live: LiveServer, page: Page) -> None:
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    response = await page.goto(f"{live.url}/graphql")
    assert response is not None and response.status == 200
    await expect(page.locator(EDITOR)).to_be_visible(timeout=15_000)
    await expect(page.locator(EDITOR)).to_contain_text("viewer")
    scripts = [url for url in requested if url.endswith(".js")]
    assert f"{live.url}/static/vendor/graphiql/graphiql-3.8.3.min.js" in scripts
    assert all(url.startswith(live.url) for url in requested), requested


async def test_graphiql_runs_a_query_as_the_signed_in_person(live: LiveServer, page: Page) -> None:
    await page.goto(f"{live.url}/auth/login")
    await page.fill("#login", "smirnov.petr")
    await page.fill("#password", "Dnevnik-2026")
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{live.url}/diary")
    await page.goto(f"{live.url}/graphql")
    await expect(page.locator(EDITOR)).to_be_visible(timeout=15_000)
    await page.click(".graphiql-execute-button")
    result = page.locator(".graphiql-response .CodeMirror")
    await expect(result).to_contain_text("Смирнов Пётр Алексеевич", timeout=15_000)
    await expect(result).to_contain_text("STUDENT")

"""GraphiQL works offline: every file it needs comes from the gateway (web/vendor/graphiql),
and its requests go to POST /graphql of the same origin. As in the demo, the session cookie
alone runs the registered documents only, so a developer's free query needs a bearer
token in GraphiQL's Headers."""

from __future__ import annotations

import json

from playwright.async_api import Page, expect

from tests.support.live_server import LiveServer

EDITOR = ".graphiql-query-editor .CodeMirror"
RESPONSE = ".graphiql-response .CodeMirror"
LOAD_TIMEOUT_MS = 15_000


async def open_graphiql(page: Page, live: LiveServer) -> None:
    response = await page.goto(f"{live.url}/graphql")
    assert response is not None and response.status == 200
    await expect(page.locator(EDITOR)).to_be_visible(timeout=LOAD_TIMEOUT_MS)


async def test_graphiql_renders_from_local_files(live: LiveServer, page: Page) -> None:
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    await open_graphiql(page, live)
    await expect(page.locator(EDITOR)).to_contain_text("viewer")
    scripts = [url for url in requested if url.endswith(".js")]
    assert f"{live.url}/static/vendor/graphiql/graphiql-3.8.3.min.js" in scripts
    assert all(url.startswith(live.url) for url in requested), requested


async def test_graphiql_runs_a_free_query_with_a_bearer_token(
    live: LiveServer, page: Page, tokens: dict[str, str]
) -> None:
    await page.goto(f"{live.url}/auth/login")
    await page.fill("#login", "smirnov.petr")
    await page.fill("#password", "Dnevnik-2026")
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{live.url}/diary")
    await open_graphiql(page, live)
    await page.click(".graphiql-execute-button")
    result = page.locator(RESPONSE)
    await expect(result).to_contain_text("DOCUMENT_NOT_REGISTERED", timeout=LOAD_TIMEOUT_MS)

    headers = json.dumps({"Authorization": f"Bearer {tokens['parent-two-schools']}"})
    await page.get_by_role("button", name="Headers").click()
    # The shown editor of the tools pane (the variables editor is there too, hidden).
    await page.eval_on_selector(
        ".graphiql-editor-tool .graphiql-editor:not(.hidden) .CodeMirror",
        "(node, text) => node.CodeMirror.setValue(text)",
        headers,
    )
    await page.click(".graphiql-execute-button")
    await expect(result).to_contain_text("Кузнецов Андрей Сергеевич", timeout=LOAD_TIMEOUT_MS)
    await expect(result).to_contain_text("PARENT")

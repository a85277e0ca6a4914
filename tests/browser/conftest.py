"""Browser tests: Playwright for Python driving the system's Chromium (Debian's `chromium`;
Playwright's own browser download is not used) against the real application under uvicorn
on a free 127.0.0.1 port and the test database.

The browser is `CHROMIUM` (a path) or /usr/bin/chromium; without one every test here is
skipped (./scripts/test says so in one line). Every request of every page is intercepted:
one for a host other than 127.0.0.1 is aborted and fails the test, and so does an uncaught
script error or a Content-Security-Policy violation in a page.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest
from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Error,
    Page,
    Playwright,
    Route,
    ViewportSize,
    async_playwright,
)

from tests.support.environment import gateway_env
from tests.support.live_server import LiveServer, live_server

DEFAULT_CHROMIUM = "/usr/bin/chromium"
# As this machine's notes say: no sandbox (root), no GPU, and nothing Chromium would fetch
# by itself (its connections are refused here and would be noise).
CHROMIUM_ARGS = [
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LOCAL_HOST = "127.0.0.1"
DESKTOP: ViewportSize = {"width": 1280, "height": 800}


def chromium_path() -> str | None:
    """The Chromium to drive: `CHROMIUM`, else /usr/bin/chromium; None when absent."""
    path = os.environ.get("CHROMIUM") or DEFAULT_CHROMIUM
    return path if Path(path).is_file() and os.access(path, os.X_OK) else None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if chromium_path() is not None:
        return
    skip = pytest.mark.skip(reason="no Chromium (set CHROMIUM or install Debian's chromium)")
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.path).parents:
            item.add_marker(skip)


@dataclass(slots=True)
class Watch:
    """What a browser context did that a test must not: other hosts, script errors."""

    foreign: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        return [f"request to another host: {url}" for url in self.foreign] + self.errors


@pytest.fixture(scope="module")
def live_env() -> dict[str, str]:
    """Settings of the module's server over the tests' usual ones: as the demo runs it, a
    browser's cookie may run the registered documents (web/documents) only."""
    return {"SCHOOL_GATEWAY_COOKIE_REGISTERED_ONLY": "1"}


@pytest.fixture(scope="module")
async def live(
    database_url: str, data_dir: Path, pool: asyncpg.Pool, live_env: dict[str, str]
) -> AsyncIterator[LiveServer]:
    env = {**gateway_env(database_url, data_dir), **live_env}
    async with live_server(env, pool) as server:
        yield server


@pytest.fixture(scope="session")
async def playwright() -> AsyncIterator[Playwright]:
    async with async_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
async def chromium(playwright: Playwright) -> AsyncIterator[Browser]:
    path = chromium_path()
    assert path is not None
    browser = await playwright.chromium.launch(
        executable_path=path,
        headless=True,
        chromium_sandbox=False,
        args=CHROMIUM_ARGS,
        # Playwright turns the back/forward cache off; a real browser has it on, and it is
        # how a page could come back after sign-out.
        ignore_default_args=["--disable-back-forward-cache"],
    )
    try:
        yield browser
    finally:
        await browser.close()


@pytest.fixture
def watch() -> Watch:
    return Watch()


@pytest.fixture
async def context(chromium: Browser, watch: Watch) -> AsyncIterator[BrowserContext]:
    """A fresh browser profile (no cookies) whose every request is checked."""
    context = await chromium.new_context(viewport=DESKTOP, locale="ru-RU")

    async def only_local(route: Route) -> None:
        if urlsplit(route.request.url).hostname == LOCAL_HOST:
            await route.continue_()
        else:
            watch.foreign.append(route.request.url)
            await route.abort()

    await context.route("**/*", only_local)
    try:
        yield context
    finally:
        await context.close()
    assert watch.problems() == []


@pytest.fixture
async def page(context: BrowserContext, watch: Watch) -> Page:
    page = await context.new_page()

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error" and "Content Security Policy" in message.text:
            watch.errors.append(f"console: {message.text}")

    def on_page_error(error: Error) -> None:
        watch.errors.append(f"script error: {error}")

    page.on("console", on_console)
    page.on("pageerror", on_page_error)
    return page

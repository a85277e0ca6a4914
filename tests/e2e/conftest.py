"""Fixtures of the end-to-end tests: a live server of the real app and a browser-like client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.conftest import _test_env
from tests.support.esia_flow import BROWSER
from tests.support.live_server import LiveServer, live_server


@pytest.fixture(scope="module")
async def live(database_url: str, data_dir: Path, pool: asyncpg.Pool) -> AsyncIterator[LiveServer]:
    async with live_server(_test_env(database_url, data_dir), pool) as server:
        yield server


@pytest.fixture
async def browser(live: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=live.url, headers=BROWSER, timeout=30) as client:
        yield client

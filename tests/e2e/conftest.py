"""Fixtures of the end-to-end tests: a live server of the real app, a browser-like client,
a student planted for password sign-in."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.support.environment import gateway_env
from tests.support.esia_flow import BROWSER
from tests.support.live_server import LiveServer, live_server
from tests.support.password_signin import PlantedStudent, planted_student


@pytest.fixture(scope="module")
async def live(database_url: str, data_dir: Path, pool: asyncpg.Pool) -> AsyncIterator[LiveServer]:
    async with live_server(gateway_env(database_url, data_dir), pool) as server:
        yield server


@pytest.fixture
async def browser(live: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=live.url, headers=BROWSER, timeout=30) as client:
        yield client


@pytest.fixture
async def planted(owner_conn: asyncpg.Connection) -> AsyncIterator[PlantedStudent]:
    """A generated student with a login, given a known password and an age of 12."""
    async with planted_student(owner_conn) as student:
        yield student

"""/livez and /readyz through the real app: readiness follows the database, the pool and
the schema; liveness never touches the database."""

from __future__ import annotations

from dataclasses import replace

import asyncpg
import httpx
import pytest
from starlette.types import ASGIApp

from gateway.app import create_app
from gateway.core.db import create_pool
from gateway.core.settings import Settings
from gateway.http import health
from tests.support.recorder_fixtures import open_closed_pool


async def test_a_ready_process_says_so(client: httpx.AsyncClient) -> None:
    ready = await client.get("/readyz")
    assert ready.status_code == 200, ready.text
    body = ready.json()
    assert body["status"] == "ready"
    assert body["pool"]["max"] >= 1
    assert ready.headers["cache-control"] == "no-store"
    alive = await client.get("/livez")
    assert (alive.status_code, alive.json()) == (200, {"status": "alive"})


async def _get(app: ASGIApp, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        return await client.get(path)


async def test_without_the_database_it_is_alive_but_not_ready(
    database_url: str, settings: Settings
) -> None:
    down = await open_closed_pool(database_url, settings)
    app = create_app(settings, pool=down)
    ready = await _get(app, "/readyz")
    assert ready.status_code == 503, ready.text
    assert ready.json()["failed"] == ["database"]
    assert ready.headers["retry-after"] == "1"
    alive = await _get(app, "/livez")
    assert alive.status_code == 200


async def test_a_missing_relation_is_not_ready(
    settings: Settings, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        health, "REQUIRED_RELATIONS", (*health.REQUIRED_RELATIONS, "gateway.not_migrated_yet")
    )
    ready = await _get(create_app(settings, pool=pool), "/readyz")
    assert ready.status_code == 503
    assert ready.json()["failed"] == ["schema"]
    assert ready.json()["missing"] == ["gateway.not_migrated_yet"]


async def test_an_exhausted_pool_is_not_ready(
    database_url: str, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(health, "PROBE_TIMEOUT_S", 0.3)
    small = replace(settings, pool_min_size=1, pool_max_size=1)
    one = await create_pool(database_url, small)
    try:
        async with one.acquire():
            ready = await _get(create_app(small, pool=one), "/readyz")
        assert ready.status_code == 503
        assert ready.json()["failed"] == ["pool"]
        assert ready.json()["pool"] == {"size": 1, "idle": 0, "max": 1}
    finally:
        await one.close()

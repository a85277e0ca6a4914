"""The analytics service: background refresh, its own pool (exhaustion, a replica URL),
and its settings."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest
from starlette.applications import Starlette

from gateway.core.settings import Settings, SettingsError
from resolvers.analytics.cells import CellFilter
from resolvers.analytics.service import (
    APPLICATION_NAME,
    AnalyticsService,
    AnalyticsUnavailableError,
    refresh_cells,
)
from tests.support.analytics_support import analytics_app, analytics_client, ask, codes

ANALYST = "regional-analyst"
QUERY = (
    "{ regionalAnalytics { freshness { refreshedAt } "
    "marks(groupBy: [MUNICIPALITY]) { total { markCount weightedAverage } "
    "groups { key { municipality { id } } markCount weightedAverage } } } }"
)


@pytest.fixture(scope="module", autouse=True)
async def _close_analytics(app: Starlette) -> AsyncIterator[None]:
    yield
    await app.state.services.close()


async def test_background_refresh_keeps_figures_fresh(
    settings: Settings, pool: asyncpg.Pool, tokens: dict[str, str]
) -> None:
    async with analytics_client(settings, pool, refresh_seconds=1) as client:
        first = await ask(client, tokens[ANALYST], QUERY)
        assert "errors" not in first, first
        stamp = datetime.fromisoformat(
            first["data"]["regionalAnalytics"]["freshness"]["refreshedAt"]
        )
        for _ in range(40):
            await asyncio.sleep(0.25)
            body = await ask(client, tokens[ANALYST], QUERY)
            newer = body["data"]["regionalAnalytics"]["freshness"]["refreshedAt"]
            if datetime.fromisoformat(newer) > stamp:
                break
        else:
            raise AssertionError("the background refresh did not run")
        assert (
            body["data"]["regionalAnalytics"]["marks"]
            == first["data"]["regionalAnalytics"]["marks"]
        )


async def test_exhausted_analytics_pool_times_out_without_touching_the_diary(
    settings: Settings, pool: asyncpg.Pool, tokens: dict[str, str]
) -> None:
    options = {"pool_max_size": 1, "statement_timeout_ms": 300}
    async with analytics_app(settings, pool, **options) as (app, client):
        service: AnalyticsService = app.state.services.analytics
        async with service.connection():  # the only analytics connection is busy
            body = await ask(client, tokens[ANALYST], QUERY)
            assert codes(body) == ["TIMEOUT"]
            assert body["data"] == {"regionalAnalytics": None}
            diary = await ask(client, tokens["parent-two-schools"], "{ myChildren { id } }")
            assert "errors" not in diary and len(diary["data"]["myChildren"]) == 2
        assert "errors" not in await ask(client, tokens[ANALYST], QUERY)


async def test_replica_url_gives_the_same_figures(
    settings: Settings, pool: asyncpg.Pool, tokens: dict[str, str], database_url: str
) -> None:
    """DATABASE_ANALYTICS_URL (here the same database, standing in for a replica)."""
    async with analytics_client(settings, pool) as client:
        local = await ask(client, tokens[ANALYST], QUERY)
    async with analytics_client(settings, pool, database_url=database_url) as client:
        replica = await ask(client, tokens[ANALYST], QUERY)
    assert "errors" not in replica, replica
    assert (
        replica["data"]["regionalAnalytics"]["marks"] == local["data"]["regionalAnalytics"]["marks"]
    )


BASE_ENV = {"SCHOOL_GATEWAY_DEV": "1"}


def test_settings_defaults_and_overrides() -> None:
    defaults = Settings.from_env(BASE_ENV).analytics
    assert (defaults.min_group_size, defaults.pool_max_size, defaults.rate_limit) == (10, 2, 60)
    assert defaults.database_url is None and defaults.cpu_share_percent == 25
    env = {
        **BASE_ENV,
        "SCHOOL_GATEWAY_MIN_GROUP_SIZE": "5",
        "DATABASE_ANALYTICS_URL": "postgresql://replica/school",
        "SCHOOL_GATEWAY_ANALYTICS_POOL_MAX": "4",
        "SCHOOL_GATEWAY_ANALYTICS_STATEMENT_TIMEOUT_MS": "30000",
        "SCHOOL_GATEWAY_ANALYTICS_REFRESH_SECONDS": "0",
        "SCHOOL_GATEWAY_ANALYTICS_RATE_LIMIT": "10",
    }
    analytics = Settings.from_env(env).analytics
    assert analytics.min_group_size == 5 and analytics.pool_max_size == 4
    assert analytics.database_url == "postgresql://replica/school"
    assert analytics.statement_timeout_ms == 30000 and analytics.refresh_seconds == 0
    assert analytics.rate_limit == 10


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SCHOOL_GATEWAY_MIN_GROUP_SIZE", "1"),
        ("SCHOOL_GATEWAY_MIN_GROUP_SIZE", "ten"),
        ("DATABASE_ANALYTICS_URL", "mysql://replica/school"),
        ("SCHOOL_GATEWAY_ANALYTICS_POOL_MAX", "0"),
        ("SCHOOL_GATEWAY_ANALYTICS_CPU_SHARE", "0"),
    ],
)
def test_bad_settings_are_refused(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({**BASE_ENV, name: value})


async def test_pool_size_caps_concurrent_analytics_statements(
    settings: Settings, pool: asyncpg.Pool, owner_conn: asyncpg.Connection
) -> None:
    """Five heavy statements at once: never more than two run; the rest wait their turn."""
    async with analytics_app(settings, pool, pool_max_size=2) as (app, _client):
        service: AnalyticsService = app.state.services.analytics

        async def heavy() -> None:
            async with service.connection() as conn:
                await conn.execute("SELECT pg_sleep(0.3)")

        started = asyncio.get_running_loop().time()
        work = asyncio.gather(*(heavy() for _ in range(5)))
        peak = 0
        while not work.done():
            active = await owner_conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 "
                "AND query LIKE 'SELECT pg_sleep%' AND state = 'active'",
                APPLICATION_NAME,
            )
            peak = max(peak, int(active))
            await asyncio.sleep(0.02)
        await work
        elapsed = asyncio.get_running_loop().time() - started
    assert peak == 2
    assert elapsed >= 0.85  # three waves of 0.3 s


async def test_waiting_too_long_for_an_analytics_turn_times_out(
    settings: Settings, pool: asyncpg.Pool, tokens: dict[str, str]
) -> None:
    async with analytics_app(settings, pool, statement_timeout_ms=300) as (app, client):
        service: AnalyticsService = app.state.services.analytics
        async with service.turn():  # another answer is being assembled
            body = await ask(client, tokens[ANALYST], QUERY)
        assert codes(body) == ["TIMEOUT"]
        assert body["errors"][0]["path"] == ["regionalAnalytics", "marks"]
        assert body["data"] == {"regionalAnalytics": None}


async def test_units_of_another_k_are_never_served(
    settings: Settings, pool: asyncpg.Pool, tokens: dict[str, str], database_url: str
) -> None:
    """Another process (or `analytics-refresh` with another SCHOOL_GATEWAY_MIN_GROUP_SIZE)
    rebuilds the units for k = 2 between a request's check and its figures: the figures of
    the same snapshot are refused (SERVICE_UNAVAILABLE), never served as k = 10."""
    async with analytics_app(settings, pool) as (app, client):
        assert "errors" not in await ask(client, tokens[ANALYST], QUERY)  # built for k = 10
        service: AnalyticsService = app.state.services.analytics
        other = dataclasses.replace(
            settings, analytics=dataclasses.replace(settings.analytics, min_group_size=2)
        )
        await refresh_cells(database_url, other)
        try:
            with pytest.raises(AnalyticsUnavailableError):
                await service.marks(
                    ["municipality_id"], CellFilter(), datetime.now(UTC), with_values=False
                )
            with pytest.raises(AnalyticsUnavailableError):
                await service.attendance(["code"], CellFilter(), datetime.now(UTC))
            # The next request rebuilds for its own k first, then answers.
            body = await ask(client, tokens[ANALYST], QUERY)
            assert "errors" not in body, body
        finally:
            await refresh_cells(database_url, settings)

"""The analytics refresh's VACUUM runs after the commit, outside any transaction, so under
the session's statement timeout (the login role's default through PgBouncer, 5 s there):
cancelled, it must not turn a committed refresh into a failed one (real PostgreSQL)."""

from __future__ import annotations

import logging

import asyncpg
import pytest

from gateway.core.settings import Settings
from resolvers.analytics import sql as data


async def test_a_vacuum_cancelled_by_the_session_timeout_leaves_the_refresh_done(
    settings: Settings,
    database_url: str,
    owner_url: str,
    pool: asyncpg.Pool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    del pool  # the journal seeded and the gateway's schema migrated
    # Another session holds a lock VACUUM waits for (the rebuild's writes do not), so the
    # vacuum outlives the session's 300 ms timeout however small the tables are.
    blocker = await asyncpg.connect(owner_url)
    conn = await asyncpg.connect(database_url, server_settings={"statement_timeout": "300"})
    try:
        async with blocker.transaction():
            await blocker.execute(
                "LOCK TABLE gateway.analytics_mark_unit_values IN SHARE UPDATE EXCLUSIVE MODE"
            )
            with caplog.at_level(logging.WARNING, logger=data.__name__):
                result = await data.refresh(
                    conn,
                    today=settings.today(),
                    min_group_size=settings.analytics.min_group_size,
                    timeout_ms=60_000,
                )
        stored = await data.freshness(conn)
    finally:
        await conn.close()
        await blocker.close()
    assert result is not None
    assert stored is not None and stored.refreshed_at == result.refreshed_at
    warnings = [r.getMessage() for r in caplog.records if r.name == data.__name__]
    assert warnings == [
        "analytics refresh: VACUUM cancelled by the statement timeout; autovacuum follows"
    ]

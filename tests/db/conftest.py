"""Fixtures shared by modules of tests/db (the suite's own are in tests/conftest.py)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import asyncpg
import pytest
from starlette.applications import Starlette

from gateway.core.settings import Settings
from resolvers.analytics.service import refresh_cells
from resolvers.changes.service import ChangeFeed


@pytest.fixture(scope="module")
async def analytics_units_afresh(settings: Settings, database_url: str) -> None:
    """Analytics units with every cell placed afresh for this module: units are sticky
    across refreshes, so another module's refreshes (of another journal, or of weakened
    rules) must not decide the placement a module compares with its model."""
    await refresh_cells(database_url, settings, restart=True)


@pytest.fixture
async def feed(app: Starlette, settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[ChangeFeed]:
    """A change feed of the test's own (no other test's subscribers in its dispatcher),
    without the per-account limit, whose sessions' recheck waits 300 s (its statement
    would come at any time; streams end only as the test makes them)."""
    changes = dataclasses.replace(settings.changes, per_account=1_000, recheck_s=300)
    own = ChangeFeed(
        dataclasses.replace(settings, changes=changes),
        lambda: pool,
        app.state.services.reference,
        app.state.auth.recorder,
    )
    try:
        yield own
    finally:
        await own.close()

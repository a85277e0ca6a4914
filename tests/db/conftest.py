"""Fixtures shared by modules of tests/db (the suite's own are in tests/conftest.py)."""

from __future__ import annotations

import pytest

from gateway.core.settings import Settings
from resolvers.analytics.service import refresh_cells


@pytest.fixture(scope="module")
async def analytics_units_afresh(settings: Settings, database_url: str) -> None:
    """Analytics units with every cell placed afresh for this module: units are sticky
    across refreshes, so another module's refreshes (of another journal, or of weakened
    rules) must not decide the placement a module compares with its model."""
    await refresh_cells(database_url, settings, restart=True)

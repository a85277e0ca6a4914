"""Regional analytics: its own pool, statement timeout and rate limit (issue 5).

PLACEHOLDER — helper AN implements this module.
"""

from __future__ import annotations

from collections.abc import Callable

import asyncpg

from gateway.settings import Settings


class AnalyticsService:
    """One per application; resolvers reach it as `info.context.app.analytics`."""

    def __init__(self, settings: Settings, diary_pool: Callable[[], asyncpg.Pool]) -> None:
        self.settings = settings
        self._diary_pool = diary_pool

    async def close(self) -> None:
        """Close what the service opened (its own pool, background refresh)."""

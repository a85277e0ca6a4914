"""Per-application services that resolvers reach through the context (`info.context.app`)."""

from __future__ import annotations

from dataclasses import dataclass

from resolvers.analytics.service import AnalyticsService


@dataclass(slots=True)
class AppServices:
    """Built once by gateway.app.create_app; never per request."""

    analytics: AnalyticsService | None = None

    async def close(self) -> None:
        if self.analytics is not None:
            await self.analytics.close()

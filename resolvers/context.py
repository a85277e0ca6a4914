"""What resolvers reach: the per-request `Context` (`info.context`) and the per-application
`AppServices` it carries (`info.context.app`)."""

from __future__ import annotations

from dataclasses import InitVar, dataclass, field
from datetime import date

import asyncpg

from auth.viewer import Viewer
from gateway.core.errors import UnauthenticatedError
from gateway.core.settings import Settings
from resolvers.analytics.service import AnalyticsService
from resolvers.changes.service import ChangeFeed
from resolvers.dashboard.service import DashboardService
from resolvers.diary.loaders import Loaders
from resolvers.diary.reference import ReferenceCache


@dataclass(slots=True)
class AppServices:
    """Built once by gateway.app.create_app; never per request."""

    analytics: AnalyticsService | None = None
    # The change feed (resolvers.changes.service); None where the app did not build one.
    changes: ChangeFeed | None = None
    # The diary's reference data, one copy per process (resolvers.diary.reference).
    reference: ReferenceCache = field(default_factory=ReferenceCache)

    async def close(self) -> None:
        if self.analytics is not None:
            await self.analytics.close()
        if self.changes is not None:
            await self.changes.close()


@dataclass(slots=True)
class Context:
    """Built once per request by the HTTP layer; nothing in it is shared between requests.

    Resolvers reach data only through their domain's loaders or service: the diary's
    `loaders`, the dashboard's `dashboard`, the analytics' `app.analytics`. The pool is
    given to those and kept by no field of the context. `primary` is the primary's pool
    when `pool` is a read replica's (None: `pool` is the primary's): what the gateway
    itself writes (sign-in events) is read there, never behind a replica's lag.
    """

    viewer: Viewer | None
    loaders: Loaders
    pool: InitVar[asyncpg.Pool]
    settings: Settings
    today: date
    dashboard: DashboardService = field(init=False)
    app: AppServices = field(default_factory=AppServices)
    # When the request's credentials stop being valid (Unix time; streams end then).
    credentials_expire_at: float | None = None
    primary: InitVar[asyncpg.Pool | None] = None
    # The signing key of the request's token (streams end once it is no longer accepted).
    credentials_key_id: str | None = None

    def __post_init__(self, pool: asyncpg.Pool, primary: asyncpg.Pool | None) -> None:
        accessed = self.loaders.accessed_student_ids
        self.dashboard = DashboardService(pool, self.viewer, accessed, primary=primary)

    def require_viewer(self) -> Viewer:
        """The authenticated viewer, or UNAUTHENTICATED."""
        if self.viewer is None:
            raise UnauthenticatedError()
        return self.viewer

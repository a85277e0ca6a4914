"""Settings of the regional analytics, read with the rest at start: `settings.analytics`.

- `SCHOOL_GATEWAY_MIN_GROUP_SIZE` (k, default 10): a base cell covering fewer distinct
  students is never part of a released figure (docs/analytics.md).
- `DATABASE_ANALYTICS_URL`: a replica for analytics reads (default: the diary database,
  through a pool of its own).
- `SCHOOL_GATEWAY_ANALYTICS_POOL_MAX` (default 2): the analytics pool's size, which caps
  how many analytics statements run at once.
- `SCHOOL_GATEWAY_ANALYTICS_STATEMENT_TIMEOUT_MS` (default 10000).
- `SCHOOL_GATEWAY_ANALYTICS_REFRESH_SECONDS` (default 3600; 0 = no background refresh).
- `SCHOOL_GATEWAY_ANALYTICS_REFRESH_TIMEOUT_MS` (default 600000): statement timeout of a
  refresh.
- `SCHOOL_GATEWAY_ANALYTICS_RATE_LIMIT` (default 60) calls of `regionalAnalytics` per
  client per `SCHOOL_GATEWAY_ANALYTICS_RATE_WINDOW_SECONDS` (default 60).
- `SCHOOL_GATEWAY_ANALYTICS_CPU_SHARE` (percent, default 25; 100 = no cap): the most of
  a serving process's event loop that assembling analytics answers may take.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from gateway.core.settings_readers import read_dsn, read_int


@dataclass(frozen=True, slots=True)
class AnalyticsSettings:
    """The analytics knobs; defaults are production defaults."""

    min_group_size: int = 10
    database_url: str | None = None
    pool_max_size: int = 2
    statement_timeout_ms: int = 10_000
    refresh_seconds: int = 3600
    refresh_timeout_ms: int = 600_000
    rate_limit: int = 60
    rate_window_seconds: int = 60
    cpu_share_percent: int = 25

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> AnalyticsSettings:
        """Read and validate the variables above (`SettingsError` names a bad one)."""
        prefix = "SCHOOL_GATEWAY_ANALYTICS_"
        return cls(
            min_group_size=read_int(env, "SCHOOL_GATEWAY_MIN_GROUP_SIZE", 10, low=2, high=10_000),
            database_url=read_dsn(env, "DATABASE_ANALYTICS_URL"),
            pool_max_size=read_int(env, prefix + "POOL_MAX", 2, low=1, high=50),
            statement_timeout_ms=read_int(
                env, prefix + "STATEMENT_TIMEOUT_MS", 10_000, low=100, high=3_600_000
            ),
            refresh_seconds=read_int(env, prefix + "REFRESH_SECONDS", 3600, low=0, high=604_800),
            refresh_timeout_ms=read_int(
                env, prefix + "REFRESH_TIMEOUT_MS", 600_000, low=1000, high=86_400_000
            ),
            rate_limit=read_int(env, prefix + "RATE_LIMIT", 60, low=1, high=100_000),
            rate_window_seconds=read_int(
                env, prefix + "RATE_WINDOW_SECONDS", 60, low=1, high=86_400
            ),
            cpu_share_percent=read_int(env, prefix + "CPU_SHARE", 25, low=1, high=100),
        )

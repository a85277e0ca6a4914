"""The direct way around a pooler (DATABASE_DIRECT_URL) for what needs a session of its own.

A transaction pooler hands a server session to another client after every transaction,
so a LISTEN sent through it listens on a session the gateway no longer holds. The change
feed's dispatcher therefore listens (and reads what it was told about) on a one-connection
pool of its own, opened on first use with the direct connection's startup parameters
and statement cache (it is PostgreSQL itself).
"""

from __future__ import annotations

import asyncio
import dataclasses

import asyncpg

from gateway.core.db import check_login, create_pool
from gateway.core.db_roles import UnsafeLoginError
from gateway.core.pooler import PoolerSetupError
from gateway.core.pooler_settings import PoolerSettings
from gateway.core.settings import Settings


class DirectPool:
    """A one-connection pool on DATABASE_DIRECT_URL, opened when first asked for."""

    def __init__(self, url: str, settings: Settings) -> None:
        self._url = url
        self._settings = dataclasses.replace(
            settings, pool_min_size=1, pool_max_size=1, pooler=PoolerSettings()
        )
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()

    async def get(self) -> asyncpg.Pool:
        if self._pool is None:
            async with self._opening:
                if self._pool is None:
                    self._pool = await create_pool(self._url, self._settings)
        return self._pool

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()


async def check_direct_login(url: str, settings: Settings) -> None:
    """`serve`'s check of DATABASE_DIRECT_URL before any worker starts, as the change
    feed's pool will open it (a direct connection): a superuser or a PgBouncer there is
    refused in one line naming the variable, not met at the first subscription."""
    try:
        await check_login(url, dataclasses.replace(settings, pooler=PoolerSettings()))
    except PoolerSetupError as error:
        if isinstance(error.__cause__, asyncpg.ProtocolViolationError):
            raise PoolerSetupError(
                f"DATABASE_DIRECT_URL refused a startup parameter ({error.__cause__}): it "
                "must lead to PostgreSQL itself, not to PgBouncer (the change feed's LISTEN "
                "needs a session of its own)"
            ) from None
        raise PoolerSetupError(f"DATABASE_DIRECT_URL: {error}") from None
    except UnsafeLoginError as error:
        raise UnsafeLoginError(f"DATABASE_DIRECT_URL: {error}") from None

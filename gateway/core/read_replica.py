"""The read replica (DATABASE_REPLICA_URL): its pool, and whether reads may go there now.

GraphQL queries read the diary, the dashboard and the response cache's versions on the
replica while it is available, and on the primary while it is not: a node never depends
on the replica to serve (its `/readyz` stays 200 while the primary is fine, the replica's
state in its details). Each request chooses one server for all of those reads
(`reads_pool`), so that a cached answer's versions and data always come from the same
server.

- The pool is opened at start (`open`, at most `OPEN_TIMEOUT_S`); a replica that cannot be
  reached then is one warning, and the node starts reading the primary.
- A connection-class failure on the replica (`gateway.core.outage.is_database_unavailable`)
  marks it unavailable (`failed`: one warning, no traceback); the request that met it is
  answered from the primary (gateway.http.endpoint retries a query once there), and so are
  the next ones.
- A background probe (every `probe_interval_s`: the pool opened if it is not, then
  `SELECT 1`) brings the replica back (one INFO line with how long it was away and how many
  requests read the primary meanwhile). The pool's connections are expired when it fails
  and when it is back, so that no connection to the old server is used again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Final

import asyncpg

from gateway.core.db import check_login
from gateway.core.outage import describe, is_database_unavailable, start_probe
from gateway.core.settings import Settings

log = logging.getLogger(__name__)

OPEN_TIMEOUT_S: Final = 5.0
PROBE_INTERVAL_S: Final = 1.0
PROBE_TIMEOUT_S: Final = 2.0
# How far behind the replica's replay is: 0 when it has replayed everything it received,
# the seconds since the last replayed commit otherwise, NULL when unknown (no commit
# replayed since it started, or the server is not in recovery).
REPLAY_LAG_SQL: Final = """
SELECT CASE
  WHEN NOT pg_is_in_recovery() THEN NULL
  WHEN pg_last_wal_receive_lsn() IS NOT NULL
       AND pg_last_wal_receive_lsn() <= pg_last_wal_replay_lsn() THEN 0.0
  ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8
END
"""
# The errors a database statement or connection attempt may end with.
DATABASE_ERRORS: Final = (
    OSError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
)


class ReadReplica:
    """DATABASE_REPLICA_URL's pool (opened by `open`, or given) and its availability."""

    def __init__(
        self,
        open_pool: Callable[[], Awaitable[asyncpg.Pool]] | None,
        *,
        pool: asyncpg.Pool | None = None,
        probe_interval_s: float = PROBE_INTERVAL_S,
        probe_timeout_s: float = PROBE_TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._open_pool = open_pool
        self.pool = pool
        self._owned = False  # whether `close` closes the pool (opened here, not given)
        self._interval = probe_interval_s
        self._timeout = probe_timeout_s
        self._clock = clock
        self._down_since: float | None = None
        self.reason: str | None = None  # why it is unavailable (readiness details)
        self.fallbacks = 0  # requests that read the primary since it became unavailable
        self.outages = 0  # times it became unavailable (for tests and operators)
        self._watcher: asyncio.Task[None] | None = None

    @property
    def available(self) -> bool:
        return self.pool is not None and self._down_since is None

    def reads_pool(self, primary: asyncpg.Pool) -> asyncpg.Pool:
        """Where a query reads now: the replica while available, else `primary`."""
        if self.pool is not None and self._down_since is None:
            return self.pool
        self.fallbacks += 1
        return primary

    async def open(self) -> None:
        """Open the pool (the lifespan's start): a replica that cannot be reached is a
        warning, its reads go to the primary until the probe opens it. Anything else (a
        refused login, a superuser DSN) is a configuration error and raised."""
        if self._open_pool is None or self.pool is not None:
            return
        try:
            async with asyncio.timeout(OPEN_TIMEOUT_S):
                self.pool = await self._open_pool()
            self._owned = True
        except (TimeoutError, *DATABASE_ERRORS) as error:
            if not isinstance(error, TimeoutError) and not is_database_unavailable(error):
                raise
            self.failed(error, "start")

    def failed(self, error: BaseException, where: str) -> None:
        """The replica could not be reached: reads go to the primary until the probe
        reaches it again (one warning per outage)."""
        if self._down_since is not None:
            return
        self._down_since = self._clock()
        self.reason = "database"
        self.fallbacks = 0
        self.outages += 1
        log.warning(
            "read replica unavailable (%s in %s): queries read the primary until it is back",
            describe(error),
            where,
        )
        self._watch()

    def _watch(self) -> None:
        self._watcher = start_probe(
            self._watcher, self._wait_until_back, "replica-probe", "read replica probe"
        )

    async def _wait_until_back(self) -> None:
        await self._expire()
        while self._down_since is not None:
            await asyncio.sleep(self._interval)
            if await self._answers():
                await self._expire()
                self._back()

    async def _expire(self) -> None:
        """No pooled connection to the server that failed is used again."""
        if self.pool is not None:
            await self.pool.expire_connections()

    async def _answers(self) -> bool:
        try:
            async with asyncio.timeout(self._timeout):
                if self.pool is None and self._open_pool is not None:
                    self.pool = await self._open_pool()
                    self._owned = True
                if self.pool is not None:
                    await self.pool.fetchval("SELECT 1")
        except (TimeoutError, *DATABASE_ERRORS) as error:
            log.debug("read replica still unavailable (%s)", describe(error))
            return False
        return self.pool is not None

    def _back(self) -> None:
        started, self._down_since = self._down_since, None
        self.reason = None
        if started is not None:
            log.info(
                "read replica is back after %.1f s (%d requests read the primary meanwhile)",
                self._clock() - started,
                self.fallbacks,
            )

    async def close(self) -> None:
        """Stop the probe; close the pool if it was opened here."""
        watcher, self._watcher = self._watcher, None
        if watcher is not None and not watcher.done():
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
        if self.pool is not None and self._owned:
            pool, self.pool, self._owned = self.pool, None, False
            await pool.close()


async def check_replica(url: str, settings: Settings) -> str | None:
    """`serve`'s check of DATABASE_REPLICA_URL before any worker starts: what is certainly
    wrong is raised as for DATABASE_URL (`check_login`: a superuser, a pooler's refusals, a
    refused login); a warning line (None: none) for a replica that cannot be reached (the
    nodes start and read the primary until it answers) or that is not in recovery (a
    primary: it works, but is probably not what was meant)."""
    try:
        async with asyncio.timeout(OPEN_TIMEOUT_S):
            await check_login(url, settings)
            conn = await asyncpg.connect(url, statement_cache_size=0)
            try:
                in_recovery = await conn.fetchval("SELECT pg_is_in_recovery()")
            finally:
                await conn.close()
    except (TimeoutError, *DATABASE_ERRORS) as error:
        if not is_database_unavailable(error):
            raise
        return (
            f"read replica unavailable ({describe(error)}): serving, queries read the "
            "primary until DATABASE_REPLICA_URL answers"
        )
    if not in_recovery:
        return (
            "DATABASE_REPLICA_URL is not in recovery (a primary server, not a streaming "
            "replica): queries will read it, with whatever it holds"
        )
    return None


async def replay_lag_s(connection: asyncpg.Connection) -> float | None:
    """The replay lag in seconds of the server `connection` is on (REPLAY_LAG_SQL)."""
    lag: float | None = await connection.fetchval(REPLAY_LAG_SQL)
    return lag

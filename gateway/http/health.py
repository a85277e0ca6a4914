"""Health for load balancers and orchestrators: liveness, readiness, and the old check.

- `GET /livez`: the process answers (no database): 200 `{"status": "alive"}`. A failing
  liveness probe means restart the process.
- `GET /readyz`: the process can serve: one statement, on a connection the pool gives
  within 2 s, checks that the database answers and that every relation the gateway reads
  or writes exists (its own schema migrated, the read contract in place). 200
  `{"status": "ready", ...}` or 503 `{"status": "unavailable", "failed": [...]}` with
  `Retry-After` (`database`: unreachable or erroring; `pool`: no connection within 2 s,
  every one busy; `schema`: relations missing, named). A failing readiness probe means
  send no traffic here for now. Never cached. With DATABASE_REPLICA_URL, `replica` in the
  details tells the read replica's state (gateway.core.read_replica), never a failure of
  the node (its queries read the primary while the replica is away): `status` available
  or unavailable, `failed` (database, pool or schema) when a check failed, its `pool`, and
  `replay_lag_s` (0 when it has replayed all it received, the seconds since the last
  replayed commit otherwise, null when unknown).
- `GET /healthz`: kept as it was (the database answers).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Final

import asyncpg
from starlette.requests import Request
from starlette.responses import Response

from gateway.core.outage import RETRY_AFTER_S, OutageMonitor, describe, is_database_unavailable
from gateway.core.read_replica import ReadReplica, replay_lag_s
from gateway.http.protocol import JSON, json_response

log = logging.getLogger(__name__)

LIVENESS_PATH: Final = "/livez"
READINESS_PATH: Final = "/readyz"
PROBE_TIMEOUT_S: Final = 2.0
# What the gateway reads and writes: its own schema (`school-gateway migrate`) and the
# read contract's views it cannot serve without.
REQUIRED_RELATIONS: Final = (
    "gateway.accounts",
    "gateway.sessions",
    "gateway.refresh_tokens",
    "gateway.sign_in_throttle",
    "gateway.esia_requests",
    "gateway.sign_in_events",
    "gateway.access_audit",
    "gateway.service_clients",
    "gateway.analytics_refresh",
    "gateway.signing_keys",
    "diary_api.students",
    "diary_api.parent_links",
    "diary_api.lesson_facts",
    "diary_api.mark_facts",
    "diary_api.student_versions",
    "diary_api.diary_changes",
)
_MISSING_SQL: Final = """
SELECT coalesce(array_agg(name ORDER BY name), '{}')
FROM unnest($1::text[]) AS r(name)
WHERE to_regclass(name) IS NULL
"""
_NO_STORE: Final = {"Cache-Control": "no-store"}


async def livez(_request: Request) -> Response:
    return json_response({"status": "alive"}, 200, JSON, headers=_NO_STORE)


def readiness(
    pool: Callable[[], asyncpg.Pool],
    outage: OutageMonitor,
    replica: ReadReplica | None = None,
) -> Callable[..., object]:
    """The `/readyz` endpoint over the application's pool (and the replica's state)."""

    async def readyz(_request: Request) -> Response:
        failed, details = await _check(pool(), _on_primary(outage))
        if replica is not None:
            details["replica"] = await _replica_state(replica)
        if failed:
            headers = {**_NO_STORE, "Retry-After": str(RETRY_AFTER_S)}
            body = {"status": "unavailable", "failed": failed, **details}
            return json_response(body, 503, JSON, headers=headers)
        return json_response({"status": "ready", **details}, 200, JSON, headers=_NO_STORE)

    return readyz


async def _replica_state(replica: ReadReplica) -> dict[str, object]:
    """The replica's part of the details: checked as the primary is while it is available
    (a connection-class failure makes it unavailable), else why it is not."""
    if replica.pool is None or not replica.available:
        return {"status": "unavailable", "failed": replica.reason or "database"}
    lag: list[float | None] = []
    failed, details = await _check(replica.pool, _on_replica(replica), lag)
    status = "unavailable" if not replica.available else "available"
    state: dict[str, object] = {"status": status}
    if failed:
        state["failed"] = failed[0]
    return {**state, **details, "replay_lag_s": lag[0] if lag else None}


def _on_primary(outage: OutageMonitor) -> Callable[[BaseException], None]:
    return lambda error: _unavailable(outage, error)


def _on_replica(replica: ReadReplica) -> Callable[[BaseException], None]:
    def unavailable(error: BaseException) -> None:
        if is_database_unavailable(error):
            replica.failed(error, READINESS_PATH)
        else:
            log.warning("readiness: database error %s on the read replica", describe(error))

    return unavailable


async def _check(
    pool: asyncpg.Pool,
    unavailable: Callable[[BaseException], None],
    lag: list[float | None] | None = None,
) -> tuple[list[str], dict[str, object]]:
    """The checks on one pool; with `lag`, the server's replay lag is appended to it."""
    details: dict[str, object] = {
        "pool": {"size": pool.get_size(), "idle": pool.get_idle_size(), "max": pool.get_max_size()}
    }
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            connection = await pool.acquire()
    except TimeoutError:
        return ["pool"], details
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
        unavailable(error)
        return ["database"], details
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            missing: list[str] = await connection.fetchval(_MISSING_SQL, list(REQUIRED_RELATIONS))
            if lag is not None:
                lag.append(await replay_lag_s(connection))
    except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
        unavailable(error)
        return ["database"], details
    finally:
        await pool.release(connection)
    if missing:
        details["missing"] = missing
        return ["schema"], details
    return [], details


def _unavailable(outage: OutageMonitor, error: BaseException) -> None:
    if is_database_unavailable(error):
        outage.failed(error, READINESS_PATH)
    else:
        log.warning("readiness: database error %s", describe(error))

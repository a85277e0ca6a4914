"""Health for load balancers and orchestrators: liveness, readiness, and the old check.

- `GET /livez`: the process answers (no database): 200 `{"status": "alive"}`. A failing
  liveness probe means restart the process.
- `GET /readyz`: the process can serve: one statement, on a connection the pool gives
  within 2 s, checks that the database answers and that every relation the gateway reads
  or writes exists (its own schema migrated, the read contract in place). 200
  `{"status": "ready", ...}` or 503 `{"status": "unavailable", "failed": [...]}` with
  `Retry-After` (`database`: unreachable or erroring; `pool`: no connection within 2 s,
  every one busy; `schema`: relations missing, named; `replica`: the same checks failed on
  the read replica's pool, with DATABASE_REPLICA_URL: which ones under `replica`). A
  failing readiness probe means send no traffic here for now. Never cached.
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
    replica: Callable[[], asyncpg.Pool | None] = lambda: None,
) -> Callable[..., object]:
    """The `/readyz` endpoint over the application's pool (and its replica's, if any)."""

    async def readyz(_request: Request) -> Response:
        failed, details = await _check(pool(), outage)
        replica_pool = replica()
        if replica_pool is not None:
            replica_failed, replica_details = await _check(replica_pool, outage, "replica")
            details["replica"] = {"failed": replica_failed, **replica_details}
            failed += ["replica"] if replica_failed else []
        if failed:
            headers = {**_NO_STORE, "Retry-After": str(RETRY_AFTER_S)}
            body = {"status": "unavailable", "failed": failed, **details}
            return json_response(body, 503, JSON, headers=headers)
        return json_response({"status": "ready", **details}, 200, JSON, headers=_NO_STORE)

    return readyz


async def _check(
    pool: asyncpg.Pool, outage: OutageMonitor, server: str = "primary"
) -> tuple[list[str], dict[str, object]]:
    details: dict[str, object] = {
        "pool": {"size": pool.get_size(), "idle": pool.get_idle_size(), "max": pool.get_max_size()}
    }
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            connection = await pool.acquire()
    except TimeoutError:
        return ["pool"], details
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
        _unavailable(outage, error, server)
        return ["database"], details
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            missing: list[str] = await connection.fetchval(_MISSING_SQL, list(REQUIRED_RELATIONS))
    except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
        _unavailable(outage, error, server)
        return ["database"], details
    finally:
        await pool.release(connection)
    if missing:
        details["missing"] = missing
        return ["schema"], details
    return [], details


def _unavailable(outage: OutageMonitor, error: BaseException, server: str) -> None:
    if is_database_unavailable(error):
        outage.failed(error, f"{READINESS_PATH} on the {server}")
    else:
        log.warning("readiness: database error %s on the %s", describe(error), server)

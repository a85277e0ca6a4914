"""What the push bench reads about the gateway and the database while it runs.

- Memory: the resident set of the gateway's process tree (`school-gateway serve` and any
  children), summed.
- Idle: the tree's CPU over a short window, until it stays under `IDLE_CPU_SHARE`.
- Statements: pg_stat_statements, summed over the entries of the gateway's login role in
  the bench database (`userid`): every top-level statement the gateway sent, reads,
  writes and utility commands (BEGIN, COMMIT, LISTEN...) alike; the writer (the schema
  owner) and this probe (the superuser) are other roles, so they are not counted. The
  difference of two snapshots, divided by the time between them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Final

import asyncpg
import psutil

from bench.driver.procs import Server

IDLE_CPU_SHARE: Final = 0.03  # of one core
IDLE_WINDOW_S: Final = 1.0
IDLE_TIMEOUT_S: Final = 120.0

_BY_ROLE = """
SELECT s.query, sum(s.calls)::bigint AS calls
FROM pg_stat_statements s
WHERE s.userid = (SELECT oid FROM pg_roles WHERE rolname = $1)
  AND s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND s.toplevel
GROUP BY s.query
"""


def tree_rss(server: Server) -> int:
    """Resident bytes of the server's process and its descendants."""
    total = 0
    for process in server.tree():
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            total += process.memory_info().rss
    return total


def tree_cpu(server: Server) -> float:
    """User + system CPU seconds of the server's process tree so far."""
    total = 0.0
    for process in server.tree():
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            times = process.cpu_times()
            total += times.user + times.system
    return total


async def wait_idle(server: Server) -> float:
    """Wait until the gateway's CPU over `IDLE_WINDOW_S` is under `IDLE_CPU_SHARE` of
    a core; the seconds waited (a RuntimeError after `IDLE_TIMEOUT_S`)."""
    started = time.monotonic()
    while time.monotonic() - started < IDLE_TIMEOUT_S:
        before = tree_cpu(server)
        await asyncio.sleep(IDLE_WINDOW_S)
        if tree_cpu(server) - before < IDLE_CPU_SHARE * IDLE_WINDOW_S:
            return time.monotonic() - started
    raise RuntimeError(f"the gateway did not become idle in {IDLE_TIMEOUT_S:g} s")


@dataclass(frozen=True, slots=True)
class Statements:
    """A snapshot of the gateway role's statement counts, by query text."""

    at: float
    calls: dict[str, int]

    def total(self) -> int:
        return sum(self.calls.values())


async def snapshot(conn: asyncpg.Connection, role: str) -> Statements:
    rows = await conn.fetch(_BY_ROLE, role)
    return Statements(time.monotonic(), {r["query"]: int(r["calls"]) for r in rows})


@dataclass(frozen=True, slots=True)
class StatementRate:
    """Statements between two snapshots: total, per second, the most called."""

    total: int
    seconds: float
    top: list[tuple[int, str]]

    @property
    def per_second(self) -> float:
        return self.total / self.seconds if self.seconds > 0 else 0.0


def rate_between(before: Statements, after: Statements, *, top: int = 6) -> StatementRate:
    deltas = {q: n - before.calls.get(q, 0) for q, n in after.calls.items()}
    ranked = sorted(((n, q) for q, n in deltas.items() if n > 0), reverse=True)
    return StatementRate(sum(n for n, _ in ranked), after.at - before.at, ranked[:top])

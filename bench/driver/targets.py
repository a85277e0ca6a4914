"""The three targets, started on free ports against the same database.

- the gateway: `school-gateway serve --workers N`, production-like settings;
- PostGraphile v5 (bench/postgraphile/server.mjs), one process or N via node:cluster,
  connected as the superuser: no row-level security or per-family authorization;
- the raw limit (bench/raw_limit.py): the gateway's SQL, no GraphQL, uvicorn, 1 worker.

The gateway and the raw limit connect as the gateway's login role (`gateway_url`).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.driver.database import JWT_SECRET, JWT_TTL_S, Database
from bench.driver.install import POSTGRAPHILE_DIR, Tools
from bench.driver.operations import Kind
from bench.driver.procs import ProcessSet, Server, free_port, wait_ready

PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent
VENV_BIN = Path(sys.executable).parent
POOL_MAX = 10  # the gateway's default SCHOOL_GATEWAY_POOL_MAX; every target gets the same


@dataclass(frozen=True, slots=True)
class Target:
    """A running target: what it is, how many serving processes, where it listens."""

    kind: Kind
    processes: int
    database: Database
    server: Server
    port: int
    label: str

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _clean_env() -> dict[str, str]:
    """The environment without any SCHOOL_GATEWAY_* or DATABASE_URL of the caller."""
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("SCHOOL_GATEWAY_") and key not in {"DATABASE_URL", "NODE_ENV"}
    }


NO_CACHE_SUFFIX = " no-cache"


def start_gateway(
    processes: ProcessSet,
    database: Database,
    *,
    workers: int,
    label: str | None = None,
    response_cache: bool = True,
    extra_env: dict[str, str] | None = None,
) -> Target:
    """`school-gateway serve --workers N`: GraphiQL off, WARNING logs, not dev mode.

    `response_cache=False` serves with SCHOOL_GATEWAY_RESPONSE_CACHE=0 (label suffix
    " no-cache"): every request is executed, as when each request differs.
    `extra_env` (bench/run --gateway-env) is applied last.
    """
    port = free_port()
    env = (
        _clean_env()
        | {
            "SCHOOL_GATEWAY_RESPONSE_CACHE": "1" if response_cache else "0",
            "DATABASE_URL": database.gateway_url,
            "SCHOOL_GATEWAY_JWT_SECRET": JWT_SECRET,
            "SCHOOL_GATEWAY_JWT_TTL": str(JWT_TTL_S),
            "SCHOOL_GATEWAY_GRAPHIQL": "0",
            "SCHOOL_GATEWAY_LOG_LEVEL": "WARNING",
            "SCHOOL_GATEWAY_POOL_MAX": str(POOL_MAX),
            "SCHOOL_GATEWAY_HOST": "127.0.0.1",
        }
        | (extra_env or {})
    )
    name = label or f"gateway x{workers}" + ("" if response_cache else NO_CACHE_SUFFIX)
    command = [str(VENV_BIN / "school-gateway"), "serve", "--workers", str(workers)]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    server = processes.start(name, command, env=env, cwd=PROJECT_ROOT)
    target = Target(Kind.GATEWAY, workers, database, server, port, name)
    wait_ready(server, f"{target.base_url}/healthz")
    return target


def start_postgraphile(
    processes: ProcessSet, database: Database, tools: Tools, *, workers: int
) -> Target:
    """PostGraphile v5 in production mode; WORKERS>1 forks that many node:cluster workers."""
    port = free_port()
    env = _clean_env() | {
        "PATH": tools.node_env()["PATH"],
        "NODE_ENV": "production",
        "GRAPHILE_ENV": "production",
        "DATABASE_URL": database.url,
        "PORT": str(port),
        "WORKERS": str(workers),
        "PG_POOL_MAX": str(POOL_MAX),
    }
    name = f"postgraphile x{workers}"
    command = [str(tools.node), "server.mjs"]
    server = processes.start(name, command, env=env, cwd=POSTGRAPHILE_DIR)
    target = Target(Kind.POSTGRAPHILE, workers, database, server, port, name)
    probe = b'{"query":"{__typename}"}'
    wait_ready(server, f"{target.base_url}/graphql", method="POST", body=probe)
    return target


def start_raw_limit(processes: ProcessSet, database: Database) -> Target:
    """bench/raw_limit.py under uvicorn, one worker."""
    port = free_port()
    env = _clean_env() | {
        "DATABASE_URL": database.gateway_url,
        "SCHOOL_GATEWAY_POOL_MAX": str(POOL_MAX),
    }
    name = "raw-limit x1"
    command = [sys.executable, "-m", "bench.raw_limit", "--port", str(port)]
    server = processes.start(name, command, env=env, cwd=PROJECT_ROOT)
    target = Target(Kind.RAW, 1, database, server, port, name)
    wait_ready(server, f"{target.base_url}/healthz")
    return target

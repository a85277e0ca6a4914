"""The targets, started on free ports against the same database.

- the gateway: `school-gateway serve --workers N`, production-like settings;
- PostGraphile v5 (bench/postgraphile/server.mjs), one process or N via node:cluster,
  connected as the superuser: no row-level security or per-family authorization;
- PostGraphile-RLS: the same server with graphile.rls.config.mjs, logged in as an
  authenticator role; each request carries a JWT whose claims become pgSettings, read by
  the row-level security policies of bench/postgraphile/rls.sql (bench/driver/rls.py);
- the raw limit (bench/raw_limit.py): the gateway's SQL, no GraphQL, uvicorn, 1 worker.

The gateway and the raw limit connect as the gateway's login role (`gateway_url`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.driver import rls
from bench.driver.database import JWT_TTL_S, Database, Fixture, jwt_secret
from bench.driver.install import POSTGRAPHILE_DIR, Tools
from bench.driver.operations import Kind, Operation, Request, build_request, load_operation
from bench.driver.procs import BenchError, ProcessSet, Server, free_port, wait_ready

PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent
VENV_BIN = Path(sys.executable).parent
POOL_MAX = 10  # the gateway's default SCHOOL_GATEWAY_POOL_MAX; every target gets the same


@dataclass(frozen=True, slots=True)
class Target:
    """A running target: what it is, how many serving processes, where it listens.

    `rls`: PostGraphile-RLS, whose requests carry the asking account's JWT.
    `accept_encoding`: its requests' `Accept-Encoding` (wrk's and the checks'), e.g. "gzip";
    "" sends none (wrk) or "identity" (the checks): uncompressed answers."""

    kind: Kind
    processes: int
    database: Database
    server: Server
    port: int
    label: str
    rls: bool = False
    accept_encoding: str = ""

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
GZIP = "gzip"


def start_gateway(
    processes: ProcessSet,
    database: Database,
    *,
    workers: int,
    label: str | None = None,
    response_cache: bool = True,
    accept_encoding: str = "",
    extra_env: dict[str, str] | None = None,
) -> Target:
    """`school-gateway serve --workers N`: GraphiQL off, WARNING logs, not dev mode.

    `response_cache=False` serves with SCHOOL_GATEWAY_RESPONSE_CACHE=0 (label suffix
    " no-cache"): every request is executed, as when each request differs.
    `accept_encoding="gzip"`: its requests take gzip (label suffix " gzip"; the gateway
    compresses answers of SCHOOL_GATEWAY_COMPRESSION_MIN_BYTES or more, on by default).
    `extra_env` (bench/run --gateway-env) is applied last.
    """
    port = free_port()
    env = (
        _clean_env()
        | {
            "SCHOOL_GATEWAY_RESPONSE_CACHE": "1" if response_cache else "0",
            "DATABASE_URL": database.gateway_url,
            "SCHOOL_GATEWAY_JWT_SECRET": jwt_secret(),
            "SCHOOL_GATEWAY_JWT_TTL": str(JWT_TTL_S),
            "SCHOOL_GATEWAY_GRAPHIQL": "0",
            "SCHOOL_GATEWAY_LOG_LEVEL": "WARNING",
            "SCHOOL_GATEWAY_POOL_MAX": str(POOL_MAX),
            "SCHOOL_GATEWAY_HOST": "127.0.0.1",
        }
        | (extra_env or {})
    )
    name = label or f"gateway x{workers}" + ("" if response_cache else NO_CACHE_SUFFIX)
    name += f" {accept_encoding}" if accept_encoding and not label else ""
    command = [str(VENV_BIN / "school-gateway"), "serve", "--workers", str(workers)]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    server = processes.start(name, command, env=env, cwd=PROJECT_ROOT)
    target = Target(
        Kind.GATEWAY, workers, database, server, port, name, accept_encoding=accept_encoding
    )
    wait_ready(server, f"{target.base_url}/healthz")
    return target


# The cost of observability (issue 15): the bare target has metrics and tracing off; the
# observed one serves /metrics (scraped by nobody: its cost is in the counting) and samples
# `trace_ratio` of the requests (bench/run --trace-ratio, default 1 in 20) into
# OpenTelemetry traces exported over OTLP/HTTP to a real sink.
UNOBSERVED = {"SCHOOL_GATEWAY_METRICS": "0"}


def observed(processes: ProcessSet, trace_ratio: float | None) -> dict[str, str]:
    """The observed target's settings, with an OTLP sink (bench.driver.otlp_sink) started;
    `trace_ratio` None: metrics only."""
    if trace_ratio is None:
        return {"SCHOOL_GATEWAY_METRICS": "1"}
    port = free_port()
    command = [sys.executable, "-m", "bench.driver.otlp_sink", "--port", str(port)]
    sink = processes.start("otlp sink", command, env=_clean_env(), cwd=PROJECT_ROOT)
    wait_ready(sink, f"http://127.0.0.1:{port}/")
    return {
        "SCHOOL_GATEWAY_METRICS": "1",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": str(trace_ratio),
    }


def start_postgraphile(
    processes: ProcessSet,
    database: Database,
    tools: Tools,
    *,
    workers: int,
    with_rls: bool = False,
) -> Target:
    """PostGraphile v5 in production mode; WORKERS>1 forks that many node:cluster workers.

    `with_rls=True`: graphile.rls.config.mjs, logged in as the authenticator (`rls_url`)."""
    port = free_port()
    env = _clean_env() | {
        "PATH": tools.node_env()["PATH"],
        "NODE_ENV": "production",
        "GRAPHILE_ENV": "production",
        "DATABASE_URL": database.rls_url if with_rls else database.url,
        "PORT": str(port),
        "WORKERS": str(workers),
        "PG_POOL_MAX": str(POOL_MAX),
    }
    if with_rls:
        env |= {"GRAPHILE_CONFIG": "./graphile.rls.config.mjs", "JWT_SECRET": rls.jwt_secret()}
    name = f"postgraphile-rls x{workers}" if with_rls else f"postgraphile x{workers}"
    command = [str(tools.node), "server.mjs"]
    server = processes.start(name, command, env=env, cwd=POSTGRAPHILE_DIR)
    target = Target(Kind.POSTGRAPHILE, workers, database, server, port, name, rls=with_rls)
    probe = b'{"query":"{__typename}"}'
    wait_ready(server, f"{target.base_url}/graphql", method="POST", body=probe)
    return target


def start_postgraphile_rls(
    processes: ProcessSet, fixture: Fixture, tools: Tools, *, workers: int = 1
) -> Target:
    """PostGraphile-RLS on the fixture's database, checked to restrict over HTTP."""
    target = start_postgraphile(processes, fixture.database, tools, workers=workers, with_rls=True)
    check_rls_target(target, fixture)
    return target


def request_for(target: Target, operation: Operation, fixture: Fixture) -> Request:
    """The request `target` gets for `operation`: PostGraphile-RLS's carries the JWT of
    the operation's account."""
    request = with_encoding(target, build_request(operation, target.kind, fixture))
    if not target.rls:
        return request
    headers = request.headers | {"Authorization": f"Bearer {fixture.rls_tokens[operation.account]}"}
    return dataclasses.replace(request, headers=headers)


def with_encoding(target: Target, request: Request) -> Request:
    """`request` with the target's `Accept-Encoding`, if it has one."""
    if not target.accept_encoding:
        return request
    headers = request.headers | {"Accept-Encoding": target.accept_encoding}
    return dataclasses.replace(request, headers=headers)


def check_rls_target(target: Target, fixture: Fixture) -> None:
    """parent-week through PostGraphile-RLS: with the parent's JWT, exactly the parent's
    children are answered and another family's student ids give no rows; with no JWT,
    the read is refused."""
    request = request_for(target, load_operation("parent-week"), fixture)
    own = _student_rows(target, request)
    other = asyncio.run(rls.other_family_student(fixture.database.url, own))
    body = json.loads(request.body)
    body["variables"]["studentIds"] = [other]
    foreign = dataclasses.replace(request, body=json.dumps(body).encode())
    if own != fixture.values["parent_student_ids"] or _student_rows(target, foreign):
        raise BenchError(
            f"{target.label}: row-level security does not restrict parent-week "
            f"(own children {own}, another family's student {other} visible)"
        )
    anonymous = dataclasses.replace(foreign, headers={"Content-Type": "application/json"})
    response = _post(target, anonymous)
    if "errors" not in response:
        raise BenchError(f"{target.label}: a request without a JWT read data: {response}")
    print(
        f"    {target.label}: parent-week with the parent's JWT: students {own}; "
        f"another family's student [{other}]: no rows; no JWT: refused",
        flush=True,
    )


def _post(target: Target, request: Request) -> dict[str, object]:
    response = httpx.post(
        f"{target.base_url}{request.path}",
        content=request.body,
        headers=request.headers,
        timeout=60,
    )
    payload: dict[str, object] = response.json()
    return payload


def _student_rows(target: Target, request: Request) -> list[int]:
    """The student ids in a parent-week answer (an error answer stops the run)."""
    payload = _post(target, request)
    data = payload.get("data")
    if "errors" in payload or not isinstance(data, dict):
        raise BenchError(f"{target.label}: parent-week failed: {json.dumps(payload)[:2000]}")
    return [int(node["rowId"]) for node in data["students"]["nodes"]]


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

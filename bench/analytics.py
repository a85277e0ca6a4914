"""Regional analytics at region scale: refresh time and grouped-average latency over HTTP.

    .venv/bin/python -m bench.analytics [--scale 10] [--seed 1] [--runs 15]

Seeds (or reuses, when `gateway.seed_info` matches) a database with the project's
generator in an embedded PostgreSQL of its own under `bench/.data-analytics/`, rebuilds
the analytics' base cells (`school-gateway analytics-refresh`'s code; prints its time),
then serves the real application with uvicorn on a free 127.0.0.1 port and times
region-wide grouped queries as the demo regional analyst over HTTP: p50 / p90 / max of
`--runs` requests each, after one warm-up. The server it starts is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import socket
import statistics
import time
from datetime import date
from pathlib import Path
from typing import Any, Final

import asyncpg
import httpx
import uvicorn

from auth.store.accounts import ensure_demo_account
from auth.store.sessions import issue_dev_token
from bench.driver.database import jwt_secret
from fixtures.database import apply_schema
from fixtures.demo import demo_account
from fixtures.generate import seed
from gateway.app import create_app
from gateway.core import embedded
from gateway.core.db import create_pool
from gateway.core.settings import Settings
from gateway.migrations.location import embedded_login
from resolvers.analytics.service import refresh_cells

DATA_DIR: Final = Path(__file__).resolve().parent / ".data-analytics"
ANALYST: Final = "regional-analyst"

QUERIES: Final[dict[str, str]] = {
    "marks by municipality": (
        "{ regionalAnalytics { marks(groupBy: [MUNICIPALITY]) { groups { key "
        "{ municipality { name } } suppressed markCount weightedAverage } } } }"
    ),
    "marks by subject": (
        "{ regionalAnalytics { marks(groupBy: [SUBJECT]) { groups { key { subject { name } } "
        "suppressed markCount weightedAverage distribution { value count } } } } }"
    ),
    "marks by school x subject": (
        "{ regionalAnalytics { marks(groupBy: [SCHOOL, SUBJECT]) { total { weightedAverage } "
        "groups { key { school { id } subject { id } } suppressed markCount "
        "weightedAverage } } } }"
    ),
    "attendance by municipality x code": (
        "{ regionalAnalytics { attendance(groupBy: [MUNICIPALITY, CODE]) { groups { key "
        "{ municipality { name } code } suppressed records rate } } } }"
    ),
}


def _settings(url: str, today: date) -> Settings:
    return Settings.from_env(
        {
            "DATABASE_URL": url,
            "SCHOOL_GATEWAY_DEV": "1",  # for the data set's today
            "SCHOOL_GATEWAY_TODAY": today.isoformat(),
            "SCHOOL_GATEWAY_JWT_SECRET": jwt_secret(),  # bench/.data's, made once
            "SCHOOL_GATEWAY_LOG_LEVEL": "WARNING",
            "SCHOOL_GATEWAY_ANALYTICS_RATE_LIMIT": "100000",
        }
    )


async def prepare(url: str, *, scale: int, seed_value: int, today: date) -> None:
    """Seed unless the database already holds this data set; apply this tree's schema."""
    conn = await asyncpg.connect(url)
    try:
        current = None
        if await conn.fetchval("SELECT to_regclass('gateway.seed_info') IS NOT NULL"):
            current = await conn.fetchrow("SELECT scale, seed, today FROM gateway.seed_info")
        marks = 0
        if current is not None and tuple(current) == (scale, seed_value, today):
            print(f"reusing the seeded data (scale {scale}, seed {seed_value}, {today})")
        else:
            started = time.perf_counter()
            await seed(url, scale=scale, seed=seed_value, today=today)
            print(f"seeded scale {scale} in {time.perf_counter() - started:.1f} s")
        await apply_schema(conn, gateway_role="school_gateway")
        marks = await conn.fetchval("SELECT count(*) FROM school.marks")
        attendance = await conn.fetchval("SELECT count(*) FROM school.attendance")
        schools = await conn.fetchval("SELECT count(*) FROM school.schools")
        print(f"data: {schools} schools, {marks:,} marks, {attendance:,} attendance records")
    finally:
        await conn.close()


async def analyst_token(url: str, settings: Settings) -> str:
    pool = await create_pool(url, dataclasses.replace(settings, pool_min_size=1))
    try:
        account_id = await ensure_demo_account(pool, demo_account(ANALYST))
        return await issue_dev_token(pool, settings, account_id)
    finally:
        await pool.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def time_queries(settings: Settings, token: str, runs: int) -> dict[str, list[float]]:
    """Serve the app over HTTP and time each query `runs` times (after one warm-up)."""
    port = _free_port()
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_config=None, access_log=False
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    timings: dict[str, list[float]] = {}
    try:
        for _ in range(600):
            if server.started:
                break
            await asyncio.sleep(0.05)
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            for name, query in QUERIES.items():
                await _post(client, headers, query)  # warm-up (the first builds the cells)
                timings[name] = []
                for _ in range(runs):
                    started = time.perf_counter()
                    body = await _post(client, headers, query)
                    timings[name].append((time.perf_counter() - started) * 1000)
                groups = _groups(body)
                print(f"  {name}: {groups} groups")
    finally:
        server.should_exit = True
        await serving
    return timings


async def _post(client: httpx.AsyncClient, headers: dict[str, str], query: str) -> Any:
    response = await client.post("/graphql", json={"query": query}, headers=headers)
    body = response.json()
    if response.status_code != 200 or body.get("errors"):
        raise RuntimeError(f"analytics query failed: {body}")
    return body


def _groups(body: Any) -> int:
    analytics = body["data"]["regionalAnalytics"]
    (aggregates,) = analytics.values()
    return len(aggregates["groups"])


async def main_async(args: argparse.Namespace) -> None:
    server = embedded.start(args.data_dir, ephemeral=True)
    try:
        await prepare(server.url, scale=args.scale, seed_value=args.seed, today=args.today)
        login_url = await embedded_login(server, "school_gateway")
        settings = _settings(login_url, args.today)
        for attempt in range(args.refreshes):
            result = await refresh_cells(login_url, settings)
            print(f"refresh {attempt + 1}: {result.duration_ms} ms")
        token = await analyst_token(login_url, settings)
        timings = await time_queries(settings, token, args.runs)
    finally:
        if server.started_here:
            server.stop()
    print(f"\nregion-wide grouped queries over HTTP, {args.runs} runs each (ms):")
    print(f"  {'query':<36} {'p50':>7} {'p90':>7} {'max':>7}")
    for name, values in timings.items():
        ordered = sorted(values)
        p90 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]
        print(f"  {name:<36} {statistics.median(values):7.1f} {p90:7.1f} {max(values):7.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench.analytics", description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--today", type=date.fromisoformat, default=date(2026, 11, 27))
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--refreshes", type=int, default=1, help="timed refreshes (default 1)")
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()

"""`bench/chaos`: PostgreSQL restarted and crashed under load, every answer checked.

bench/chaos            # full run (about 2 minutes): 16 clients, 10 s after each outage
bench/chaos --quick    # about 1 minute: 8 clients, shorter phases

Steps: an embedded PostgreSQL in a temporary folder (gateway.core.embedded), the scale-1 data
set (fixtures.generate.seed), tokens for five families, then for the gateway with its
response cache on and off (SCHOOL_GATEWAY_RESPONSE_CACHE=0): `school-gateway serve` as a
subprocess, each family's diary recorded while the database is up, and three phases
under load: steady, restart (`pg_ctl restart -m fast`), crash (`pg_ctl stop -m
immediate`, a few seconds down, start). Everything it started is stopped at the end, on
an error and on Ctrl+C.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import shlex
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import FrameType

import asyncpg

from auth.store.accounts import ensure_demo_account
from auth.store.sessions import issue_dev_token
from bench.chaos_driver.load import OPERATION, Family, record_answers
from bench.chaos_driver.phases import Audit, GatewayLog, PhaseResult, Timing, run_phase
from bench.chaos_driver.postgres import ChaosError, ChaosPostgres
from bench.chaos_driver.report import legend, render
from bench.driver.database import JWT_TTL_S, gateway_settings, jwt_secret
from bench.driver.procs import BenchError, ProcessSet, Server, free_port, wait_ready
from bench.driver.provenance import git_state
from fixtures.demo import demo_account
from fixtures.generate import seed
from gateway.core.db import create_pool
from gateway.migrations.location import embedded_login

PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent
RESULTS_DIR = PROJECT_ROOT / "bench" / ".results"
VENV_BIN = Path(sys.executable).parent
FAMILIES = (
    "parent-one-school",
    "parent-two-schools",
    "student-young",
    "student-older",
    "parent-phone-only",
)
SCALE = 1
SEED = 1
FULL = Timing(
    clients=16, steady_s=10.0, before_s=3.0, after_s=10.0, crash_down_s=3.0, max_requests=200_000
)
QUICK = Timing(
    clients=8, steady_s=3.0, before_s=2.0, after_s=4.0, crash_down_s=3.0, max_requests=50_000
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench/chaos",
        description="Restart and crash PostgreSQL under load; print errors by code, "
        "wrong answers, time to recovery and the slowest request.",
    )
    parser.add_argument("--quick", action="store_true", help="about a minute in all")
    parser.add_argument("--clients", type=int, help="concurrent clients (1-64)")
    parser.add_argument("--after", type=float, help="seconds of load after each outage")
    return parser


def resolve_timing(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Timing:
    timing = QUICK if args.quick else FULL
    if args.clients is not None:
        if not 1 <= args.clients <= 64:
            parser.error("--clients must be between 1 and 64")
        timing = dataclasses.replace(timing, clients=args.clients)
    if args.after is not None:
        if not 1 <= args.after <= 120:
            parser.error("--after must be between 1 and 120 seconds")
        timing = dataclasses.replace(timing, after_s=args.after)
    return timing


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    timing = resolve_timing(parser, args)
    command = "bench/chaos" + "".join(f" {shlex.quote(a)}" for a in (argv or sys.argv[1:]))
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        return run(timing, command)
    except (BenchError, ChaosError) as error:
        print(f"\nbench/chaos: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nbench/chaos: interrupted; everything it started is stopped", file=sys.stderr)
        return 130


def _interrupt(signum: int, frame: FrameType | None) -> None:
    """The first Ctrl+C or SIGTERM stops the run; later ones wait for the cleanup."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


def _say(line: str) -> None:
    print(line, flush=True)


def run(timing: Timing, command: str) -> int:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    logs = RESULTS_DIR / f"chaos-{stamp}-logs"
    started = time.monotonic()
    today = date.today()
    week = _week_of(today)
    results: list[PhaseResult] = []
    with tempfile.TemporaryDirectory(
        prefix="school-gateway-chaos-", ignore_cleanup_errors=True
    ) as folder:
        _say(f"==> embedded PostgreSQL in {folder}")
        postgres = ChaosPostgres.start(Path(folder) / "db")
        try:
            with ProcessSet(logs) as processes:
                dsn, families = asyncio.run(_prepare(postgres, today))
                for cache in (True, False):
                    results += _run_gateway(processes, postgres, dsn, families, week, timing, cache)
        finally:
            _say("==> stopping PostgreSQL")
            postgres.stop()
    text = _report(results, timing, command, time.monotonic() - started, logs)
    _say("\n" + text)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = RESULTS_DIR / f"chaos-{stamp}.txt"
    out.write_text(text + "\n")
    where = f"{out.relative_to(PROJECT_ROOT)}; gateway logs in {logs.relative_to(PROJECT_ROOT)}"
    _say(f"\n(written to {where})")
    return 0


def _week_of(day: date) -> tuple[str, str]:
    monday = day - timedelta(days=day.weekday())
    return monday.isoformat(), (monday + timedelta(days=6)).isoformat()


async def _prepare(postgres: ChaosPostgres, today: date) -> tuple[str, list[Family]]:
    """Seed the data set as the owner; the gateway's DSN and a token per family."""
    _say(f"==> seeding scale {SCALE} (seed {SEED}, today {today})")
    began = time.monotonic()
    await seed(postgres.owner_url, scale=SCALE, seed=SEED, today=today)
    _say(f"    seeded in {time.monotonic() - began:.1f} s")
    dsn = await gateway_dsn(postgres)
    settings = gateway_settings(dsn)
    pool = await create_pool(dsn, dataclasses.replace(settings, pool_min_size=1))
    try:
        families = []
        for key in FAMILIES:
            account_id = await ensure_demo_account(pool, demo_account(key))
            families.append(Family(key, await issue_dev_token(pool, settings, account_id)))
    finally:
        await pool.close()
    return dsn, families


async def gateway_dsn(postgres: ChaosPostgres) -> str:
    """The DSN the gateway serves with (DATABASE_URL in production): its least-privilege
    login role, made ready by the owner the way `serve` does it on the embedded server."""
    role = gateway_settings(postgres.owner_url).gateway_role
    return await embedded_login(postgres.server, role)


def _run_gateway(
    processes: ProcessSet,
    postgres: ChaosPostgres,
    dsn: str,
    families: list[Family],
    week: tuple[str, str],
    timing: Timing,
    cache: bool,
) -> list[PhaseResult]:
    label = "cache on" if cache else "cache off"
    _say(f"==> gateway ({label}): school-gateway serve")
    audited_before = asyncio.run(audit_rows(postgres.owner_url))
    server, base_url = _start_gateway(processes, dsn, cache=cache)
    try:
        recorded = asyncio.run(record_answers(base_url, families, week))
        _say(f"    recorded the diary of {len(recorded)} families ({week[0]} – {week[1]})")
        results = asyncio.run(_phases(label, base_url, recorded, week, timing, server, postgres))
    finally:
        server.stop()  # SIGTERM: the gateway writes the audit rows it still holds
    answered = len(recorded) + sum(result.answers_with_data for result in results)
    written = asyncio.run(audit_rows(postgres.owner_url)) - audited_before
    _say(f"    access audit: {written} rows for {answered} answers with students' data")
    audits = asyncio.run(audit_rows_in(postgres.owner_url, results))
    return [
        dataclasses.replace(result, audit=Audit(result.answers_with_data, rows, duplicates))
        for result, (rows, duplicates) in zip(results, audits, strict=True)
    ]


_AUDIT_ROWS = "SELECT count(*) FROM gateway.access_audit WHERE operation_name = $1"


async def audit_rows(owner_url: str) -> int:
    """Rows of gateway.access_audit written for the chaos query (read as the owner)."""
    conn = await asyncpg.connect(owner_url)
    try:
        count: int = await conn.fetchval(_AUDIT_ROWS, OPERATION)
    finally:
        await conn.close()
    return count


_AUDIT_IN_WINDOW = """
SELECT count(*) AS rows,
       count(*) - count(DISTINCT (account_id, at, student_ids)) AS duplicates
FROM gateway.access_audit
WHERE operation_name = $1 AND at BETWEEN $2 AND $3
"""


async def audit_rows_in(owner_url: str, results: Sequence[PhaseResult]) -> list[tuple[int, int]]:
    """The chaos query's audit rows whose time falls in each phase, and the repeated ones."""
    conn = await asyncpg.connect(owner_url)
    try:
        found = []
        for result in results:
            row = await conn.fetchrow(_AUDIT_IN_WINDOW, OPERATION, *result.window)
            assert row is not None
            found.append((int(row["rows"]), int(row["duplicates"])))
        return found
    finally:
        await conn.close()


async def _phases(
    label: str,
    base_url: str,
    families: list[Family],
    week: tuple[str, str],
    timing: Timing,
    server: Server,
    postgres: ChaosPostgres,
) -> list[PhaseResult]:
    log = GatewayLog(server.log_path)
    actions = {
        "steady": None,
        "restart": postgres.restart,
        "crash": lambda: postgres.crash(timing.crash_down_s),
    }
    results = []
    for name, action in actions.items():
        _say(f"    phase {name}: {timing.clients} clients")
        result = await run_phase(
            gateway=label,
            name=name,
            base_url=base_url,
            families=families,
            week=week,
            timing=timing,
            log=log,
            action=action,
        )
        _say(f"      {result.requests} requests in {result.seconds:.1f} s")
        results.append(result)
    return results


def _clean_env() -> dict[str, str]:
    """The environment without any SCHOOL_GATEWAY_* or DATABASE_* of the caller."""
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("SCHOOL_GATEWAY_", "DATABASE_"))
    }


def _start_gateway(processes: ProcessSet, dsn: str, *, cache: bool) -> tuple[Server, str]:
    """`school-gateway serve`, one worker, production-like settings, WARNING logs."""
    port = free_port()
    env = _clean_env() | {
        "DATABASE_URL": dsn,
        "SCHOOL_GATEWAY_RESPONSE_CACHE": "1" if cache else "0",
        "SCHOOL_GATEWAY_JWT_SECRET": jwt_secret(),
        "SCHOOL_GATEWAY_JWT_TTL": str(JWT_TTL_S),
        "SCHOOL_GATEWAY_GRAPHIQL": "0",
        "SCHOOL_GATEWAY_LOG_LEVEL": "WARNING",
        "SCHOOL_GATEWAY_HOST": "127.0.0.1",
    }
    name = "gateway" if cache else "gateway-no-cache"
    command = [str(VENV_BIN / "school-gateway"), "serve", "--host", "127.0.0.1"]
    command += ["--port", str(port)]
    server = processes.start(name, command, env=env, cwd=PROJECT_ROOT)
    base_url = f"http://127.0.0.1:{port}"
    wait_ready(server, f"{base_url}/healthz")
    return server, base_url


def _report(
    results: list[PhaseResult], timing: Timing, command: str, seconds: float, logs: Path
) -> str:
    header = [
        f"{command}   ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {git_state(PROJECT_ROOT)}, "
        f"{seconds:.0f} s in all)",
        f"{timing.clients} clients; each family's diary (one week) asked in turn by 5 "
        f"families; phases: steady {timing.steady_s:.0f} s; restart and crash with "
        f"{timing.before_s:.0f} s of load before and {timing.after_s:.0f} s after the "
        f"database is back; crash = {timing.crash_down_s:.0f} s down",
        "",
    ]
    return "\n".join([*header, render(results), "", legend()])

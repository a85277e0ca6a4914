"""The cost of PgBouncer in transaction mode (issue 15): one workload, four ways.

    bench/pgbouncer [--scale 10] [--concurrency 16] [--duration 10s] [--warmup 3s]
                    [--operations parent-week,student-quarter,student-year]
                    [--pool-size 10] [--rounds 2]

On bench/run's database (`bench_s<scale>` in the embedded PostgreSQL under bench/.data,
prepared the same way) and with its requests (bench/queries), four gateway targets (one
`serve` process each, response cache off: every request executes its statements) run
at once and are measured one after another, in `--rounds` rounds (the order rotates):

- `direct, cache on`: DATABASE_URL is PostgreSQL itself, asyncpg's statement cache on
  (the default);
- `direct, cache off`: SCHOOL_GATEWAY_DATABASE_STATEMENT_CACHE=0 against PostgreSQL
  itself: what unnamed statements (parsed and planned at every execution) cost alone;
- `pgbouncer tx, cache off`: SCHOOL_GATEWAY_DATABASE_POOLER=transaction through Debian's
  PgBouncer in transaction mode (default_pool_size = --pool-size, the gateway's pool size
  by default): what the gateway needs with PgBouncer < 1.21;
- `pgbouncer session, cache on`: SCHOOL_GATEWAY_DATABASE_POOLER=session through the same
  PgBouncer in session mode: named prepared statements through PgBouncer, an estimate of
  PgBouncer >= 1.21 with max_prepared_statements in transaction mode (not available as
  a Debian bookworm package, so not measured itself).

The pooled targets take statement_timeout and jit from the login role: this sets them
with `ALTER ROLE ... IN DATABASE bench_s<scale> SET` (bench/run's targets send their
own at connection start, which wins). Per target and operation, the best round is
printed: requests/s and its ratio to `direct, cache on`, p50/p99, statements per request
(pg_stat_statements), and CPU per request of the gateway, of PostgreSQL (its backends)
and of PgBouncer. Also written to bench/.results/pgbouncer-<time>.txt.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Final
from urllib.parse import unquote, urlsplit

import asyncpg
import psutil

from bench.driver import database as db
from bench.driver.config import DEFAULT_TODAY
from bench.driver.install import BENCH_DIR, Tools, ensure_wrk, node_binary
from bench.driver.measure import (
    StatementCounter,
    WrkResult,
    database_backends,
    postmaster_pid,
    run_wrk,
    statements_per_request,
)
from bench.driver.operations import ACCOUNTS, Kind, Request, build_request, load_operation
from bench.driver.procs import BenchError, ProcessSet, cpu_delta, cpu_seconds
from bench.driver.targets import Target, start_gateway
from tests.support.pgbouncer import PgBouncer, pgbouncer_binary, running_pgbouncer

DATA_DIR: Final = BENCH_DIR / ".data"
RESULTS_DIR: Final = BENCH_DIR / ".results"
DIRECT_CACHED: Final = "direct, cache on"
DIRECT_UNCACHED: Final = "direct, cache off"
POOLED: Final = "pgbouncer tx, cache off"
SESSION_POOLED: Final = "pgbouncer session, cache on"
BOUNCER_DATABASE: Final = "bench"  # transaction mode
SESSION_DATABASE: Final = "bench_session"


@dataclass(frozen=True, slots=True)
class Row:
    """One timed run of one target on one operation."""

    operation: str
    target: str
    wrk: WrkResult
    statements: float
    gateway_ms: float  # CPU per request, ms
    postgres_ms: float
    pgbouncer_ms: float

    @property
    def rate(self) -> float:
        return self.wrk.requests / self.wrk.seconds if self.wrk.seconds else 0.0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench/pgbouncer", description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=int, default=10, help="database scale (default 10)")
    parser.add_argument("--seed", type=int, default=1, help="generator seed (default 1)")
    parser.add_argument("--today", type=date.fromisoformat, default=DEFAULT_TODAY)
    parser.add_argument("--concurrency", type=int, default=16, help="wrk connections")
    parser.add_argument("--duration", default="10s", help="timed run (default 10s)")
    parser.add_argument("--warmup", default="3s", help="warm-up before each run (default 3s)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds; the best is kept")
    parser.add_argument(
        "--operations",
        default=",".join(ACCOUNTS),
        help=f"comma-separated subset of {','.join(ACCOUNTS)}",
    )
    parser.add_argument(
        "--pool-size", type=int, default=10, help="PgBouncer's default_pool_size (default 10)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    operations = [name for name in args.operations.split(",") if name]
    unknown = sorted(set(operations) - set(ACCOUNTS))
    if unknown:
        print(f"bench/pgbouncer: unknown operations {unknown}", file=sys.stderr)
        return 2
    binary = pgbouncer_binary()
    if binary is None:
        print("bench/pgbouncer: no pgbouncer (apt-get install pgbouncer)", file=sys.stderr)
        return 2
    try:
        text = run(args, operations, binary)
    except BenchError as error:
        print(f"bench/pgbouncer: {error}", file=sys.stderr)
        return 1
    print("\n" + text)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"pgbouncer-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.txt"
    path.write_text(text + "\n", encoding="utf-8")
    print(f"\nwritten to {path.relative_to(BENCH_DIR.parent)}")
    return 0


def run(args: argparse.Namespace, operations: list[str], binary: str) -> str:
    tools = Tools(node=node_binary(), wrk=ensure_wrk())
    server = db.start_server(DATA_DIR / "pg")
    try:
        database = asyncio.run(
            db.prepare_database(server, scale=args.scale, seed_value=args.seed, today=args.today)
        )
        fixture = asyncio.run(db.load_fixture(database, today=args.today))
        asyncio.run(_role_defaults(database))
        user, password = _credentials(database.gateway_url)
        with (
            running_pgbouncer(
                binary,
                database.gateway_url,
                {user: password},
                {BOUNCER_DATABASE: "", SESSION_DATABASE: "pool_mode=session"},
                pool_size=args.pool_size,
            ) as bouncer,
            ProcessSet(DATA_DIR / "logs") as processes,
        ):
            targets = _start_targets(processes, database, bouncer)
            pid = postmaster_pid(DATA_DIR / "pg")
            rows = asyncio.run(
                _measure_all(args, tools, targets, fixture, operations, pid, bouncer)
            )
    finally:
        if server.started_here:
            server.stop()
    return _render(args, rows, binary)


def _credentials(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    assert parts.username is not None and parts.password is not None
    return unquote(parts.username), unquote(parts.password)


async def _role_defaults(database: db.Database) -> None:
    """The pooled targets' statement_timeout and jit, as the login role's defaults."""
    settings = db.gateway_settings(database.gateway_url)
    role, name = settings.gateway_role, database.name
    conn = await asyncpg.connect(database.url)
    try:
        prefix = f'ALTER ROLE "{role}" IN DATABASE "{name}" SET'
        await conn.execute(f"{prefix} statement_timeout = {settings.statement_timeout_ms}")
        await conn.execute(f"{prefix} jit = off")
    finally:
        await conn.close()


def _start_targets(
    processes: ProcessSet, database: db.Database, bouncer: PgBouncer
) -> list[tuple[Target, dict[str, str]]]:
    credentials = _credentials(database.gateway_url)
    envs: dict[str, dict[str, str]] = {
        DIRECT_CACHED: {},
        DIRECT_UNCACHED: {"SCHOOL_GATEWAY_DATABASE_STATEMENT_CACHE": "0"},
        POOLED: {
            "SCHOOL_GATEWAY_DATABASE_POOLER": "transaction",
            "DATABASE_DIRECT_URL": database.gateway_url,
            "DATABASE_URL": bouncer.url(BOUNCER_DATABASE, *credentials),
        },
        SESSION_POOLED: {
            "SCHOOL_GATEWAY_DATABASE_POOLER": "session",
            "DATABASE_URL": bouncer.url(SESSION_DATABASE, *credentials),
        },
    }
    targets = []
    for label, env in envs.items():
        target = start_gateway(
            processes, database, workers=1, label=label, response_cache=False, extra_env=env
        )
        print(f"    {label:<27} pid {target.server.pid:<8} {target.base_url}", flush=True)
        targets.append((target, env))
    return targets


async def _measure_all(
    args: argparse.Namespace,
    tools: Tools,
    targets: list[tuple[Target, dict[str, str]]],
    fixture: db.Fixture,
    operations: list[str],
    pid: int,
    bouncer: PgBouncer,
) -> list[Row]:
    """Every operation on every target, `--rounds` times (rotating the order): the best
    round of each."""
    best: dict[tuple[str, str], Row] = {}
    conn = await asyncpg.connect(fixture.database.url)
    try:
        counter = StatementCounter(conn)
        for round_number in range(args.rounds):
            shift = round_number % len(targets)
            order = targets[shift:] + targets[:shift]
            for name in operations:
                operation = load_operation(name)
                request = build_request(operation, Kind.GATEWAY, fixture)
                for target, _env in order:
                    named = (name, request)
                    row = await _measure(args, tools, target, named, counter, pid, bouncer)
                    print(
                        f"    round {round_number + 1} {name:<16} {target.label:<27} "
                        f"{row.rate:8.1f} req/s",
                        flush=True,
                    )
                    key = (name, target.label)
                    if key not in best or row.rate > best[key].rate:
                        best[key] = row
    finally:
        await conn.close()
    return [best[(name, target.label)] for name in operations for target, _ in targets]


async def _measure(
    args: argparse.Namespace,
    tools: Tools,
    target: Target,
    named: tuple[str, Request],
    counter: StatementCounter,
    pid: int,
    bouncer: PgBouncer,
) -> Row:
    """A warm-up, then one timed wrk run with the CPU of the gateway, PostgreSQL and
    PgBouncer over it, then the statements of one request."""
    operation, request = named
    concurrency = args.concurrency
    run_wrk(tools, target, request, concurrency=concurrency, duration=args.warmup, threads=1)
    bouncer_process = [psutil.Process(bouncer.pid)]
    before = (
        cpu_seconds(target.server.tree()),
        cpu_seconds(database_backends(pid)),
        cpu_seconds(bouncer_process),
    )
    result = run_wrk(
        tools, target, request, concurrency=concurrency, duration=args.duration, threads=1
    )
    after = (
        cpu_seconds(target.server.tree()),
        cpu_seconds(database_backends(pid)),
        cpu_seconds(bouncer_process),
    )
    if result.errors or not result.requests:
        raise BenchError(f"{target.label}: {result.errors} errors of {result.requests}")
    await asyncio.sleep(0.5)  # requests still in flight when wrk stopped
    gateway, postgres, pgbouncer = (
        1000 * cpu_delta(b, a) / result.requests for b, a in zip(before, after, strict=True)
    )
    statements = await statements_per_request(target, request, counter)
    return Row(operation, target.label, result, statements, gateway, postgres, pgbouncer)


def _render(args: argparse.Namespace, rows: list[Row], binary: str) -> str:
    version = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    first = (version.stdout or version.stderr).splitlines()[0] if version.stdout else "?"
    lines = [
        f"bench/pgbouncer {shlex.join(sys.argv[1:])}".rstrip(),
        f"scale {args.scale}; one serve process per target, response cache off; wrk "
        f"-c{args.concurrency} {args.duration} (+{args.warmup} warm-up), best of "
        f"{args.rounds} rounds; {first}, default_pool_size "
        f"{args.pool_size}; gateway pool max 10; {len(os.sched_getaffinity(0))} cores, "
        f"load {os.getloadavg()[0]:.2f}",
        "",
        f"{'operation':<16} {'target':<27} {'req/s':>8} {'ratio':>6} {'p50 ms':>7} "
        f"{'p99 ms':>7} {'stmts':>6} {'gateway':>8} {'postgres':>9} {'pgbouncer':>10}",
        f"{'':<16} {'':<27} {'':>8} {'':>6} {'':>7} {'':>7} {'/req':>6} "
        f"{'ms/req':>8} {'ms/req':>9} {'ms/req':>10}",
    ]
    for row in rows:
        base = next(r for r in rows if r.operation == row.operation and r.target == DIRECT_CACHED)
        lines.append(
            f"{row.operation:<16} {row.target:<27} {row.rate:8.1f} "
            f"{row.rate / base.rate:6.3f} {row.wrk.p50_ms:7.1f} {row.wrk.p99_ms:7.1f} "
            f"{row.statements:6.1f} {row.gateway_ms:8.2f} {row.postgres_ms:9.2f} "
            f"{row.pgbouncer_ms:10.3f}"
        )
    lines += [
        "",
        "ratio: requests/s over `direct, cache on` of the same operation; CPU per request: "
        "user + system of the gateway process, of PostgreSQL's backends and of PgBouncer "
        "over the timed run, divided by its requests.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    started = time.monotonic()
    code = main()
    print(f"({time.monotonic() - started:.0f} s)")
    raise SystemExit(code)

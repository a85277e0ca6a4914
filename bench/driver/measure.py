"""One measured run: wrk against a target, with SQL statements, CPU and peak memory.

Before each timed run a warm-up run of the same request. Around the timed run the CPU
of the target's processes, of the database's processes and of the whole machine is
read, and a thread samples the target's resident memory. The machine's CPU not spent by
the target, PostgreSQL or wrk is reported as "other": on a shared machine it says how
much the numbers can be trusted. SQL statements per request are counted exactly, with
pg_stat_statements, over a few sequential requests after the timed run (under load,
requests in flight at the run's edges would blur the count).

The `families` workload (bench.driver.families) runs bench/wrk/families.lua instead,
with the teachers' writer (bench.driver.writer) writing from before the warm-up until
the run's requests are done; its CPU falls under "other", its statements under the
database's CPU. Its gateway rows get the response cache's hit rate over the timed run:
1 - (diary reads / requests), diary reads being the calls of the most called statement
that reads `diary_api.lesson_facts` (pg_stat_statements, reset before the run): a miss
executes the document, each of its statements once (the lessons', the homework's), a
hit sends only the viewer and versions statements.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import resource
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import psutil

from bench.driver.families import FamiliesWorkload
from bench.driver.install import BENCH_DIR, Tools
from bench.driver.operations import Kind, Request
from bench.driver.procs import BenchError, PeakRss, cpu_delta, cpu_seconds
from bench.driver.targets import Target

LUA_SCRIPT = BENCH_DIR / "wrk" / "post.lua"
FAMILIES_SCRIPT = BENCH_DIR / "wrk" / "families.lua"
WRK_TIMEOUT = "10s"
STATEMENT_SAMPLE_REQUESTS = 20
_MARK = "BENCH_RESULT "

# Statements the targets sent: reads and writes, not utility commands (BEGIN, SET, ...)
# and not the measuring connection's own (which all name pg_stat_statements).
_STATEMENT_CALLS = r"""
SELECT coalesce(sum(calls), 0)::bigint
FROM pg_stat_statements
WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND toplevel
  AND query ~* '^\s*(\(\s*)?(select|with|insert|update|delete|values|table)\M'
  AND query !~* 'pg_stat_statements'
"""

# Executions of a diary document: each statement reading lessons runs once a miss (the
# lessons' and the homework's); the most called one's calls, not their sum.
_DIARY_READS = r"""
SELECT coalesce(max(calls), 0)::bigint
FROM pg_stat_statements
WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND toplevel AND query ~ 'diary_api\.lesson_facts\M'
"""


@dataclass(frozen=True, slots=True)
class WrkResult:
    """wrk's summary of one run."""

    requests: int
    seconds: float
    errors: int
    p50_ms: float
    p99_ms: float
    bytes: int = 0  # read by wrk: the responses' status lines, headers and bodies

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    @property
    def kb_per_response(self) -> float:
        """Bytes read per response, in kB (1000 bytes)."""
        return self.bytes / self.requests / 1000 if self.requests else 0.0


@dataclass(frozen=True, slots=True)
class Measurement:
    """A timed run of one target at one concurrency, with its costs."""

    target: str
    processes: int
    concurrency: int
    wrk: WrkResult
    statements_per_request: float
    cpu_per_1000: float
    db_cpu_per_1000: float
    peak_mb: float
    other_cpu_percent: float
    hit_rate: float | None = None  # families, gateway targets: the response cache's
    writes_per_s: float | None = None  # families: the writer's rate during the run
    writes_failed: int | None = None  # families: the writer's failed writes
    first_misses: int | None = None  # families, gateway x1: misses of uncached families
    start_mb: float = 0.0  # the largest serving process's resident MB as the run began


def run_wrk(
    tools: Tools,
    target: Target,
    request: Request,
    *,
    concurrency: int,
    duration: str,
    threads: int,
    families: dict[str, str] | None = None,
) -> WrkResult:
    """Run wrk once and parse the summary its `done()` prints. With `families` (the
    environment of bench/wrk/families.lua) the families' requests instead of `request`."""
    with tempfile.NamedTemporaryFile(prefix="bench-body-", suffix=".json") as body:
        body.write(request.body)
        body.flush()
        env = dict(os.environ)
        env["BENCH_BODY_FILE"] = body.name
        env["BENCH_AUTHORIZATION"] = request.headers.get("Authorization", "")
        if target.accept_encoding:
            env["BENCH_ACCEPT_ENCODING"] = target.accept_encoding
        env |= families or {}
        command = [
            str(tools.wrk),
            f"-t{min(threads, concurrency)}",
            f"-c{concurrency}",
            f"-d{duration}",
            f"--timeout={WRK_TIMEOUT}",
            "-s",
            str(FAMILIES_SCRIPT if families else LUA_SCRIPT),
            f"{target.base_url}{request.path}",
        ]
        result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    for line in result.stdout.splitlines():
        if line.startswith(_MARK):
            data = json.loads(line[len(_MARK) :])
            errors = sum(data[key] for key in data if key.startswith("errors_"))
            return WrkResult(
                requests=data["requests"],
                seconds=data["duration_us"] / 1e6,
                errors=errors,
                p50_ms=data["p50_us"] / 1000,
                p99_ms=data["p99_us"] / 1000,
                bytes=data["bytes"],
            )
    raise BenchError(f"wrk printed no result (exit {result.returncode}):\n{result.stderr}")


class StatementCounter:
    """Reads pg_stat_statements of one database over a superuser connection."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def reset(self) -> None:
        await self.conn.execute("SELECT pg_stat_statements_reset()")

    async def calls(self) -> int:
        return int(await self.conn.fetchval(_STATEMENT_CALLS))

    async def diary_reads(self) -> int:
        return int(await self.conn.fetchval(_DIARY_READS))


def database_backends(postmaster_pid: int) -> list[psutil.Process]:
    """The database server's processes (its backends do the SQL work)."""
    try:
        root = psutil.Process(postmaster_pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _machine_busy_seconds() -> float:
    """CPU seconds the whole machine has been busy (all cores, steal included)."""
    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


def _children_cpu_seconds() -> float:
    """CPU seconds of this process's finished children (wrk)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def statements_per_request(
    target: Target, request: Request, counter: StatementCounter
) -> float:
    """SQL statements of one request: pg_stat_statements over sequential requests."""
    await counter.reset()
    async with httpx.AsyncClient(base_url=target.base_url, timeout=60) as client:
        for _ in range(STATEMENT_SAMPLE_REQUESTS):
            response = await client.post(
                request.path, content=request.body, headers=request.headers
            )
            response.raise_for_status()
    return await counter.calls() / STATEMENT_SAMPLE_REQUESTS


async def measure(
    tools: Tools,
    target: Target,
    request: Request,
    counter: StatementCounter,
    *,
    postmaster_pid: int,
    concurrency: int,
    duration: str,
    warmup: str,
    threads: int,
    workload: FamiliesWorkload | None = None,
) -> Measurement:
    """Warm up, then one timed wrk run with statements, CPU and peak memory.

    With `workload` (families): the families' requests, the writer running from before
    the warm-up until the timed run's requests are done, and the cache's hit rate."""
    if workload is not None:  # its path for wrk; its requests for the statement count
        request = workload.first_request(target)
        await workload.warm(target)  # every family once before the target's first run
    writer = workload.start_writer() if workload is not None else None
    try:
        item = await _timed_run(
            tools,
            target,
            request,
            counter,
            postmaster_pid=postmaster_pid,
            concurrency=concurrency,
            duration=duration,
            warmup=warmup,
            threads=threads,
            workload=workload,
        )
    except BaseException:
        if writer is not None:  # the run's error is the one reported, not a stop's
            writer.kill()
        raise
    writes = writer.stop() if writer is not None else None
    return dataclasses.replace(
        item,
        statements_per_request=await statements_per_request(target, request, counter),
        writes_per_s=None if writes is None else writes.per_second,  # None: no writer
        writes_failed=None if writes is None else writes.failed,
        first_misses=None if workload is None else workload.first_misses(target, concurrency),
    )


async def _timed_run(
    tools: Tools,
    target: Target,
    request: Request,
    counter: StatementCounter,
    *,
    postmaster_pid: int,
    concurrency: int,
    duration: str,
    warmup: str,
    threads: int,
    workload: FamiliesWorkload | None,
) -> Measurement:
    """The warm-up and the timed run (statements per request not yet counted)."""

    def families(timed: bool) -> dict[str, str] | None:
        if workload is None:
            return None
        return workload.wrk_env(target, concurrency=concurrency, timed=timed)

    common = {"concurrency": concurrency, "threads": threads}
    run_wrk(tools, target, request, duration=warmup, families=families(False), **common)
    if workload is not None:
        await counter.reset()
    cpu_before = cpu_seconds(target.server.tree())
    db_before = cpu_seconds(database_backends(postmaster_pid))
    machine_before, wrk_before = _machine_busy_seconds(), _children_cpu_seconds()
    wall_started = time.monotonic()
    with PeakRss(target.server) as memory:
        result = run_wrk(
            tools, target, request, duration=duration, families=families(True), **common
        )
    wall = time.monotonic() - wall_started
    target_cpu = cpu_delta(cpu_before, cpu_seconds(target.server.tree()))
    db_cpu = cpu_delta(db_before, cpu_seconds(database_backends(postmaster_pid)))
    machine = _machine_busy_seconds() - machine_before
    wrk_cpu = _children_cpu_seconds() - wrk_before
    if not target.server.alive():
        raise BenchError(f"{target.label} died during the run:\n{target.server.log_tail()}")
    # wrk has stopped but the target still finishes the requests that were in flight.
    await asyncio.sleep(min(3.0, max(0.3, 2 * result.p99_ms / 1000)))
    hit_rate = None
    if workload is not None and target.kind is Kind.GATEWAY and result.requests:
        # Not clamped: a no-cache target far from 0 shows a disturbed count (report.py).
        hit_rate = 1.0 - await counter.diary_reads() / result.requests
    other = max(0.0, machine - target_cpu - db_cpu - wrk_cpu)
    capacity = wall * (psutil.cpu_count() or 1)
    per_thousand = 1000 / result.requests if result.requests else 0.0
    return Measurement(
        target=target.label,
        processes=target.processes,
        concurrency=concurrency,
        wrk=result,
        statements_per_request=0.0,
        cpu_per_1000=target_cpu * per_thousand,
        db_cpu_per_1000=db_cpu * per_thousand,
        peak_mb=memory.peak_bytes / (1 << 20),
        other_cpu_percent=100 * other / capacity if capacity else 0.0,
        hit_rate=hit_rate,
        start_mb=(memory.first_bytes or 0) / (1 << 20),
    )


def postmaster_pid(data_dir: Path) -> int:
    """The PostgreSQL server's pid from postmaster.pid."""
    return int((data_dir / "pgdata" / "postmaster.pid").read_text().splitlines()[0])

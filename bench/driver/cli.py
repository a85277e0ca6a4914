"""`bench/run`: seed, start the three targets, check they agree, measure, report.

bench/run                 # full run (about 12 minutes on a 2-core machine)
bench/run --quick         # smoke run: scale 2, short runs, concurrency 1 and 16
bench/run --help
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from types import FrameType

import asyncpg
import httpx

from bench.driver import database as db
from bench.driver.canonical import MismatchError, canonical, describe_difference, size_summary
from bench.driver.config import Config, build_parser, resolve_config
from bench.driver.families import (
    FamiliesWorkload,
    counted,
    make_families,
    peer_of,
    requests_of,
)
from bench.driver.install import BENCH_DIR, Tools, prepare_tools
from bench.driver.measure import (
    StatementCounter,
    measure,
    postmaster_pid,
)
from bench.driver.operations import FAMILIES, Operation, Request, build_request, load_operation
from bench.driver.procs import BenchError, ProcessSet
from bench.driver.provenance import git_state, source_fingerprint
from bench.driver.report import (
    BigReport,
    OperationReport,
    markdown,
    render,
    update_doc,
    write_results,
)
from bench.driver.targets import (
    GZIP,
    PROJECT_ROOT,
    UNOBSERVED,
    Target,
    observed,
    request_for,
    start_gateway,
    start_postgraphile,
    start_postgraphile_rls,
    start_raw_limit,
    with_encoding,
)
from bench.driver.writer import cleanup_database
from gateway.core.embedded import EmbeddedServer

DATA_DIR = BENCH_DIR / ".data"
RESULTS_DIR = BENCH_DIR / ".results"
DOC_PATH = PROJECT_ROOT / "docs" / "performance.md"
BIG_CONCURRENCY = 16


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = resolve_config(args)
    command = "bench/run" + "".join(f" {shlex.quote(a)}" for a in (argv or sys.argv[1:]))
    # Ctrl+C and SIGTERM stop the run and everything it started (also when started from a
    # script that ignores SIGINT for background jobs).
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        return run(config, command)
    except (BenchError, MismatchError) as error:
        print(f"\nbench/run: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nbench/run: interrupted; everything it started is stopped", file=sys.stderr)
        return 130


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _say(line: str) -> None:
    print(line, flush=True)


@contextlib.contextmanager
def embedded_server() -> Iterator[EmbeddedServer]:
    """The embedded server under bench/.data, stopped afterwards if this run started it."""
    server = db.start_server(DATA_DIR / "pg")
    try:
        yield server
    finally:
        if server.started_here:
            server.stop()


def run(config: Config, command: str) -> int:
    started = time.monotonic()
    load = os.getloadavg()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    _say("==> tools")
    tools = prepare_tools()
    with embedded_server() as server, ProcessSet(DATA_DIR / "logs") as processes:
        _say(f"==> databases (embedded PostgreSQL on 127.0.0.1:{server.port}, {DATA_DIR / 'pg'})")
        base = asyncio.run(prepare(server, config, config.scale))
        big = None
        if config.big_scale is not None:
            big = asyncio.run(prepare(server, config, config.big_scale))
        fixture = asyncio.run(db.load_fixture(base, today=config.today))
        workload = None
        if FAMILIES in config.operations:
            workload = asyncio.run(prepare_families(config, base))
        # Every target starts now, from the same sources (the 10x gateway too).
        _say("==> starting the targets")
        fingerprint = source_fingerprint(PROJECT_ROOT)
        env = dict(config.gateway_env)
        starters: dict[str, Callable[[], Target]] = {
            "gateway-x1": lambda: start_gateway(processes, base, workers=1, extra_env=env),
            "gateway-x1-no-cache": lambda: start_gateway(
                processes, base, workers=1, response_cache=False, extra_env=env
            ),
            "gateway-x1-no-cache-gzip": lambda: start_gateway(
                processes,
                base,
                workers=1,
                response_cache=False,
                accept_encoding=GZIP,
                extra_env=env,
            ),
            "gateway-x1-no-cache-bare": lambda: start_gateway(
                processes,
                base,
                workers=1,
                label="gateway x1 no-cache bare",
                response_cache=False,
                extra_env=env | UNOBSERVED,
            ),
            "gateway-x1-no-cache-otel": lambda: start_gateway(
                processes,
                base,
                workers=1,
                label="gateway x1 no-cache otel",
                response_cache=False,
                extra_env=env | observed(processes, config.trace_ratio),
            ),
            "gateway-x2": lambda: start_gateway(processes, base, workers=2, extra_env=env),
            "postgraphile-x1": lambda: start_postgraphile(processes, base, tools, workers=1),
            "postgraphile-x2": lambda: start_postgraphile(processes, base, tools, workers=2),
            "postgraphile-rls-x1": lambda: start_postgraphile_rls(processes, fixture, tools),
            "raw-limit-x1": lambda: start_raw_limit(processes, base),
        }
        targets = [starter() for name, starter in starters.items() if name in config.targets]
        big_target = big_fixture = None
        no_cache = next((t for t in targets if t.label == "gateway x1 no-cache"), None)
        if big is not None and no_cache is not None:
            big_fixture = asyncio.run(db.load_fixture(big, today=config.today))
            big_target = start_gateway(
                processes,
                big,
                workers=1,
                label="gateway x1 10x",
                response_cache=False,
                extra_env=env,
            )
        for target in [*targets, *([big_target] if big_target else [])]:
            _say(f"    {target.label:<20} pid {target.server.pid:<8} {target.base_url}")
        operations = [load_operation(name) for name in config.operations]
        _say("==> checking that every target returns the same data")
        descriptions = {
            op.name: verify_families(targets, workload)
            if op.name == FAMILIES and workload is not None
            else verify(op, targets, fixture)
            for op in operations
        }
        pid = postmaster_pid(DATA_DIR / "pg")
        reports = asyncio.run(
            measure_all(config, tools, operations, targets, fixture, descriptions, pid, workload)
        )
        big_report = None
        if big_target is not None and big_fixture is not None and no_cache is not None:
            big_report = asyncio.run(
                measure_big(config, tools, no_cache, fixture, big_target, big_fixture, pid)
            )
        database_line = asyncio.run(describe_database(base, config))
    load_line = f"{load[0]:.2f} at the start, {os.getloadavg()[0]:.2f} at the end (1-minute)"
    code_line = f"git {git_state(PROJECT_ROOT)}, gateway sources {fingerprint}"
    if source_fingerprint(PROJECT_ROOT) != fingerprint:
        code_line += " -- WARNING: the sources changed during the run (rows may mix versions)"
    header = {"database": database_line, "load": load_line, "code": code_line}
    text = render(config, command, tools, reports, big_report, header, started)
    _say("\n" + text)
    path = write_results(RESULTS_DIR, stamp, text)
    _say(f"\nwritten to {path.relative_to(PROJECT_ROOT)}")
    if config.write_doc:
        update_doc(DOC_PATH, markdown(text))
        _say(f"updated {DOC_PATH.relative_to(PROJECT_ROOT)}")
    return 0


async def prepare(server: EmbeddedServer, config: Config, scale: int) -> db.Database:
    """The database of `scale`, seeded with the run's seed and today."""
    return await db.prepare_database(
        server, scale=scale, seed_value=config.seed, today=config.today
    )


def fetch(target: Target, operation: Operation, fixture: db.Fixture) -> tuple[object, int]:
    """One request to a target: the parsed JSON and the body's size in bytes."""
    return _post(target, request_for(target, operation, fixture), operation.name)


async def prepare_families(config: Config, database: db.Database) -> FamiliesWorkload:
    """The families' accounts, tokens and request files; the writer's rate."""
    started = time.monotonic()
    directory = DATA_DIR / "families" / database.name
    families = await make_families(
        database, today=config.today, seed=config.seed, directory=directory, count=config.families
    )
    students = len(families.school_student_ids)
    await cleanup_database(database.url, families.students)  # a killed writer's rows
    _say(
        f"    families: {len(families.families):,} parent accounts with session tokens, "
        f"{students:,} students, in {time.monotonic() - started:.1f} s ({directory})"
    )
    return FamiliesWorkload(
        families,
        config.concurrencies,
        database.url,
        config.today,
        config.seed,
        config.writes_per_second,
    )


VERIFIED_FAMILIES = 3


def verify_families(targets: Sequence[Target], workload: FamiliesWorkload) -> str:
    """Stop with a diff unless every target answers the first families the same."""
    measured = list(targets)
    for number in range(VERIFIED_FAMILIES):
        reference = None
        for target in measured:
            request = with_encoding(target, requests_of(workload.families, peer_of(target))[number])
            payload, _size = _post(target, request, FAMILIES)
            answer = canonical("parent-week", target.kind, payload)
            if not answer:
                raise MismatchError(f"{FAMILIES}: family {number + 1}: {target.label}: no data")
            if reference is None:
                reference = (target.label, answer)
            elif answer != reference[1]:
                names = (reference[0], target.label)
                diff = describe_difference(reference[1], answer, names=names)
                raise MismatchError(f"{FAMILIES}: family {number + 1}: {names[1]} differs:\n{diff}")
    count = len(workload.families.families)
    rate = workload.writes_per_second
    writer = f"the writer at {rate:g} writes/s" if rate else "no writer"
    if rate is None:
        writer = "the writer at a school-day peak (bench/driver/writer.py)"
    description = f"parent-week of {counted(count)} in a seeded random order, {writer}"
    checked = f"the first {VERIFIED_FAMILIES} families the same on {len(measured)} targets"
    _say(f"    {FAMILIES}: {checked}")
    return description


def _post(target: Target, request: Request, name: str) -> tuple[object, int]:
    """The parsed answer and the decoded body's size. The request's `Accept-Encoding`
    (the target's, else "identity", as wrk sends none) is sent; a target asking for gzip
    must get gzip (httpx decodes it), so the compressed path is the one checked."""
    headers = {"Accept-Encoding": "identity"} | request.headers
    response = httpx.post(
        f"{target.base_url}{request.path}", content=request.body, headers=headers, timeout=60
    )
    if response.status_code != 200:
        raise MismatchError(
            f"{name}: {target.label} answered HTTP {response.status_code}: {response.text[:2000]}"
        )
    encoding = response.headers.get("Content-Encoding", "")
    if target.accept_encoding and encoding != target.accept_encoding:
        raise MismatchError(
            f"{name}: {target.label} asked for {target.accept_encoding} and got "
            f"{encoding or 'no encoding'} (compression off by --gateway-env? leave the "
            "target out then)"
        )
    return response.json(), len(response.content)


def verify(operation: Operation, targets: Sequence[Target], fixture: db.Fixture) -> str:
    """Stop with a diff unless every target's answer has the same canonical form."""
    reference = None
    sizes: dict[str, int] = {}
    for target in targets:
        payload, size = fetch(target, operation, fixture)
        sizes[target.label] = size
        answer = canonical(operation.name, target.kind, payload)
        if reference is None:
            reference = (target.label, answer)
        elif answer != reference[1]:
            diff = describe_difference(reference[1], answer, names=(reference[0], target.label))
            raise MismatchError(
                f"{operation.name}: {target.label} differs from {reference[0]}:\n{diff}"
            )
    assert reference is not None
    if not reference[1]:
        raise MismatchError(f"{operation.name}: every target answered with no data")
    by_size = ", ".join(f"{label} {size / 1024:.1f} kB" for label, size in sizes.items())
    description = f"{size_summary(reference[1])}; response bodies: {by_size}"
    _say(f"    {operation.name}: the same on all {len(targets)} targets ({description})")
    return description


async def measure_all(
    config: Config,
    tools: Tools,
    operations: Sequence[Operation],
    targets: Sequence[Target],
    fixture: db.Fixture,
    descriptions: dict[str, str],
    pid: int,
    workload: FamiliesWorkload | None = None,
) -> list[OperationReport]:
    """Every operation at every concurrency, the targets alternating within each
    (families: with the writer)."""
    conn = await asyncpg.connect(fixture.database.url)
    counter = StatementCounter(conn)
    reports = []
    total = len(operations) * len(config.concurrencies) * len(targets)
    done = 0
    try:
        for operation in operations:
            report = OperationReport(operation.name, descriptions[operation.name])
            reports.append(report)
            for concurrency in config.concurrencies:
                for target in targets:
                    done += 1
                    request = request_for(target, operation, fixture)
                    result = await measure(
                        tools,
                        target,
                        request,
                        counter,
                        postmaster_pid=pid,
                        concurrency=concurrency,
                        duration=config.duration,
                        warmup=config.warmup,
                        threads=config.threads,
                        workload=workload if operation.name == FAMILIES else None,
                    )
                    report.measurements.append(result)
                    _say(
                        f"    [{done:>2}/{total}] {operation.name:<16} c={concurrency:<3} "
                        f"{target.label:<20} {result.wrk.rps:>8.1f} req/s  "
                        f"p50 {result.wrk.p50_ms:.2f} ms  errors {result.wrk.errors}"
                    )
    finally:
        await conn.close()
    return reports


async def measure_big(
    config: Config,
    tools: Tools,
    base_target: Target,
    base_fixture: db.Fixture,
    big_target: Target,
    big_fixture: db.Fixture,
    pid: int,
) -> BigReport:
    """parent-week at one concurrency: the gateway on the base and on the 10x database.

    Both without the response cache: every request reads the database.
    """
    _say(f"==> the 10x database: parent-week, gateway x1 no-cache, concurrency {BIG_CONCURRENCY}")
    operation = load_operation("parent-week")
    for target, fixture in ((base_target, base_fixture), (big_target, big_fixture)):
        payload, _size = await asyncio.to_thread(fetch, target, operation, fixture)
        if not canonical(operation.name, target.kind, payload):
            raise MismatchError(f"parent-week on {fixture.database.name}: no children")
    results = []
    for target, fixture in ((base_target, base_fixture), (big_target, big_fixture)):
        conn = await asyncpg.connect(fixture.database.url)
        try:
            result = await measure(
                tools,
                target,
                build_request(operation, target.kind, fixture),
                StatementCounter(conn),
                postmaster_pid=pid,
                concurrency=BIG_CONCURRENCY,
                duration=config.duration,
                warmup=config.warmup,
                threads=config.threads,
            )
        finally:
            await conn.close()
        wrk = result.wrk
        _say(f"    {fixture.database.name}: {wrk.rps:.1f} req/s, p50 {wrk.p50_ms:.2f} ms")
        results.append(result)
    return BigReport(base_fixture.database.name, big_fixture.database.name, results[0], results[1])


async def describe_database(database: db.Database, config: Config) -> str:
    conn = await asyncpg.connect(database.url)
    try:
        students = await conn.fetchval("SELECT count(*) FROM school.students")
        marks = await conn.fetchval("SELECT count(*) FROM school.marks")
        version = await conn.fetchval("SHOW server_version")
    finally:
        await conn.close()
    return (
        f"{database.name} (scale {config.scale}, seed {config.seed}, today {config.today}): "
        f"{students:,} students, {marks:,} marks; PostgreSQL {version} (embedded)"
    )

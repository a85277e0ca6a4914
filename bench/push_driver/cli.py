"""`bench/push`: N concurrent SSE subscribers, a writer at a set rate, delivery measured.

bench/push                                  # 1,000 and 10,000 subscribers, 50 changes/s, 30 s
bench/push --quick                          # 50 and 200 subscribers, 5 s (about a minute)
bench/push --subscribers 1000,5000 --rate 20 --seconds 10

For each subscriber count, on the bench's scale-10 database (bench/driver/database.py,
reused when seeded; the schema, change log included, applied again), with a fresh
gateway process (`school-gateway serve --workers 1`, bench/driver/targets.py's settings):
1. N parent families (bench/driver/families.py: real parent accounts with linked students,
   session tokens issued by the project's code) each open one graphql-sse stream
   (client.py), `--connect` handshakes at a time, after one warm-up stream;
2. once the gateway is idle: its resident memory before and after gives kB per idle
   subscriber, and its statements over a few idle seconds are counted;
3. the writer (changes.py) commits `--rate` changes a second for `--seconds`, then the
   subscribers get `--settle` seconds for stragglers; the gateway's statements over that
   time are counted (probes.py); the writer's rows are deleted afterwards.
The report (report.py) is markdown, also written to bench/.results/push-<time>.txt.
Exit code 0 when every Done-means criterion passes, 1 otherwise, 2 on an error.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import resource
import shlex
import signal
import sys
import time
from collections.abc import Sequence
from datetime import UTC, date, datetime
from types import FrameType

import asyncpg
import psutil
import uvloop

from bench.driver import database as db
from bench.driver.config import DEFAULT_TODAY
from bench.driver.families import Family, make_families
from bench.driver.procs import BenchError, ProcessSet, Server
from bench.driver.provenance import git_state, source_fingerprint
from bench.driver.targets import POOL_MAX, PROJECT_ROOT, Target, start_gateway
from bench.push_driver import changes, probes
from bench.push_driver.client import DOCUMENT, Inbox, close_all, open_all
from bench.push_driver.report import Result, details, match, statement_ratio, table, verdict

DATA_DIR = PROJECT_ROOT / "bench" / ".data"
RESULTS_DIR = PROJECT_ROOT / "bench" / ".results"
HOST = "127.0.0.1"
FD_MARGIN = 1000


@dataclasses.dataclass(frozen=True, slots=True)
class Config:
    subscribers: tuple[int, ...]
    rate: float
    seconds: float
    settle: float
    idle_seconds: float
    connect: int
    scale: int
    seed: int
    today: date
    quick: bool


def _counts(raw: str) -> tuple[int, ...]:
    try:
        values = tuple(sorted({int(part) for part in raw.split(",") if part.strip()}))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected e.g. 1000,10000, got {raw!r}") from None
    if not values or values[0] < 1:
        raise argparse.ArgumentTypeError("subscriber counts must be positive whole numbers")
    return values


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench/push",
        description="N concurrent SSE subscribers while a writer commits marks and "
        "attendance: delivery latency, missed and duplicated events, statements/s, "
        "memory per idle subscriber.",
    )
    parser.add_argument("--quick", action="store_true", help="50 and 200 subscribers, 5 s")
    parser.add_argument(
        "--subscribers", type=_counts, help="subscriber counts (default 1000,10000)"
    )
    parser.add_argument("--rate", type=float, default=50.0, help="changes/s (default 50)")
    parser.add_argument("--seconds", type=float, help="writer seconds (default 30; quick 5)")
    parser.add_argument("--settle", type=float, default=2.0, help="wait for stragglers (2 s)")
    parser.add_argument("--idle-seconds", type=float, help="idle statement count (5 s; quick 2)")
    parser.add_argument("--connect", type=int, default=100, help="handshakes at once (100)")
    parser.add_argument("--scale", type=int, default=10, help="database scale (default 10)")
    parser.add_argument("--seed", type=int, default=1, help="generator and family seed (1)")
    parser.add_argument(
        "--today", type=date.fromisoformat, default=DEFAULT_TODAY, help="the data set's today"
    )
    return parser


def resolve(args: argparse.Namespace) -> Config:
    quick = bool(args.quick)
    if args.rate <= 0 or (args.seconds is not None and args.seconds <= 0):
        raise BenchError("--rate and --seconds must be positive")
    return Config(
        subscribers=args.subscribers or ((50, 200) if quick else (1000, 10_000)),
        rate=args.rate,
        seconds=args.seconds or (5.0 if quick else 30.0),
        settle=max(0.0, args.settle),
        idle_seconds=args.idle_seconds or (2.0 if quick else 5.0),
        connect=max(1, args.connect),
        scale=args.scale,
        seed=args.seed,
        today=args.today,
        quick=quick,
    )


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    command = "bench/push" + "".join(f" {shlex.quote(a)}" for a in arguments)
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        config = resolve(build_parser().parse_args(arguments))
        return run(config, command)
    except (BenchError, RuntimeError, asyncpg.PostgresError, OSError) as error:
        print(f"\nbench/push: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nbench/push: interrupted; everything it started is stopped", file=sys.stderr)
        return 130


def _interrupt(signum: int, frame: FrameType | None) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


def _say(line: str) -> None:
    print(line, flush=True)


def raise_open_files(needed: int) -> int:
    """Raise this process's open-files limit to its hard limit (the gateway, started
    later, inherits it); a BenchError if even that is below `needed`."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, needed)
    if target < needed:
        raise BenchError(f"open files: {needed:,} needed, the hard limit is {hard:,}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


def run(config: Config, command: str) -> int:
    started = time.monotonic()
    stamp = datetime.now(UTC)
    limit = raise_open_files(max(config.subscribers) + FD_MARGIN)
    load = os.getloadavg()[0]
    fingerprint = source_fingerprint(PROJECT_ROOT)
    server = db.start_server(DATA_DIR / "pg")
    results: list[Result] = []
    try:
        _say(f"==> database (embedded PostgreSQL on 127.0.0.1:{server.port})")
        database = asyncio.run(
            db.prepare_database(
                server, scale=config.scale, seed_value=config.seed, today=config.today
            )
        )
        _say(f"==> {max(config.subscribers):,} families (parent accounts and tokens)")
        families = asyncio.run(
            make_families(
                database,
                today=config.today,
                seed=config.seed,
                directory=DATA_DIR / "push" / database.name / str(max(config.subscribers)),
                count=max(config.subscribers),
            )
        ).families
        asyncio.run(changes.cleanup(database.url))
        with ProcessSet(DATA_DIR / "logs" / "push") as processes:
            for count in config.subscribers:
                results.append(measure_count(processes, database, families[:count], config))
    finally:
        asyncio.run(_cleanup_quietly(server.url_of(f"bench_s{config.scale}")))
        if server.started_here:
            server.stop()
    header = {
        "command": command,
        "when": f"{stamp:%Y-%m-%d %H:%M} UTC, {time.monotonic() - started:.0f} s in all",
        "machine": f"{psutil.cpu_count()} CPUs, {psutil.virtual_memory().total / 2**30:.0f} GiB, "
        f"load {load:.2f} at the start, {os.getloadavg()[0]:.2f} at the end (1-minute); "
        f"open files {limit:,}",
        "code": f"git {git_state(PROJECT_ROOT)}, gateway sources {fingerprint}"
        + (
            ""
            if source_fingerprint(PROJECT_ROOT) == fingerprint
            else " -- WARNING: the sources changed during the run"
        ),
        "database": f"{database.name} (scale {config.scale}, seed {config.seed}, today "
        f"{config.today})",
    }
    text = render(config, header, results)
    _say("\n" + text)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"push-{stamp:%Y%m%dT%H%M%SZ}.txt"
    path.write_text(text + "\n", encoding="utf-8")
    _say(f"\n(written to {path.relative_to(PROJECT_ROOT)})")
    return 0 if all(ok for ok, _ in verdict(results, config.rate)) else 1


async def _cleanup_quietly(url: str) -> None:
    try:
        await changes.cleanup(url)
    except (OSError, asyncpg.PostgresError) as error:
        print(f"bench/push: the writer's rows were not deleted ({error})", file=sys.stderr)


def measure_count(
    processes: ProcessSet, database: db.Database, families: Sequence[Family], config: Config
) -> Result:
    """One subscriber count on a fresh gateway process."""
    count = len(families)
    _say(f"==> {count:,} subscribers")
    target = start_gateway(processes, database, workers=1, label=f"gateway push {count}")
    _say(f"    gateway pid {target.server.pid} on {target.base_url}")
    try:
        result = uvloop.run(_measure(target, database, families, config))
        return dataclasses.replace(result, gateway_log=_log_problems(target.server))
    finally:
        target.server.stop()
        deleted = asyncio.run(changes.cleanup(database.url))
        _say(f"    gateway stopped; the writer's {deleted:,} rows deleted")


async def _measure(
    target: Target, database: db.Database, families: Sequence[Family], config: Config
) -> Result:
    server = target.server
    role = db.gateway_settings(database.gateway_url).gateway_role
    stats = await asyncpg.connect(database.url)
    writer = await asyncpg.connect(database.url)
    try:
        warm = Inbox()
        opened, failures = await open_all(
            HOST, target.port, [families[0].token], warm, concurrency=1
        )
        if failures:
            raise BenchError(f"the warm-up stream was refused: {failures[0][1]}")
        await close_all(opened)
        await probes.wait_idle(server)
        rss_before = probes.tree_rss(server)
        inbox = Inbox()
        began = time.monotonic()
        subscribers, refused = await open_all(
            HOST, target.port, [f.token for f in families], inbox, concurrency=config.connect
        )
        connect_s = time.monotonic() - began
        _say(f"    {len(subscribers):,} streams open in {connect_s:.1f} s, {len(refused)} refused")
        waited = await probes.wait_idle(server)
        rss_after = probes.tree_rss(server)
        _say(
            f"    idle after {waited:.1f} s: RSS {rss_before / 1e6:.1f} -> {rss_after / 1e6:.1f} MB"
        )
        quiet = await probes.snapshot(stats, role)
        await asyncio.sleep(config.idle_seconds)
        idle = probes.rate_between(quiet, await probes.snapshot(stats, role))
        failed = {index for index, _ in refused}
        scopes = [
            frozenset() if i in failed else frozenset(f.student_ids) for i, f in enumerate(families)
        ]
        journal = await changes.load_journal(
            writer, {s for scope in scopes for s in scope}, config.today
        )
        before = await probes.snapshot(stats, role)
        cpu = probes.tree_cpu(server)
        log = await changes.write_for(
            writer, journal, rate=config.rate, seconds=config.seconds, seed=config.seed
        )
        await asyncio.sleep(config.settle)
        busy = probes.rate_between(before, await probes.snapshot(stats, role))
        cpu = probes.tree_cpu(server) - cpu
        rss_end = probes.tree_rss(server)
        events = list(inbox.events)
        _say(f"    writer: {len(log.changes):,} changes; {len(events):,} events received")
        await close_all(subscribers)
    finally:
        await stats.close()
        await writer.close()
    return Result(
        subscribers=len(families),
        opened=len(subscribers),
        failures=[f"subscriber {i}: {m}" for i, m in refused],
        connect_s=connect_s,
        rss_before=rss_before,
        rss_after=rss_after,
        idle=idle,
        busy=busy,
        writes=len(log.changes),
        write_failures=log.failed,
        write_seconds=log.seconds,
        deliveries=match(log.changes, events, scopes),
        ended_streams=len(set(inbox.completed)),
        stream_errors=[f"subscriber {i}: {m}" for i, m in inbox.errors],
        heartbeats=inbox.heartbeats,
        gateway_cpu_s=cpu,
        rss_end=rss_end,
    )


def _log_problems(server: Server) -> list[str]:
    """Warning and error lines of the gateway's log (it logs at WARNING and above)."""
    try:
        lines = server.log_path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return []
    marks = ("WARNING", "ERROR", "CRITICAL", "Traceback")
    return [f"gateway log: {line}" for line in lines if any(m in line for m in marks)]


def render(config: Config, header: dict[str, str], results: Sequence[Result]) -> str:
    lines = [
        "### Push: SSE subscribers (bench/push)",
        "",
        *(f"- {key}: {value}" for key, value in header.items()),
        f"- gateway: one process (`school-gateway serve --workers 1`, uvloop + httptools), "
        f"pool max {POOL_MAX}, heartbeat 15 s, a fresh process per subscriber count",
        f"- subscribers: distinct parent accounts (bench/driver/families.py), one graphql-sse "
        f"stream each, `{DOCUMENT}`",
        f"- writer: {config.rate:g} changes/s for {config.seconds:g} s, each its own "
        f"transaction on the owner's connection: {changes.MARK_SHARE:.0%} new marks, the rest "
        f"new attendance records; {changes.SUBSCRIBED_SHARE:.0%} for the subscribed families' "
        f"students, the rest for classmates no subscriber may see; then {config.settle:g} s "
        "for stragglers",
        "- latency: commit returned → event read by the subscriber (one clock, this process)",
        "- statements/s: pg_stat_statements, every top-level statement of the gateway's login "
        "role in the bench database (reads, writes, BEGIN/COMMIT, LISTEN...), from the writer's "
        f"start to the end of the settle wait; idle: {config.idle_seconds:g} s with every "
        "stream open, before the writer",
        "- memory: resident set of the gateway's process tree, idle after one warm-up stream "
        "and idle with every stream open; the difference over the streams, kB of 1000 bytes",
        "",
        *table(results),
        "",
        *details(results),
    ]
    if len(results) > 1:
        lines += [
            "",
            f"Statements/s while writing, most vs fewest subscribers: "
            f"{statement_ratio(results):.3f}x",
        ]
    lines += ["", "Done means:"]
    lines += [f"- {'PASS' if ok else 'FAIL'} {text}" for ok, text in verdict(results, config.rate)]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())

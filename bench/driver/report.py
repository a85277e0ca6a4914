"""The printed report: one table per operation, the ratios, the 10x database's latency.

The same text goes to bench/.results/<timestamp>.txt, and (for full runs) into
docs/performance.md between the generated-section markers; the rest of that file (the
hand-written optimisation log) is kept.
"""

from __future__ import annotations

import contextlib
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bench.driver.config import Config
from bench.driver.install import Tools
from bench.driver.measure import STATEMENT_SAMPLE_REQUESTS, Measurement
from gateway.http.response_cache import MAX_ENTRIES

DOC_BEGIN = "<!-- bench:generated:begin (bench/run rewrites this section) -->"
DOC_END = "<!-- bench:generated:end -->"
_TARGET = 25  # the target column's width: "gateway x1 no-cache gzip" and a space
_LABEL = 50  # the ratio block's: "response-cache hit rate, gateway x1 no-cache gzip" and one
_HEADER = (
    f"{'target':<{_TARGET}}{'conc':>5}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}"
    f"{'kB/resp':>9}{'stmt/req':>10}{'CPU s/1k':>10}{'DB CPU s/1k':>13}{'peak MB/proc':>14}"
    f"{'other %':>9}"
)


@dataclass
class OperationReport:
    """An operation's measurements and what its answer looks like."""

    name: str
    description: str
    measurements: list[Measurement] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class BigReport:
    """parent-week on the base and on the 10x database, same target and concurrency."""

    base_database: str
    big_database: str
    base: Measurement
    big: Measurement


def _row(item: Measurement) -> str:
    w = item.wrk
    return (
        f"{item.target:<{_TARGET}}{item.concurrency:>5}{w.rps:>9.1f}{w.p50_ms:>9.2f}{w.p99_ms:>9.2f}"
        f"{w.errors:>8}{w.kb_per_response:>9.2f}{item.statements_per_request:>10.2f}{item.cpu_per_1000:>10.2f}"
        f"{item.db_cpu_per_1000:>13.2f}{item.peak_mb:>14.1f}{item.other_cpu_percent:>9.0f}"
    )


def _rps(items: Sequence[Measurement], target: str, concurrency: int) -> float | None:
    for item in items:
        if item.target == target and item.concurrency == concurrency:
            return item.wrk.rps
    return None


RATIOS = (
    ("gateway/PostGraphile, 1 process", "gateway x1", "postgraphile x1"),
    ("gateway/PostGraphile, 2 processes", "gateway x2", "postgraphile x2"),
    ("gateway/PostGraphile-RLS, 1 process", "gateway x1", "postgraphile-rls x1"),
    ("gateway/raw-limit, 1 process", "gateway x1", "raw-limit x1"),
    ("gateway no-cache/PostGraphile, 1 process", "gateway x1 no-cache", "postgraphile x1"),
    ("gateway no-cache/PostGraphile-RLS, 1 process", "gateway x1 no-cache", "postgraphile-rls x1"),
    ("gateway no-cache/raw-limit, 1 process", "gateway x1 no-cache", "raw-limit x1"),
    (
        "gateway no-cache gzip/no-cache, 1 process",
        "gateway x1 no-cache gzip",
        "gateway x1 no-cache",
    ),
    (
        "metrics + tracing on/off (--trace-ratio)",
        "gateway x1 no-cache otel",
        "gateway x1 no-cache bare",
    ),
)


def ratio_table(items: Sequence[Measurement], concurrencies: Sequence[int]) -> list[str]:
    """Throughput ratios at equal process count, one column per concurrency."""
    lines = [f"{'throughput ratio':<{_LABEL}}" + "".join(f"{f'c={c}':>9}" for c in concurrencies)]
    for label, mine, peer in RATIOS:
        cells = []
        for concurrency in concurrencies:
            ours, theirs = _rps(items, mine, concurrency), _rps(items, peer, concurrency)
            if ours is None or not theirs:
                cells.append(f"{'-':>9}")
            else:
                cells.append(f"{ours / theirs:>8.2f}x")
        if any(cell.strip() != "-" for cell in cells):  # targets left out: no row
            lines.append(f"{label:<{_LABEL}}" + "".join(cells))
    return lines


def operation_section(report: OperationReport, concurrencies: Sequence[int]) -> list[str]:
    lines = [f"== {report.name}: {report.description}", _HEADER]
    for concurrency in concurrencies:
        lines += [_row(item) for item in report.measurements if item.concurrency == concurrency]
    lines.append("")
    lines += ratio_table(report.measurements, concurrencies)
    lines += workload_lines(report.measurements, concurrencies)
    return lines


def workload_lines(items: Sequence[Measurement], concurrencies: Sequence[int]) -> list[str]:
    """families: each gateway target's response-cache hit rate over its timed runs, and
    the writer's rate during the runs (rows changed; lowest-highest over the targets)
    and its failed writes (summed). The hit rate is printed raw, not clamped at 0."""
    if all(item.hit_rate is None and item.writes_per_s is None for item in items):
        return []
    lines = []
    for target in dict.fromkeys(item.target for item in items if item.hit_rate is not None):
        cells = []
        for concurrency in concurrencies:
            rates = [
                i.hit_rate
                for i in items
                if i.target == target and i.concurrency == concurrency and i.hit_rate is not None
            ]
            cells.append(f"{100 * rates[0]:>8.0f}%" if rates else f"{'-':>9}")
        lines.append(f"{f'response-cache hit rate, {target}':<{_LABEL}}" + "".join(cells))
    lines += miss_lines(items, concurrencies)
    cells = []
    for concurrency in concurrencies:
        rates = [
            i.writes_per_s
            for i in items
            if i.concurrency == concurrency and i.writes_per_s is not None
        ]
        spread = f"{min(rates):.1f}-{max(rates):.1f}" if rates else "none"
        cells.append(f"{spread:>9}" if len(spread) < 9 else f" {spread}")
    lines.append(f"{'teachers writer, writes/s during the runs':<{_LABEL}}" + "".join(cells))
    failed = [i.writes_failed for i in items if i.writes_failed is not None]
    if failed:
        lines.append(f"{'teachers writer, failed writes (all runs)':<{_LABEL}}{sum(failed):>9}")
    # Without the cache every request reads the diary once: a rate away from 0 there means
    # the count was disturbed (another run on the server resetting or adding statements).
    if any(i.hit_rate and abs(i.hit_rate) > 0.05 and "no-cache" in i.target for i in items):
        disturbed = [
            f"{100 * i.hit_rate:.0f}% at c={i.concurrency}"
            for i in items
            if "no-cache" in i.target and i.hit_rate is not None
        ]
        lines.append(
            "WARNING: hit rates unreliable: the no-cache target counts "
            + ", ".join(disturbed)
            + " (another run on the same server?)"
        )
    return lines


def memory_section(reports: Sequence[OperationReport]) -> list[str]:
    """Each target's resident memory over the run: the largest serving process as its
    first timed run began, that run's peak and its last timed run's peak (runs in the
    order measured, over all operations): flat memory keeps the last peak near the first."""
    runs: dict[str, list[Measurement]] = {}
    for report in reports:
        for item in report.measurements:
            runs.setdefault(item.target, []).append(item)
    if not runs:
        return []
    lines = [
        "== memory per serving process over the run, resident MB (first timed run: at its "
        "start, its peak; last timed run: its peak)",
        f"{'target':<{_TARGET}}{'runs':>5}{'start MB':>10}{'first peak':>12}{'last peak':>11}"
        f"{'last-first':>12}",
    ]
    for target, items in runs.items():
        first, last = items[0], items[-1]
        lines.append(
            f"{target:<{_TARGET}}{len(items):>5}{first.start_mb:>10.1f}{first.peak_mb:>12.1f}"
            f"{last.peak_mb:>11.1f}{last.peak_mb - first.peak_mb:>+12.1f}"
        )
    return lines


def miss_lines(items: Sequence[Measurement], concurrencies: Sequence[int]) -> list[str]:
    """families: each replayed gateway target's diary reads as first-time + invalidated
    misses (bench.driver.families.CacheReplay), one cell per concurrency."""
    lines = []
    for target in dict.fromkeys(item.target for item in items if item.first_misses is not None):
        cells = []
        for concurrency in concurrencies:
            splits = [
                _split(i) for i in items if i.target == target and i.concurrency == concurrency
            ]
            cells.append(f"{splits[0]:>9}" if splits and splits[0] else f"{'-':>9}")
        lines.append(f"{f'misses first-time+invalidated, {target}':<{_LABEL}}" + "".join(cells))
    return lines


def _split(item: Measurement) -> str:
    """A measurement's misses as "first+invalidated" ("" without a replay)."""
    if item.first_misses is None or item.hit_rate is None:
        return ""
    misses = round((1.0 - item.hit_rate) * item.wrk.requests)  # the diary reads
    # The replay is exact only up to the requests in flight at the run's edges: a
    # difference below zero is that, shown as 0.
    return f"{item.first_misses}+{max(misses - item.first_misses, 0)}"


def big_section(big: BigReport) -> list[str]:
    ratio_p50 = big.big.wrk.p50_ms / big.base.wrk.p50_ms if big.base.wrk.p50_ms else 0.0
    ratio_p99 = big.big.wrk.p99_ms / big.base.wrk.p99_ms if big.base.wrk.p99_ms else 0.0
    rps = big.big.wrk.rps / big.base.wrk.rps if big.base.wrk.rps else 0.0
    return [
        f"== parent-week on the 10x database ({big.big_database}) vs the base one "
        f"({big.base_database}): {big.base.target}, concurrency {big.base.concurrency}",
        _HEADER,
        _row(big.base).replace(big.base.target, f"{'base db':<{len(big.base.target)}}", 1),
        _row(big.big).replace(big.big.target, f"{'10x db':<{len(big.big.target)}}", 1),
        "",
        f"gateway latency ratio 10x/base: p50 {ratio_p50:.2f}x, p99 {ratio_p99:.2f}x "
        f"(throughput {rps:.2f}x)",
    ]


def write_results(results_dir: Path, stamp: str, text: str) -> Path:
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"{stamp}.txt"
    path.write_text(text + "\n", encoding="utf-8")
    return path


_DOC_INTRO = """# Performance

How the gateway compares with PostGraphile v5 and with the raw-SQL limit on the same
database and machine, measured by `bench/run` (see the README's *Benchmarks* section).
The generated section below is rewritten by every full run; the optimisation log at the
bottom is written by hand and kept.
"""

_DOC_LOG = """## Optimisation log

Each optimisation of the gateway with its measured effect (ratios from `bench/run`
before and after, same machine, same day).

| change | measured effect (ratios before → after) | notes |
|---|---|---|
"""


def update_doc(doc: Path, generated_markdown: str) -> None:
    """Replace the generated section of docs/performance.md, keeping everything else."""
    block = f"{DOC_BEGIN}\n{generated_markdown.rstrip()}\n{DOC_END}"
    if doc.exists():
        text = doc.read_text(encoding="utf-8")
        if DOC_BEGIN in text and DOC_END in text:
            before, rest = text.split(DOC_BEGIN, 1)
            _old, after = rest.split(DOC_END, 1)
            doc.write_text(before + block + after, encoding="utf-8")
            return
        doc.write_text(text.rstrip() + "\n\n" + block + "\n", encoding="utf-8")
        return
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(f"{_DOC_INTRO}\n{block}\n\n{_DOC_LOG}", encoding="utf-8")


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def _cores() -> int:
    return len(os.sched_getaffinity(0))


FAIRNESS = [
    "PostGraphile connects as the database superuser and reads the `school` tables",
    "directly: no row-level security, no per-family authorization, no token check. The",
    "gateway verifies a bearer token, loads the viewer's scope and checks it on every",
    "request, and reads through the read-contract views as a read-only role. This favours",
    "PostGraphile. `postgraphile-rls x1` is the fair peer: the same server verifying an HS256",
    "JWT per request (claims -> pgSettings, role switched from a NOINHERIT authenticator) and",
    "row-level security policies (bench/postgraphile/rls.sql) restricting the viewer to the",
    "students of its parent records and their classes.",
    "The raw limit runs the gateway's own SQL (resolvers.diary.sql) with the student",
    "ids given in the request body: no GraphQL, no token, no scope check.",
    "PostGraphile's student-quarter returns the marks only; the weighted averages are",
    "computed by the checker from them (not inside its timed requests). Lesson start/end",
    "times are left out of parent-week: PostGraphile has no relation from lessons to bells.",
    "Every target has a pool of at most 10 connections per process; all run on one 2-core",
    "machine with wrk and PostgreSQL, so absolute numbers are noise: quote the ratios.",
    "CACHE: `gateway xN` serves with its response cache (on by default), and wrk repeats",
    "one identical request, so all but the first are hits: the token, the viewer's scope",
    "and the change versions are still checked (2 statements), the diary is not read.",
    "That is the best case (a family reloading an unchanged diary). `gateway x1 no-cache`",
    "(SCHOOL_GATEWAY_RESPONSE_CACHE=0) executes every request: the figure for requests",
    "that differ or data that changed. The 10x-database comparison uses it too.",
    "FAMILIES: --families parent accounts (default 10,000; --quick 2,000) with tokens made by",
    "auth.store (API sessions, reused by later runs while valid); each request a",
    "random family's week (the same seeded sequence for every target; PostGraphile and",
    "the raw limit get the student ids, PostGraphile-RLS the family's JWT). A writer process",
    "(bench/driver/writer.py) writes marks, attendance and topics in the families' schools",
    "during each run (its DB CPU counts in DB CPU s/1k, its own CPU in other %). Hit rate =",
    "1 - diary reads / requests (pg_stat_statements over the timed run: like stmt/req it",
    "needs the server to itself; the no-cache target's rate, 0% when undisturbed, checks it).",
    "Before a target's first run every family is read once (steady state, not cold start);",
    "later runs start from what the earlier ones left (c=1 before c=16). The cache holds",
    f"{MAX_ENTRIES:,} answers per process: with more families the least recently read go.",
    "Misses of gateway x1 = first-time + invalidated: first-time = requests of a family not",
    "in the cache, replayed from the families each run asked for (families.lua) through the",
    "gateway's own bounded cache; the other diary reads found an answer the writer made stale",
    "(approximate: requests in flight at a run's edges are not replayed exactly).",
]


def render(
    config: Config,
    command: str,
    tools: Tools,
    reports: Sequence[OperationReport],
    big: BigReport | None,
    header: dict[str, str],
    started: float,
) -> str:
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"school-gateway benchmark, {now}",
        f"command:  {command}",
        f"machine:  {_cores()} cores, {_cpu_model()}; Python {platform.python_version()}, "
        f"Node {tools.node_version()}, PostGraphile 5.1.5, {tools.wrk_version()}",
        *(f"{f'{key}:':<10}{value}" for key, value in header.items()),
        f"runs:     {config.duration} timed after a {config.warmup} warm-up, concurrency "
        f"{','.join(map(str, config.concurrencies))}, wrk threads {config.threads}; "
        "targets alternate within each concurrency",
        "targets:  gateway xN = school-gateway serve --workers N (response cache on; "
        "x1 no-cache: off; x1 no-cache gzip: its requests take gzip); postgraphile xN = "
        "PostGraphile v5 (amber preset, NODE_ENV=production), N node:cluster processes; "
        "raw-limit x1 = bench/raw_limit.py (Starlette + asyncpg + orjson, 1 uvicorn worker)",
        "columns:  kB/resp = bytes wrk read per response (status line, headers, body) / 1000; "
        "stmt/req = SQL statements per request (pg_stat_statements over "
        f"{STATEMENT_SAMPLE_REQUESTS} sequential requests); CPU s/1k = CPU "
        "seconds of the target's processes per 1000 requests; DB CPU s/1k = the same for "
        "PostgreSQL; peak MB/proc = the largest resident set of one serving process; other % "
        "= the machine's CPU used by anything else during the run (high = unreliable)",
        "fairness: " + "\n          ".join(FAIRNESS),
        "",
    ]
    if config.gateway_env:
        settings = " ".join(f"{name}={value}" for name, value in config.gateway_env)
        lines.insert(-2, f"settings: every gateway target ran with {settings}")
    for report in reports:
        lines += operation_section(report, config.concurrencies)
        lines.append("")
    lines += [*memory_section(reports), ""]
    if big is not None:
        lines += big_section(big)
    else:
        lines.append("(10x database skipped)")
    lines.append("")
    lines.append(f"total time {time.monotonic() - started:.0f} s")
    return "\n".join(lines)


def markdown(text: str) -> str:
    """The generated section of docs/performance.md: the latest run as printed."""
    first, command = text.splitlines()[0], text.splitlines()[1]
    return "\n".join(
        [
            "## Latest run",
            "",
            f"Generated by `{command.removeprefix('command:').strip()}` ({first}).",
            "Reproduce with `bench/run` (full) or `bench/run --quick` (smoke); every run also",
            "writes its output to `bench/.results/<timestamp>.txt`.",
            "",
            "```text",
            text,
            "```",
        ]
    )

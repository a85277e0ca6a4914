"""The command line of `bench/run` and the run's settings after --quick and defaults."""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from datetime import date

from bench.driver.operations import OPERATION_NAMES

DEFAULT_TODAY = date(2026, 11, 27)
_DURATION_RE = re.compile(r"^\d+(\.\d+)?(ms|s|m)?$")


@dataclass(frozen=True, slots=True)
class Config:
    """The run's settings after --quick and the defaults are applied."""

    scale: int
    big_scale: int | None
    seed: int
    today: date
    concurrencies: tuple[int, ...]
    duration: str
    warmup: str
    threads: int
    operations: tuple[str, ...]
    write_doc: bool
    quick: bool
    targets: tuple[str, ...] = ()
    gateway_env: tuple[tuple[str, str], ...] = ()
    writes_per_second: float | None = None  # families: None = the school-day peak
    families: int = 10_000  # families: how many parent accounts the requests rotate over
    # gateway-x1-no-cache-otel: the share of requests traced; None = tracing off (metrics only)
    trace_ratio: float | None = 0.05


def _duration(raw: str) -> str:
    if not _DURATION_RE.match(raw):
        raise argparse.ArgumentTypeError(f"expected a wrk duration like 10s, got {raw!r}")
    return raw


def _concurrencies(raw: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in raw.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected e.g. 1,16,64, got {raw!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("concurrencies must be positive whole numbers")
    return values


def _operations(raw: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in raw.split(",") if part.strip())
    unknown = [name for name in names if name not in OPERATION_NAMES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"operations are {', '.join(OPERATION_NAMES)}")
    return names


TARGET_NAMES = (
    "gateway-x1",
    "gateway-x1-no-cache",
    "gateway-x1-no-cache-gzip",
    "gateway-x1-no-cache-bare",
    "gateway-x1-no-cache-otel",
    "gateway-x2",
    "postgraphile-x1",
    "postgraphile-x2",
    "postgraphile-rls-x1",
    "raw-limit-x1",
)


def _targets(raw: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in raw.split(",") if name.strip())
    unknown = [name for name in names if name not in TARGET_NAMES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"targets are a subset of {','.join(TARGET_NAMES)}")
    return names


def _trace_ratio(raw: str) -> str:
    if raw == "off":
        return raw
    try:
        ratio = float(raw)
    except ValueError:
        ratio = -1.0
    if not 0.0 <= ratio <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a ratio from 0 to 1 or off, got {raw!r}")
    return raw


def _env_pair(raw: str) -> tuple[str, str]:
    name, sep, value = raw.partition("=")
    if not sep or not name.startswith("SCHOOL_GATEWAY_"):
        raise argparse.ArgumentTypeError("expected SCHOOL_GATEWAY_NAME=value")
    return name, value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench/run",
        description="The gateway vs PostGraphile v5 vs the raw-SQL limit, on one database.",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: scale 2, short runs")
    parser.add_argument("--scale", type=int, help="base database scale (default 10; quick: 2)")
    parser.add_argument("--big-scale", type=int, help="the 10x database's scale (10 x scale)")
    parser.add_argument("--skip-big", action="store_true", help="no 10x database run")
    parser.add_argument("--seed", type=int, default=1, help="generator seed (default 1)")
    parser.add_argument(
        "--today",
        type=date.fromisoformat,
        default=DEFAULT_TODAY,
        help=f"the data set's today (default {DEFAULT_TODAY})",
    )
    parser.add_argument(
        "--concurrency", type=_concurrencies, help="connections per run (default 1,16,64)"
    )
    parser.add_argument("--duration", type=_duration, help="timed run length (default 10s)")
    parser.add_argument("--warmup", type=_duration, help="warm-up before each run (default 3s)")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (default 1)")
    parser.add_argument(
        "--operations",
        type=_operations,
        default=OPERATION_NAMES,
        help=f"comma-separated subset of {','.join(OPERATION_NAMES)} (default all)",
    )
    parser.add_argument(
        "--targets",
        type=_targets,
        default=TARGET_NAMES,
        help=f"comma-separated subset of {','.join(TARGET_NAMES)} (default all)",
    )
    parser.add_argument(
        "--gateway-env",
        type=_env_pair,
        action="append",
        default=[],
        metavar="SCHOOL_GATEWAY_X=V",
        help="a setting for every gateway target (repeatable), e.g. "
        "SCHOOL_GATEWAY_SERVER=asyncio, SCHOOL_GATEWAY_EXECUTOR=reference",
    )
    parser.add_argument(
        "--writes-per-second",
        type=float,
        help="families: the teachers' writer's rate (default: a school-day peak, "
        "estimated from the data; see bench/driver/writer.py; 0: no writer)",
    )
    parser.add_argument(
        "--families",
        type=int,
        help="families: distinct parent accounts (default 10,000, beyond the gateway's "
        "2,048 cached answers per process; quick: 2,000; at scale 10 up to ~20,000)",
    )
    parser.add_argument(
        "--trace-ratio",
        type=_trace_ratio,
        default="0.05",
        help="gateway-x1-no-cache-otel: share of requests traced, 0-1 (default 0.05), "
        "or off (metrics only)",
    )
    docs = parser.add_mutually_exclusive_group()
    docs.add_argument("--doc", dest="doc", action="store_true", default=None, help="update docs")
    docs.add_argument("--no-doc", dest="doc", action="store_false", help="leave docs alone")
    return parser


def resolve_config(args: argparse.Namespace) -> Config:
    quick = bool(args.quick)
    scale = args.scale or (2 if quick else 10)
    skip_big = args.skip_big or (quick and args.big_scale is None)
    return Config(
        scale=scale,
        big_scale=None if skip_big else (args.big_scale or scale * 10),
        seed=args.seed,
        today=args.today,
        concurrencies=args.concurrency or ((1, 16) if quick else (1, 16, 64)),
        duration=args.duration or ("3s" if quick else "10s"),
        warmup=args.warmup or ("1s" if quick else "3s"),
        threads=max(1, args.threads),
        operations=args.operations,
        write_doc=(not quick) if args.doc is None else args.doc,
        quick=quick,
        targets=args.targets,
        gateway_env=tuple(args.gateway_env),
        writes_per_second=args.writes_per_second,
        families=max(1, args.families or (2000 if quick else 10_000)),
        trace_ratio=None if args.trace_ratio == "off" else float(args.trace_ratio),
    )

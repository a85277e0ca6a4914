"""The phases of a chaos run and what each one measured.

A phase runs the load from its start to its end; a restart or crash phase lets the load
run `before_s`, then restarts or crashes PostgreSQL (in a thread, the load goes on), then
keeps the load running `after_s` past the moment the database is back.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench.chaos_driver.load import Family, Load, run_load
from bench.chaos_driver.postgres import Outage

_LOG_LINE_RE = re.compile(r"^\S+ \S+ (WARNING|ERROR|CRITICAL) (\S+) (.*)$", re.MULTILINE)
# What varies between otherwise equal log lines: numbers, quoted details, the request.
_VARYING_RE = re.compile(r"\d+|'[^']*'|\"[^\"]*\"|(GET|POST) \S+")
_TRACEBACK = "Traceback (most recent call last)"


@dataclass(frozen=True, slots=True)
class Timing:
    """How long each part of a phase lasts and how much load it may send."""

    clients: int
    steady_s: float
    before_s: float
    after_s: float
    crash_down_s: float
    max_requests: int


@dataclass(frozen=True, slots=True)
class LogCounts:
    """What the gateway logged during a phase."""

    warnings: int
    errors: int
    tracebacks: int
    kinds: Counter[str]  # "LEVEL logger: message" with the varying parts elided


@dataclass(frozen=True, slots=True)
class Audit:
    """A phase's access audit: answers that showed students' data, rows written, and rows
    that repeat another (same account, time, students: a batch written twice)."""

    answers: int
    rows: int
    duplicates: int = 0

    @property
    def exact(self) -> bool:
        return self.rows == self.answers and self.duplicates == 0


@dataclass(frozen=True, slots=True)
class PhaseResult:
    """One row of the table."""

    gateway: str
    name: str
    load: Load
    outage: Outage | None
    log: LogCounts
    seconds: float
    window: tuple[datetime, datetime]  # wall clock: the phase's first and last moment
    audit: Audit | None = None

    @property
    def answers_with_data(self) -> int:
        return sum(outcome.returned_data for outcome in self.load.outcomes)

    @property
    def requests(self) -> int:
        return len(self.load.outcomes)

    def by_label(self) -> Counter[str]:
        return Counter(outcome.label for outcome in self.load.outcomes)

    @property
    def wrong(self) -> int:
        return sum(outcome.wrong for outcome in self.load.outcomes)

    @property
    def unavailable_without_retry_after(self) -> int:
        return sum(
            outcome.status == 503 and not outcome.retry_after for outcome in self.load.outcomes
        )

    @property
    def max_latency(self) -> float:
        return max((outcome.latency for outcome in self.load.outcomes), default=0.0)

    @property
    def recovery(self) -> float | None:
        """Seconds from the database being back to the first good answer after it."""
        if self.outage is None:
            return None
        back = self.outage.back_at
        good = [o.done_at for o in self.load.outcomes if o.good and o.done_at >= back]
        return min(good) - back if good else None


class GatewayLog:
    """The gateway's log file, read from where the last phase stopped."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = self._size()

    def _size(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    def counts_since_last(self) -> LogCounts:
        with self.path.open("rb") as log:
            log.seek(self.offset)
            text = log.read().decode(errors="replace")
        self.offset += len(text.encode())
        lines = _LOG_LINE_RE.findall(text)
        levels = Counter(level for level, _logger, _message in lines)
        return LogCounts(
            warnings=levels["WARNING"],
            errors=levels["ERROR"] + levels["CRITICAL"],
            tracebacks=text.count(_TRACEBACK),
            kinds=Counter(_kind(*line) for line in lines),
        )


def _kind(level: str, logger: str, message: str) -> str:
    return f"{level} {logger} {_VARYING_RE.sub('…', message)[:110]}"


async def run_phase(
    *,
    gateway: str,
    name: str,
    base_url: str,
    families: Sequence[Family],
    week: tuple[str, str],
    timing: Timing,
    log: GatewayLog,
    action: Callable[[], Outage] | None,
) -> PhaseResult:
    """Load from start to end; `action` (restart or crash) after `before_s`, in a thread."""
    began = datetime.now(UTC)
    started = time.monotonic()
    stop_at = [started + timing.steady_s if action is None else float("inf")]
    hard_stop = started + timing.before_s + timing.crash_down_s + timing.after_s + 120.0

    def done() -> bool:
        now = time.monotonic()
        return now >= stop_at[0] or now >= hard_stop

    load_task = asyncio.create_task(
        run_load(
            base_url,
            families,
            week,
            clients=timing.clients,
            max_requests=timing.max_requests,
            until=done,
        )
    )
    outage: Outage | None = None
    try:
        if action is not None:
            await asyncio.sleep(timing.before_s)
            outage = await asyncio.to_thread(action)
            stop_at[0] = time.monotonic() + timing.after_s
        load = await load_task
    finally:
        stop_at[0] = 0.0  # on an error in the action, the clients stop at once
        if not load_task.done():
            await asyncio.wait([load_task], timeout=30)
    return PhaseResult(
        gateway=gateway,
        name=name,
        load=load,
        outage=outage,
        log=log.counts_since_last(),
        seconds=time.monotonic() - started,
        window=(began, datetime.now(UTC)),
    )

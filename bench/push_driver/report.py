"""The push bench's figures: deliveries matched to changes, latency, the table, the verdict.

A delivery is expected for every (subscriber, change) where the change's student is one
of the subscriber's family's students. Matching is by the changed row (`mark:<id>`,
`attendance:<id>`), so a late, missing or repeated event is seen whatever its cursor.
- latency: receipt time minus the change's commit time (both `time.monotonic()` in this
  process), for the first receipt of each expected delivery;
- missed: expected deliveries not received by the end of the settle wait;
- duplicated: receipts beyond the first of one (subscriber, change), plus receipts of a
  cursor a subscriber had already received;
- foreign: receipts that were not expected: a student outside the subscriber's family
  (an authorization failure), or a change this writer did not make.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from bench.push_driver.changes import Change
from bench.push_driver.client import Received
from bench.push_driver.probes import StatementRate

MAX_P99_MS = 1000.0
MAX_KB_PER_SUBSCRIBER = 20.0
MAX_STATEMENT_DRIFT = 0.10
DONE_SUBSCRIBERS = 10_000
DONE_RATE = 50.0


@dataclass(frozen=True, slots=True)
class Deliveries:
    expected: int
    received: int  # `next` events read in all
    latencies_ms: list[float]
    missed: int
    duplicated: int
    foreign: int
    changes_subscribed: int
    changes_unsubscribed: int
    missed_examples: list[str] = field(default_factory=list)


def match(
    changes: Sequence[Change], events: Sequence[Received], scopes: Sequence[frozenset[int]]
) -> Deliveries:
    """Match what the subscribers read against what the writer committed."""
    audience: dict[int, list[int]] = {}
    for index, scope in enumerate(scopes):
        for student in scope:
            audience.setdefault(student, []).append(index)
    by_entity = {change.entity: change for change in changes}
    expected = {
        (index, change.entity)
        for change in changes
        for index in audience.get(change.student_id, ())
    }
    seen: Counter[tuple[int, str]] = Counter()
    cursors: Counter[tuple[int, str]] = Counter()
    latencies: list[float] = []
    foreign = 0
    for event in events:
        key = (event.subscriber, event.entity)
        seen[key] += 1
        cursors[(event.subscriber, event.cursor)] += 1
        if key not in expected:
            foreign += 1
        elif seen[key] == 1:
            latencies.append((event.at - by_entity[event.entity].committed_at) * 1000)
    missing = sorted(expected - set(seen))
    repeated = sum(n - 1 for n in seen.values()) + sum(n - 1 for n in cursors.values())
    return Deliveries(
        expected=len(expected),
        received=len(events),
        latencies_ms=sorted(latencies),
        missed=len(missing),
        duplicated=repeated,
        foreign=foreign,
        changes_subscribed=sum(1 for c in changes if c.student_id in audience),
        changes_unsubscribed=sum(1 for c in changes if c.student_id not in audience),
        missed_examples=[f"subscriber {i}: {e}" for i, e in missing[:5]],
    )


def percentile(sorted_values: Sequence[float], share: float) -> float:
    """The nearest-rank percentile of sorted values (nan for none)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(share * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass(frozen=True, slots=True)
class Result:
    """One measurement: N subscribers, the writer, what arrived, what it cost."""

    subscribers: int
    opened: int
    failures: list[str]
    connect_s: float
    rss_before: int
    rss_after: int
    idle: StatementRate
    busy: StatementRate
    writes: int
    write_failures: list[str]
    write_seconds: float
    deliveries: Deliveries
    ended_streams: int
    stream_errors: list[str]
    heartbeats: int
    gateway_cpu_s: float  # during the writer phase and the settle wait
    rss_end: int = 0  # after the settle wait, every stream still open
    gateway_log: list[str] = field(default_factory=list)  # its warnings and errors

    @property
    def kb_per_subscriber(self) -> float:
        """Resident memory added per open stream, kB of 1000 bytes."""
        return (self.rss_after - self.rss_before) / max(1, self.opened) / 1000

    @property
    def events_per_s(self) -> float:
        return len(self.deliveries.latencies_ms) / self.write_seconds if self.write_seconds else 0.0

    def p(self, share: float) -> float:
        return percentile(self.deliveries.latencies_ms, share)


def table(results: Sequence[Result]) -> list[str]:
    """The markdown table, one row per subscriber count."""
    head = (
        "| subscribers | open | connect s | RSS MB idle before → after | kB / idle subscriber "
        "| changes (subscribed + not) | deliveries expected | received | missed | duplicated "
        "| foreign | p50 ms | p99 ms | max ms | events/s | statements/s writing | statements/s "
        "idle | gateway CPU s |"
    )
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for r in results:
        d = r.deliveries
        lines.append(
            f"| {r.subscribers:,} | {r.opened:,} | {r.connect_s:.1f} "
            f"| {r.rss_before / 1e6:.1f} → {r.rss_after / 1e6:.1f} | {r.kb_per_subscriber:.1f} "
            f"| {r.writes:,} ({d.changes_subscribed:,} + {d.changes_unsubscribed:,}) "
            f"| {d.expected:,} | {d.received:,} | {d.missed:,} | {d.duplicated:,} "
            f"| {d.foreign:,} | {r.p(0.5):.0f} | {r.p(0.99):.0f} | {r.p(1.0):.0f} "
            f"| {r.events_per_s:.1f} | {r.busy.per_second:.1f} | {r.idle.per_second:.1f} "
            f"| {r.gateway_cpu_s:.1f} |"
        )
    return lines


def details(results: Sequence[Result]) -> list[str]:
    """Per run: failures, ended streams, the most called statements."""
    lines: list[str] = []
    for r in results:
        lines.append(
            f"- {r.subscribers:,} subscribers: writer {r.writes:,} changes in "
            f"{r.write_seconds:.1f} s ({r.writes / max(r.write_seconds, 1e-9):.1f}/s, "
            f"{len(r.write_failures)} failed); streams failed to open {len(r.failures)}, "
            f"ended early {r.ended_streams}, broken {len(r.stream_errors)}; heartbeats "
            f"{r.heartbeats:,}; gateway statements {r.busy.total:,} in {r.busy.seconds:.1f} s "
            f"writing, {r.idle.total:,} in {r.idle.seconds:.1f} s idle; gateway RSS after "
            f"writing {r.rss_end / 1e6:.1f} MB; gateway log: {len(r.gateway_log)} warnings/errors"
        )
        problems = [*r.failures[:3], *r.stream_errors[:3], *r.write_failures[:3]]
        for message in [*problems, *r.gateway_log[:5]]:
            lines.append(f"  - {message[:300]}")
        for example in r.deliveries.missed_examples:
            lines.append(f"  - missed: {example}")
        for calls, query in r.busy.top:
            lines.append(f"  - {calls:,} x `{' '.join(query.split())[:110]}`")
    return lines


def statement_ratio(results: Sequence[Result]) -> float:
    """Statements/s while writing, the most subscribers' over the fewest's."""
    low = min(results, key=lambda r: r.subscribers)
    high = max(results, key=lambda r: r.subscribers)
    return high.busy.per_second / low.busy.per_second if low.busy.per_second else math.inf


def verdict(results: Sequence[Result], rate: float) -> list[tuple[bool, str]]:
    """The Done-means criteria, judged on the run with the most subscribers."""
    top = max(results, key=lambda r: r.subscribers)
    low = min(results, key=lambda r: r.subscribers)
    d = top.deliveries
    n = f"{top.subscribers:,} subscribers"
    ratio = statement_ratio(results)
    checks = [
        (
            top.subscribers >= DONE_SUBSCRIBERS and top.opened == top.subscribers,
            f"{top.opened:,} of {top.subscribers:,} streams open at once "
            f"(Done means: {DONE_SUBSCRIBERS:,})",
        ),
        (rate >= DONE_RATE, f"writer at {rate:g} changes/s (Done means: {DONE_RATE:g})"),
        (
            top.p(0.99) <= MAX_P99_MS,
            f"p99 delivery {top.p(0.99):.0f} ms ≤ {MAX_P99_MS:.0f} ms at {n}",
        ),
        (d.missed == 0 and d.expected > 0, f"missed {d.missed} of {d.expected:,} at {n}"),
        (d.duplicated == 0, f"duplicated {d.duplicated} at {n}"),
        (d.foreign == 0, f"delivered to a subscriber who should not get it: {d.foreign} at {n}"),
        (
            len(results) > 1 and abs(ratio - 1) <= MAX_STATEMENT_DRIFT,
            f"statements/s at {top.subscribers:,} vs {low.subscribers:,} subscribers: "
            f"{top.busy.per_second:.1f} / {low.busy.per_second:.1f} = {ratio:.3f} "
            f"(within ±{MAX_STATEMENT_DRIFT:.0%})",
        ),
        (
            top.kb_per_subscriber <= MAX_KB_PER_SUBSCRIBER,
            f"gateway memory per idle subscriber {top.kb_per_subscriber:.1f} kB ≤ "
            f"{MAX_KB_PER_SUBSCRIBER:.0f} kB at {n}",
        ),
    ]
    for r in results:
        if r is not top:
            rd = r.deliveries
            checks.append(
                (
                    rd.missed == 0 and rd.duplicated == 0 and rd.foreign == 0,
                    f"at {r.subscribers:,} subscribers: missed {rd.missed}, duplicated "
                    f"{rd.duplicated}, foreign {rd.foreign}, p99 {r.p(0.99):.0f} ms",
                )
            )
    return checks

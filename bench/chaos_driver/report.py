"""The chaos table: one row per (gateway, phase), then what the expectation says."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from bench.chaos_driver.phases import PhaseResult

HEADER = (
    f"{'gateway':<10} {'phase':<8} {'outage':>7} {'requests':>8} {'good':>7} {'wrong':>5} "
    f"{'recovery':>8} {'max lat.':>8} {'audit':>11} {'log W/E/TB':>10}  "
    "responses by status and code"
)
RECOVERY_LIMIT_S = 1.0
ALLOWED = ("200", "503 SERVICE_UNAVAILABLE")


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}s"


def _responses(result: PhaseResult) -> str:
    counts = result.by_label()
    good = sum(outcome.good for outcome in result.load.outcomes)
    parts = [f"{label}: {count}" for label, count in sorted(counts.items())]
    if result.wrong:
        parts.append(f"(of the 200s, {result.wrong} wrong; {good} right)")
    return ", ".join(parts) or "-"


def row(result: PhaseResult) -> str:
    good = sum(outcome.good for outcome in result.load.outcomes)
    outage = _seconds(result.outage.seconds if result.outage else None)
    log = f"{result.log.warnings}/{result.log.errors}/{result.log.tracebacks}"
    audit = "-" if result.audit is None else f"{result.audit.rows}/{result.audit.answers}"
    if result.audit is not None and result.audit.duplicates:
        audit += f" ({result.audit.duplicates} dup)"
    return (
        f"{result.gateway:<10} {result.name:<8} {outage:>7} {result.requests:>8} {good:>7} "
        f"{result.wrong:>5} {_seconds(result.recovery):>8} {_seconds(result.max_latency):>8} "
        f"{audit:>11} {log:>10}  {_responses(result)}"
    )


def render(results: Sequence[PhaseResult]) -> str:
    lines = [HEADER, "-" * len(HEADER)]
    lines += [row(result) for result in results]
    lines += ["", *verdict(results), "", *log_kinds(results)]
    return "\n".join(lines)


def log_kinds(results: Sequence[PhaseResult], top: int = 8) -> list[str]:
    """The gateway's most frequent warning and error lines over the whole run."""
    kinds: Counter[str] = Counter()
    for result in results:
        kinds.update(result.log.kinds)
    if not kinds:
        return ["the gateway logged no warnings or errors"]
    lines = ["the gateway's most frequent warning/error lines (count, line with details elided):"]
    lines += [f"{count:>7}  {kind}" for count, kind in _most_common(kinds, top)]
    return lines


def _most_common(kinds: Counter[str], top: int) -> list[tuple[int, str]]:
    return [(count, kind) for kind, count in kinds.most_common(top)]


def verdict(results: Sequence[PhaseResult]) -> list[str]:
    """Each expectation of issue 9, and whether this run met it."""
    others = sum(
        count
        for result in results
        for label, count in result.by_label().items()
        if label not in ALLOWED
    )
    wrong = sum(result.wrong for result in results)
    no_retry_after = sum(result.unavailable_without_retry_after for result in results)
    slow = [
        f"{result.gateway} {result.name}"
        for result in results
        if result.outage is not None
        and (result.recovery is None or result.recovery > RECOVERY_LIMIT_S)
    ]
    tracebacks = sum(result.log.tracebacks for result in results)
    audits = [result.audit for result in results if result.audit is not None]
    missing = sum(audit.answers - audit.rows for audit in audits)
    duplicates = sum(audit.duplicates for audit in audits)
    checks = [
        (others == 0, f"responses other than 200 or 503 SERVICE_UNAVAILABLE: {others}"),
        (wrong == 0, f"wrong answers: {wrong}"),
        (no_retry_after == 0, f"503 without Retry-After: {no_retry_after}"),
        (not slow, f"recovery over {RECOVERY_LIMIT_S:.0f} s: {', '.join(slow) or 'none'}"),
        (tracebacks == 0, f"tracebacks in the gateway's log: {tracebacks}"),
        (
            all(audit.exact for audit in audits),
            f"answers with students' data minus access-audit rows: {missing}; "
            f"audit rows written twice: {duplicates}",
        ),
    ]
    return [f"{'ok  ' if passed else 'FAIL'} {text}" for passed, text in checks]


def legend() -> str:
    return (
        "outage: from the stop command to PostgreSQL accepting connections again; good: 200\n"
        "with the recorded answer; wrong: a 200 whose data differs from it; recovery: from\n"
        "the database being back to the first good answer; audit: rows in\n"
        "gateway.access_audit for the phase's requests / answers with students' data (equal\n"
        "when the audit is exact; 'dup': rows that repeat another); log W/E/TB: warnings,\n"
        "errors and tracebacks the gateway logged during the phase; 'no response': the\n"
        "client got no HTTP response (the error's name follows)."
    )

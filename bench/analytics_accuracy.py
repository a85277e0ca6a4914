"""Regional analytics' accuracy: every published figure against the journal's truth.

    .venv/bin/python -m bench.analytics_accuracy [--scale 10] [--seed 1] [--min-group-size 10]

Prepares the database like bench/analytics.py (`bench/.data-analytics/`, seeded with the
project's generator, reused when the seed matches), refreshes the analytics (prints the
time), reads the truth from the `school` tables over the owner connection (all journal
records per base cell; student-lessons: Σ over lessons held, not cancelled, up to the as-of
date, of the class's enrolment) and asks the real application over HTTP, as the demo
regional analyst, for every grouping the API offers. Prints (a) the share of each code's
records reaching published figures (region, municipality, old rule), (b) per grouping the
max and median relative error |published - truth| / truth over the published groups,
(c) issue 12's Done-means checks, (d) the rate checks on records / studentLessons,
(e) total = groups + spanning. Also written to bench/.results/analytics-accuracy-<UTC>.txt;
progress on stderr; exit status 0 even when a check fails (it is a report).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import socket
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Final

import httpx
import uvicorn

from bench.analytics import DATA_DIR, analyst_token, prepare
from bench.analytics_truth import (
    DIMENSIONS,
    INDEXES,
    AttendanceTruth,
    Key,
    MarkSums,
    Truth,
    attendance_truth,
    code_totals,
    indexes_of,
    mark_truth,
    read_truth,
)
from bench.driver.database import jwt_secret
from gateway.app import create_app
from gateway.core import embedded
from gateway.core.settings import Settings
from gateway.migrations.location import embedded_login
from resolvers.analytics.service import refresh_cells

RESULTS_DIR: Final = Path(__file__).resolve().parent / ".results"
Group = dict[str, Any]  # a group of an answer (or its total / spanning)
CODES: Final = ("Б", "Н", "У", "П", "О", "ОП")  # the order
Grouping = tuple[str, tuple[str, ...]]  # (marks | attendance, dimensions)
Answers = dict[Grouping, Group]  # grouping → its `marks` / `attendance` answer
GROUPINGS: Final[tuple[Grouping, ...]] = (
    ("marks", ()),
    *(("marks", (name,)) for name in (*DIMENSIONS, "WORK_TYPE")),
    ("marks", ("MUNICIPALITY", "SUBJECT")),
    ("attendance", ()),
    *(("attendance", (name,)) for name in (*DIMENSIONS, "CODE")),
    ("attendance", ("MUNICIPALITY", "CODE")),
    ("attendance", ("SCHOOL", "CODE")),
    ("attendance", ("GRADE", "CODE")),
)
CODE_CHECK_MIN: Final = 1000  # codes with at least this many records are checked
TOLERANCE: Final = 0.05  # attendance
MARK_TOLERANCE: Final = 0.01
MUNICIPALITY_SHARE: Final = 0.90


KEY_FIELDS: Final = (
    "key { school { id } municipality { id } grade subject { id } "
    "period { yearTitle scheme number } workType { id } code }"
)
FIGURES: Final = {
    "marks": "suppressed markCount countedMarkCount weightSum weightedAverage",
    "attendance": "suppressed lessons studentLessons records rate byCode { code records rate }",
}


def say(message: str) -> None:
    """A progress line on stderr."""
    print(f"[{datetime.now(UTC):%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def app_settings(url: str, today: date, k: int) -> Settings:
    """bench/analytics.py's settings (copied: they have no k), without the rate limit's
    and the CPU share's brakes and without a background refresh."""
    env = {
        "DATABASE_URL": url,
        "SCHOOL_GATEWAY_DEV": "1",  # for the data set's today
        "SCHOOL_GATEWAY_TODAY": today.isoformat(),
        "SCHOOL_GATEWAY_JWT_SECRET": jwt_secret(),
        "SCHOOL_GATEWAY_LOG_LEVEL": "WARNING",
        "SCHOOL_GATEWAY_MIN_GROUP_SIZE": str(k),
    }
    brakes = {"RATE_LIMIT": 100_000, "CPU_SHARE": 100, "REFRESH_SECONDS": 0}
    brakes["STATEMENT_TIMEOUT_MS"] = 120_000
    env.update({f"SCHOOL_GATEWAY_ANALYTICS_{n}": str(v) for n, v in brakes.items()})
    return Settings.from_env(env)


@contextlib.asynccontextmanager
async def served(settings: Settings, token: str) -> AsyncIterator[httpx.AsyncClient]:
    """The real application under uvicorn on a free 127.0.0.1 port, and a client of it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    app = create_app(settings)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False)
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    try:
        for _ in range(600):
            if server.started or serving.done():
                break
            await asyncio.sleep(0.05)
        headers = {"Authorization": f"Bearer {token}"}
        base_url = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=300) as client:
            yield client
    finally:
        server.should_exit = True
        await serving


def query_of(grouping: Grouping) -> str:
    kind, dimensions = grouping
    figures = FIGURES[kind]
    return (
        f"{{ regionalAnalytics {{ minGroupSize {kind}(groupBy: [{', '.join(dimensions)}]) "
        f"{{ total {{ {KEY_FIELDS} {figures} }} groups {{ {KEY_FIELDS} {figures} }} "
        f"spanning {{ {figures} }} }} }} }}"
    )


async def ask_all(client: httpx.AsyncClient) -> tuple[int, Answers]:
    """k as the API states it, and the answer to every grouping."""
    answers: Answers = {}
    k = 0
    for grouping in GROUPINGS:
        say(f"asking {grouping[0]} by {' x '.join(grouping[1]) or 'nothing (total)'}")
        response = await client.post("/graphql", json={"query": query_of(grouping)})
        body = response.json()
        if response.status_code != 200 or body.get("errors"):
            raise RuntimeError(f"analytics query failed: {body}")
        k = body["data"]["regionalAnalytics"]["minGroupSize"]
        answers[grouping] = body["data"]["regionalAnalytics"][grouping[0]]
    return k, answers


def answer_key(group: Group, indexes: Sequence[int]) -> Key:
    """A group's key in the order of the base cell key, restricted to `indexes`."""
    key = group["key"]
    values: dict[int, Any] = {2: key["grade"], 7: key["code"]}
    for index, name in ((0, "school"), (1, "municipality"), (3, "subject"), (7, "workType")):
        if key[name] is not None:
            values[index] = int(key[name]["id"])
        values.setdefault(index, None)
    period = key["period"] or {"yearTitle": None, "scheme": None, "number": None}
    scheme = period["scheme"] and period["scheme"].lower()
    values.update({4: period["yearTitle"], 5: scheme, 6: period["number"]})
    return tuple(values[i] for i in indexes)


def keyed(answer: Group, dimensions: Sequence[str]) -> dict[Key, Group]:
    """The answer's groups by key (the code last when grouped by CODE)."""
    indexes = indexes_of(d for d in dimensions if d != "CODE")
    code = "CODE" in dimensions
    return {
        answer_key(g, indexes) + ((g["key"]["code"],) if code else ()): g
        for g in (answer["groups"] if dimensions else [answer["total"]])
    }


def by_code(group: Group | None) -> dict[str, Group]:
    """A published attendance group's figures per code."""
    if group is None or group["suppressed"]:
        return {}
    return {row["code"]: row for row in group["byCode"] or []}


# --- comparison ------------------------------------------------------------------------


def relative(published: float, truth: float) -> float:
    if truth == 0:
        return 0.0 if published == 0 else math.inf
    return abs(published - truth) / truth


def rate_of(group: Group, row: Group, *, derived: bool) -> float | None:
    """`row`'s published rate (4 decimals), or with `derived` its exact records divided
    by the group's exact studentLessons (what an analyst can compute from them)."""
    if not derived:
        rate: float | None = row["rate"]
        return rate
    return row["records"] / group["studentLessons"] if group["studentLessons"] else None


@dataclass(slots=True)
class Errors:
    """One line of table (b): relative errors over the published groups."""

    name: str
    groups: int = 0
    suppressed: int = 0
    missing: int = 0  # groups with journal records the answer does not list
    counts: list[float] = field(default_factory=list)
    rates: list[float] = field(default_factory=list)  # marks: the weighted averages
    derived: list[float] = field(default_factory=list)

    def add(self, group: Group, row: Group, records: int, rate: float | None) -> None:
        """An attendance figure (`row`: the group or one of its byCode) against the truth."""
        self.counts.append(relative(row["records"], records))
        for errors, derived in ((self.rates, False), (self.derived, True)):
            published = rate_of(group, row, derived=derived)
            if published is not None and rate:
                errors.append(relative(published, rate))


def compare_marks(grouping: Grouping, answer: Group, truth: Truth) -> list[Errors]:
    expected = mark_truth(truth, indexes_of(grouping[1]))
    groups = keyed(answer, grouping[1])
    errors = Errors(_name(grouping), len(groups), missing=len(set(expected) - set(groups)))
    for key, group in groups.items():
        if group["suppressed"]:
            errors.suppressed += 1
            continue
        sums = expected.get(key, MarkSums())
        errors.counts.append(relative(group["markCount"], sums.marks))
        average = sums.average()
        if group["weightedAverage"] is not None and average is not None:
            errors.rates.append(relative(group["weightedAverage"], average))
    return [errors]


def compare_attendance(grouping: Grouping, answer: Group, truth: Truth) -> list[Errors]:
    """Table (b)'s line of the grouping, and (without CODE) its byCode line: a code
    missing from a published group's byCode counts as 0 records."""
    with_code = "CODE" in grouping[1]
    expected = attendance_truth(truth, indexes_of(d for d in grouping[1] if d != "CODE"))
    groups = keyed(answer, grouping[1])
    wanted = {k + ((c,) if with_code else ()) for k, of in expected.records.items() for c in of}
    errors = Errors(_name(grouping), len(groups), missing=len(wanted - set(groups)))
    codes = Errors(_name(grouping) + " byCode")
    for full_key, group in groups.items():
        key, code = (full_key[:-1], full_key[-1]) if with_code else (full_key, None)
        if group["suppressed"]:
            errors.suppressed += 1
            continue
        errors.add(group, group, expected.code_records(key, code), expected.rate(key, code))
        published = by_code(group)
        for each in sorted(set(published) | set(expected.records.get(key, {}))):
            row = published.get(each, {"records": 0, "rate": None})
            codes.groups += 1
            codes.add(group, row, expected.code_records(key, each), expected.rate(key, each))
    return [errors] if with_code else [errors, codes]


def _name(grouping: Grouping) -> str:
    return f"{grouping[0]} {' x '.join(grouping[1]) or 'total'}"


# --- tables ----------------------------------------------------------------------------


def _spread(values: list[float]) -> str:
    if not values:
        return f"{'-':>9} {'-':>8}"
    return f"{max(values) * 100:8.2f}% {statistics.median(values) * 100:7.2f}%"


def municipality_code_records(answers: Answers) -> dict[str, int]:
    """Records per code summed over the municipality x code groups."""
    sums: dict[str, int] = defaultdict(int)
    for group in answers[("attendance", ("MUNICIPALITY", "CODE"))]["groups"]:
        if not group["suppressed"]:
            sums[group["key"]["code"]] += group["records"]
    return sums


def share_table(truth: Truth, answers: Answers, k: int) -> list[str]:
    journal = code_totals(truth)
    region = by_code(answers[("attendance", ())]["total"])
    municipal = municipality_code_records(answers)
    old: dict[str, int] = defaultdict(int)
    for key, (records, students) in truth.attendance.items():
        if students >= k:
            old[key[7]] += records
    lines = [
        "(a) attendance records reaching published figures, per code (old rule: base cells "
        f"of >= {k} distinct students only)",
        f"{'code':<5} {'journal':>9} {'region':>9} {'share':>7} {'municip.':>9} {'share':>7}"
        f" {'old rule':>9} {'share':>7}",
    ]
    for code in sorted(journal, key=lambda c: CODES.index(c) if c in CODES else len(CODES)):
        total = journal[code]
        figures = [region.get(code, {"records": 0})["records"], municipal[code], old[code]]
        lines.append(
            f"{code:<5} {total:>9,} "
            + " ".join(f"{count:>9,} {count / total * 100:5.1f} %" for count in figures)
        )
    return lines


def error_table(rows: list[Errors], kind: str) -> list[str]:
    """Table (b) of `kind`: max and median relative errors per grouping."""
    figures = ["counts", "weighted average"] if kind == "marks" else ["counts", "rate"]
    figures += [] if kind == "marks" else ["records / SL"]
    lines = [
        f"(b) {kind}: relative error |published - truth| / truth over the published groups "
        "(max, median)",
        f"{'grouping':<34} {'groups':>6} {'suppr':>5} {'miss':>4}  "
        + "  ".join(f"{name:^18}" for name in figures),
    ]
    for row in rows:
        if row.name.startswith(kind):
            spreads = [row.counts, row.rates] + ([row.derived] if kind != "marks" else [])
            hidden = "    -    -" if row.name.endswith("byCode") else ""
            hidden = hidden or f"{row.suppressed:>5} {row.missing:>4}"
            lines.append(
                f"{row.name[len(kind) + 1 :]:<34} {row.groups:>6} {hidden}  "
                + "  ".join(_spread(values) for values in spreads)
            )
    return lines


# --- the checks ------------------------------------------------------------------------


@dataclass(slots=True)
class Check:
    name: str
    items: int = 0
    failures: list[tuple[float, str]] = field(default_factory=list)

    def within(self, what: str, published: float | None, truth: float, tolerance: float) -> None:
        """One item: `published` within `tolerance` of `truth` (None: not published)."""
        self.items += 1
        error = math.inf if published is None else relative(published, truth)
        if error > tolerance:
            shown = "not published" if published is None else f"{published:.6g}"
            self.failures.append((error, f"{what}: {shown} vs {truth:.6g} ({error:.1%})"))

    def lines(self) -> list[str]:
        if not self.failures:
            return [f"PASS  {self.name} ({self.items} figures)"]
        worst = sorted(self.failures, reverse=True)
        lines = [f"FAIL  {self.name}: {len(worst)} of {self.items} figures off"]
        lines += [f"        {text}" for _error, text in worst[:8]]
        if len(worst) > 8:
            lines.append(f"        ... and {len(worst) - 8} more")
        return lines


def attendance_checks(truth: Truth, answers: Answers, *, derived: bool) -> list[Check]:
    """Records and rates by code (codes of >= 1,000 records) and of all codes, at region
    and municipality level, within 5 %; with `derived`, rates as records / studentLessons."""
    journal = code_totals(truth)
    checked = [code for code in CODES if journal.get(code, 0) >= CODE_CHECK_MIN]
    codes: list[str | None] = [*checked, None]
    how = "records / studentLessons" if derived else "as published"
    region = Check(f"region: records and rates ({how}) within 5 %, {', '.join(checked)}, all")
    municipal = Check(f"municipality: the same per municipality (rates {how})")
    per_code = keyed(answers[("attendance", ("MUNICIPALITY", "CODE"))], ("MUNICIPALITY", "CODE"))
    overall = keyed(answers[("attendance", ("MUNICIPALITY",))], ("MUNICIPALITY",))
    Item = tuple[Check, str, Group | None, Group | None, AttendanceTruth, Key, str | None]
    items: list[Item] = []
    total = answers[("attendance", ())]["total"]
    expected = attendance_truth(truth, ())
    for code in codes:
        row = by_code(total).get(code) if code else total
        items.append((region, "region", total, row, expected, (), code))
    expected = attendance_truth(truth, INDEXES["MUNICIPALITY"])
    for key in sorted(expected.records):
        for code in codes:
            group = per_code.get((*key, code)) if code else overall.get(key)
            if expected.code_records(key, code):
                what = f"municipality {key[0]}"
                items.append((municipal, what, group, group, expected, key, code))
    for check, what, group, row, truths, key, code in items:
        records = rate = None
        if group is not None and row is not None and not group["suppressed"]:
            records, rate = row["records"], rate_of(group, row, derived=derived)
        what = f"{what} {code or 'all codes'}"
        check.within(f"{what} records", records, truths.code_records(key, code), TOLERANCE)
        check.within(f"{what} rate", rate, truths.rate(key, code) or 0, TOLERANCE)
    return [region, municipal]


def mark_check(truth: Truth, answers: Answers) -> Check:
    dimensions = ("MUNICIPALITY", "SUBJECT")
    check = Check("municipality x subject: mark counts and weighted averages within 1 %")
    groups = keyed(answers[("marks", dimensions)], dimensions)
    for key, sums in sorted(mark_truth(truth, indexes_of(dimensions)).items()):
        group = groups.get(key, {"suppressed": True})
        shown = {} if group["suppressed"] else group
        what = f"municipality {key[0]} subject {key[1]}"
        check.within(f"{what} marks", shown.get("markCount"), sums.marks, MARK_TOLERANCE)
        average = sums.average()
        if average is not None:
            published = shown.get("weightedAverage")
            check.within(f"{what} average", published, average, MARK_TOLERANCE)
    return check


def share_check(truth: Truth, answers: Answers) -> Check:
    check = Check("at least 90 % of each code's records at municipality level")
    municipal = municipality_code_records(answers)
    for code, records in sorted(code_totals(truth).items()):
        check.items += 1
        share = municipal.get(code, 0) / records
        if share < MUNICIPALITY_SHARE:
            check.failures.append((1 - share, f"{code}: {share:.1%} of {records:,}"))
    return check


def consistency_check(answers: Answers) -> Check:
    """total = sum of the groups + spanning (issue 12's spec), per grouping and code."""
    check = Check("total = sum(groups) + spanning (mark counts; records per code)")
    for (kind, dimensions), answer in ((g, a) for g, a in answers.items() if g[1]):
        parts = [g for g in answer["groups"] if not g["suppressed"]]
        parts += [answer["spanning"]] if answer["spanning"] is not None else []
        name = f"{kind} {' x '.join(dimensions)}"
        if kind == "marks":
            summed = sum(g["markCount"] for g in parts)
            check.within(name, summed, answer["total"]["markCount"] or 0, 0.0)
            continue
        sums: dict[str, int] = defaultdict(int)
        for group in parts:
            for row in group["byCode"] or []:
                sums[row["code"]] += row["records"]
        for code, row in by_code(answer["total"]).items():
            check.within(f"{name} {code}", sums.get(code, 0), row["records"], 0.0)
    return check


# --- main ------------------------------------------------------------------------------


async def collect(args: argparse.Namespace) -> tuple[list[str], Truth, int, Answers]:
    """Prepare, refresh, read the truth and ask every grouping."""
    server = embedded.start(args.data_dir, ephemeral=True)
    try:
        say(f"preparing the data (scale {args.scale}, seed {args.seed}); seeding takes a while")
        with contextlib.redirect_stdout(sys.stderr):
            await prepare(server.url, scale=args.scale, seed_value=args.seed, today=args.today)
        login_url = await embedded_login(server, "school_gateway")
        settings = app_settings(login_url, args.today, args.min_group_size)
        say("refreshing the analytics")
        started = time.perf_counter()
        fresh = await refresh_cells(login_url, settings)
        wall = time.perf_counter() - started
        say(f"reading the truth from the school tables (as of {fresh.as_of})")
        truth = await read_truth(server.url, fresh.as_of)
        token = await analyst_token(login_url, settings)
        async with served(settings, token) as client:
            k, answers = await ask_all(client)
    finally:
        if server.started_here:
            server.stop()
    header = [
        f"analytics accuracy: scale {args.scale}, seed {args.seed}, today {args.today}, "
        f"k = {k} (asked {args.min_group_size}), as of {fresh.as_of}",
        f"refresh: {fresh.duration_ms} ms (as recorded), {wall:.1f} s wall",
        f"journal: {sum(s.marks for s in truth.marks.values()):,} marks, "
        f"{sum(code_totals(truth).values()):,} attendance records, "
        f"{sum(truth.student_lessons.values()):,} student-lessons",
    ]
    return header, truth, k, answers


def report(header: list[str], truth: Truth, k: int, answers: Answers) -> list[str]:
    rows: list[Errors] = []
    for grouping, answer in answers.items():
        compare = compare_marks if grouping[0] == "marks" else compare_attendance
        rows += compare(grouping, answer, truth)
    checks = [
        *attendance_checks(truth, answers, derived=False),
        mark_check(truth, answers),
        share_check(truth, answers),
    ]
    lines = [*header, "", *share_table(truth, answers, k), ""]
    lines += [*error_table(rows, "marks"), "", *error_table(rows, "attendance"), ""]
    lines += ["(c) issue 12's Done-means checks (tolerance: relative error)"]
    for check in checks:
        lines += check.lines()
    failed = sum(1 for check in checks if check.failures)
    lines += [f"{len(checks) - failed} of {len(checks)} checks pass", ""]
    lines += ["(d) the rate checks again, rates computed from the exact records / studentLessons"]
    for check in attendance_checks(truth, answers, derived=True):
        lines += check.lines()
    return [*lines, "", "(e) consistency", *consistency_check(answers).lines()]


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="bench.analytics_accuracy", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--scale", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--min-group-size", type=int, default=10, help="k (default 10)")
    parser.add_argument("--today", type=date.fromisoformat, default=date(2026, 11, 27))
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    args = parser.parse_args()
    text = "\n".join(report(*asyncio.run(collect(args)))) + "\n"
    print(text, end="")
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"analytics-accuracy-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.txt"
    path.write_text(text, encoding="utf-8")
    say(f"written to {path}")


if __name__ == "__main__":
    main()

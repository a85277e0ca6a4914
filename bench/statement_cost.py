"""PostgreSQL's cost per statement of the bench's operations, one statement at a time.

    .venv/bin/python -m bench.statement_cost [--runs 2000] [--scale 10] [--seed 1]
                                             [--today 2026-11-27] [--force]
    bench/statement-cost [same options]

On the database `bench/run` measures (`bench_s<scale>` in the embedded PostgreSQL under
bench/.data, prepared by bench/driver/database.py `prepare_database`: seeded unless its
seed matches, this tree's schema applied) and with the demo accounts it uses
(`load_fixture`: a new session per account, the week, the quarter, the school year), each
statement of the three operations is prepared on ONE connection of the gateway's own
pool (its login role and session settings) with `plan_cache_mode = force_generic_plan`,
executed 50 times to warm up, then `--runs` times. Printed per statement:

- rows returned by one execution;
- backend CPU per execution: the backend's utime + stime from /proc/<pid>/stat (its pid
  from pg_backend_pid()) over the runs, divided by the runs. The clock ticks at
  1/SC_CLK_TCK s (10 ms): with 2000 runs the resolution is 5 µs per execution;
- wall time per execution, as this client sees it (the round trip over 127.0.0.1 and
  asyncpg's decoding included);
- the plans PostgreSQL made for the prepared statement (pg_prepared_statements: generic /
  custom), to show that the generic plan was used;
- `other %`: the machine's CPU used by neither this process nor the backend during the
  runs (another benchmark on the machine: do not trust that row).

Statements: the viewer's (auth.store.accounts `_LOAD_SESSION_VIEWER`, with the account's
real session), the change versions, the student with periods and the diary statements of
resolvers.diary.sql, looked up by name (`STATEMENTS`; one the module does not have is
reported as "not present", one that fails with its error), and `SELECT 1`, the fixed
cost of a statement. The students statement is measured with a current reference copy
(no reference data back) and, in its own row, with a stale one, when it also builds and
sends the whole copy (resolvers/diary/reference.py), a cost paid once per process and
journal change.
The access audit's INSERT is not measured.

It refuses to run while other clients are connected to the database (a `bench/run`:
preparing applies the schema again under its statements, and its load would count here);
`--force` runs anyway.

Limits: one connection, no concurrency (under `bench/run` several backends wake per
request and share two cores with the targets and wrk: the figures there are higher);
generic plans only; warm caches; the same arguments on every execution.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Final

import asyncpg
import psutil

from auth.tokens import verify_token
from bench.driver import database as db
from bench.driver.config import DEFAULT_TODAY
from bench.driver.install import BENCH_DIR
from gateway.core.db import create_pool
from gateway.core.embedded import EmbeddedServer

DEFAULT_RUNS: Final = 2000
WARMUP_RUNS: Final = 50
CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK")
DIARY: Final = "resolvers.diary.sql"
ACCOUNTS: Final = "auth.store.accounts"

Args = tuple[object, ...]


@dataclass(frozen=True, slots=True)
class Inputs:
    """What the arguments are made of: the fixture's values (bench/driver/database.py
    `load_fixture`) and each demo account's (account id, session id)."""

    values: dict[str, object]
    sessions: dict[str, tuple[str, str]]
    reference_version: int  # the reference copy's version (steady state: the database's)

    def day(self, key: str) -> date:
        return date.fromisoformat(str(self.values[key]))

    def ranges(self, ids: Sequence[int], start: str, end: str) -> Args:
        """The diary's (student ids, window starts, window ends) arrays."""
        return list(ids), [self.day(start)] * len(ids), [self.day(end)] * len(ids)

    @property
    def parent_ids(self) -> list[int]:
        ids = self.values["parent_student_ids"]
        assert isinstance(ids, list)
        return [int(i) for i in ids]

    def student(self, key: str) -> list[int]:
        return [int(str(self.values[key]))]


@dataclass(frozen=True, slots=True)
class Sql:
    """Where a statement's text comes from: the string constant `module`.`name`;
    `module` None: `name` is the text itself."""

    module: str | None
    name: str

    def __str__(self) -> str:
        return self.name if self.module is None else f"{self.module}.{self.name}"

    def text(self) -> str | None:
        """The SQL text; None when the module has no such constant."""
        if self.module is None:
            return self.name
        value = getattr(importlib.import_module(self.module), self.name, None)
        return value if isinstance(value, str) else None


@dataclass(frozen=True, slots=True)
class Statement:
    """One statement to measure: the operation it belongs to, its SQL and its arguments;
    `per_request` False: not sent by every request (left out of the operation's sum)."""

    operation: str
    name: str
    sql: Sql
    arguments: Callable[[Inputs], Args]
    per_request: bool = True


def _viewer(account: str) -> Callable[[Inputs], Args]:
    return lambda inputs: inputs.sessions[account]


def _parent(inputs: Inputs) -> Args:
    return (inputs.parent_ids,)


def _parent_students(inputs: Inputs) -> Args:
    """The students statement with a current reference copy (no reference data back)."""
    return (inputs.parent_ids, inputs.reference_version)


def _parent_students_stale(inputs: Inputs) -> Args:
    """The students statement with a stale copy: it also builds and sends the whole
    reference data (once per process and journal change)."""
    return (inputs.parent_ids, inputs.reference_version - 1)


def _parent_week(inputs: Inputs) -> Args:
    return inputs.ranges(inputs.parent_ids, "week_from", "week_to")


def _quarter_student(inputs: Inputs) -> Args:
    return (inputs.student("quarter_student_pk"),)


def _quarter_marks(inputs: Inputs) -> Args:
    return inputs.ranges(inputs.student("quarter_student_pk"), "quarter_from", "quarter_to")


def _year_student(inputs: Inputs) -> Args:
    return (inputs.student("year_student_pk"),)


def _students_of(key: str) -> Callable[[Inputs], Args]:
    return lambda inputs: (inputs.student(key), inputs.reference_version)


def _year_page(inputs: Inputs) -> Args:
    """student-year's `marks(from, to, first: 500)`: the list_mark_pages arrays."""
    ids = inputs.student("year_student_pk")
    return (*inputs.ranges(ids, "year_from", "year_to"), [None], [500])


# An experiment, not the gateway's SQL: parent-week's lessons with their subject, teacher,
# replacement, topic, homework, marks and attendance built as JSON by PostgreSQL in one
# statement, PostGraphile-style, over the same views (docs/performance.md, "Where a
# request's time goes now"): what shaping the response in the database would cost it.
_PARENT_WEEK_AS_JSON = """
SELECT k.ord, (
  SELECT coalesce(json_agg(json_build_object(
      'id', l.id::text, 'number', l.number,
      'subject', json_build_object('name', sub.name),
      'teacher', json_build_object('name', t.name),
      'room', l.room, 'status', upper(l.status),
      'replacement', CASE WHEN l.status = 'replaced' THEN json_build_object(
          'subject', json_build_object('name', coalesce(rs.name, sub.name)),
          'teacher', json_build_object('name', coalesce(rt.name, t.name))) END,
      'topic', l.topic,
      'homework', (SELECT coalesce(json_agg(json_build_object(
                       'text', h.text, 'dueOn', h.due_on, 'attachments', h.attachments)
                       ORDER BY h.due_on, h.id), '[]'::json)
                   FROM diary_api.homework_facts h
                   WHERE h.lesson_id = l.id AND h.class_id = s.class_id),
      'marks', (SELECT coalesce(json_agg(json_build_object(
                    'id', m.id::text, 'value', m.value, 'weight', m.weight,
                    'workType', json_build_object('name', w.name)) ORDER BY m.id), '[]'::json)
                FROM diary_api.mark_facts m JOIN diary_api.work_types w ON w.id = m.work_type_id
                WHERE m.lesson_id = l.id AND m.student_id = k.student_id),
      'attendance', (SELECT json_build_object('code', a.code, 'minutesLate', a.minutes_late)
                     FROM diary_api.attendance_facts a
                     WHERE a.lesson_id = l.id AND a.student_id = k.student_id)
    ) ORDER BY l.date, l.number, l.id), '[]'::json)
  FROM (SELECT * FROM diary_api.lesson_facts ll
        WHERE ll.class_id = s.class_id AND ll.date BETWEEN k.date_from AND k.date_to
        OFFSET 0) l
  JOIN diary_api.subjects sub ON sub.id = l.subject_id
  JOIN diary_api.teachers t ON t.id = l.teacher_id
  LEFT JOIN diary_api.subjects rs ON rs.id = l.replacement_subject_id
  LEFT JOIN diary_api.teachers rt ON rt.id = l.replacement_teacher_id
)::text AS lessons
FROM unnest((SELECT $1::int[]), (SELECT $2::date[]), (SELECT $3::date[]))
    WITH ORDINALITY AS k(student_id, date_from, date_to, ord)
JOIN diary_api.students s ON s.id = k.student_id
"""

PW, SQ, SY = "parent-week", "student-quarter", "student-year"
_VIEWER = Sql(ACCOUNTS, "_LOAD_SESSION_VIEWER")  # the session, the account and its scope


def _diary(name: str) -> Sql:
    return Sql(DIARY, name)


# The diary's statements by their names in resolvers/diary/sql.py (a name the tree does
# not have prints "not present"). The students statement gets the reference data's version as
# its reference copy's: the steady state, in which it sends no reference data back.
STATEMENTS: Final[tuple[Statement, ...]] = (
    Statement("-", "SELECT 1", Sql(None, "SELECT 1"), lambda _inputs: ()),
    Statement(PW, "viewer (parent)", _VIEWER, _viewer(db.PARENT_ACCOUNT)),
    Statement(PW, "versions", _diary("_VERSIONS_SQL"), _parent),
    Statement(PW, "students", _diary("_STUDENTS_SQL"), _parent_students),
    Statement(PW, "students (stale)", _diary("_STUDENTS_SQL"), _parent_students_stale, False),
    Statement(PW, "lessons", _diary("_LESSONS_SQL"), _parent_week),
    Statement(PW, "marks", _diary("_MARKS_SQL"), _parent_week),
    Statement(PW, "attendance", _diary("_ATTENDANCE_SQL"), _parent_week),
    Statement(PW, "homework", _diary("_HOMEWORK_SQL"), _parent_week),
    Statement(PW, "as JSON (experiment)", Sql(None, _PARENT_WEEK_AS_JSON), _parent_week, False),
    Statement(SQ, "viewer (student)", _VIEWER, _viewer(db.QUARTER_ACCOUNT)),
    Statement(SQ, "versions", _diary("_VERSIONS_SQL"), _quarter_student),
    Statement(SQ, "students", _diary("_STUDENTS_SQL"), _students_of("quarter_student_pk")),
    Statement(SQ, "marks (quarter)", _diary("_MARKS_SQL"), _quarter_marks),
    Statement(SY, "viewer (student)", _VIEWER, _viewer(db.YEAR_ACCOUNT)),
    Statement(SY, "versions", _diary("_VERSIONS_SQL"), _year_student),
    Statement(SY, "students", _diary("_STUDENTS_SQL"), _students_of("year_student_pk")),
    Statement(SY, "mark page (500)", _diary("_MARK_PAGES_SQL"), _year_page),
)


@dataclass(frozen=True, slots=True)
class Cost:
    """One statement's measured cost per execution."""

    rows: int
    cpu_ms: float
    wall_ms: float
    generic_plans: int
    custom_plans: int
    other_percent: float


def backend_cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc/<pid>/stat (fields 14 and 15)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _machine_busy_seconds() -> float:
    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


_PLANS = "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE name = $1"


async def measure(conn: asyncpg.Connection, sql: str, args: Args, *, runs: int) -> Cost:
    """Prepare `sql`, warm it up, execute it `runs` times; its cost per execution."""
    pid = int(await conn.fetchval("SELECT pg_backend_pid()"))
    prepared = await conn.prepare(sql)
    rows: list[asyncpg.Record] = []
    for _ in range(WARMUP_RUNS):
        rows = await prepared.fetch(*args)
    cpu, machine, own = backend_cpu_seconds(pid), _machine_busy_seconds(), time.process_time()
    started = time.perf_counter()
    for _ in range(runs):
        await prepared.fetch(*args)
    wall = time.perf_counter() - started
    cpu = backend_cpu_seconds(pid) - cpu
    other = _machine_busy_seconds() - machine - cpu - (time.process_time() - own)
    plans = await conn.fetchrow(_PLANS, prepared.get_name())
    return Cost(
        rows=len(rows),
        cpu_ms=1000 * cpu / runs,
        wall_ms=1000 * wall / runs,
        generic_plans=int(plans["generic_plans"]) if plans else -1,
        custom_plans=int(plans["custom_plans"]) if plans else -1,
        other_percent=min(100.0, max(0.0, 100 * other / (wall * (psutil.cpu_count() or 1)))),
    )


_HEADER = (
    f"{'operation':<17}{'statement':<19}{'rows':>6}{'CPU ms/exec':>13}{'wall ms/exec':>14}"
    f"{'plans generic/custom':>22}{'other %':>9}"
)


def _row(statement: Statement, cost: Cost) -> str:
    plans = f"{cost.generic_plans}/{cost.custom_plans}"
    return (
        f"{statement.operation:<17}{statement.name:<19}{cost.rows:>6}{cost.cpu_ms:>13.3f}"
        f"{cost.wall_ms:>14.3f}{plans:>22}{cost.other_percent:>9.0f}"
    )


async def measure_all(conn: asyncpg.Connection, inputs: Inputs, *, runs: int) -> None:
    """Every statement of STATEMENTS in turn, printed as measured; a total per operation
    of the statements measured."""
    print(_HEADER, flush=True)
    totals: dict[str, list[float]] = {}
    for statement in STATEMENTS:
        label = f"{statement.operation:<17}{statement.name:<19}"
        try:
            sql = statement.sql.text()
            if sql is None:
                print(f"{label}  not present ({statement.sql})")
                continue
            cost = await measure(conn, sql, statement.arguments(inputs), runs=runs)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, TypeError, ValueError) as error:
            print(f"{label}  failed ({statement.sql}): {error}")
            continue
        print(_row(statement, cost), flush=True)
        if not statement.per_request:
            continue
        total = totals.setdefault(statement.operation, [0.0, 0.0])
        total[0] += cost.cpu_ms
        total[1] += cost.wall_ms
    print()
    for operation, (cpu_ms, wall_ms) in totals.items():
        if operation != "-":
            print(f"{operation:<17}{'sum per request':<25}{cpu_ms:>13.3f}{wall_ms:>14.3f}")


def sessions_of(database: db.Database, tokens: dict[str, str]) -> dict[str, tuple[str, str]]:
    """(account id, session id) of each demo account, from its bearer token."""
    settings = db.gateway_settings(database.gateway_url)
    result = {}
    for key, token in tokens.items():
        claims = verify_token(settings, token)
        result[key] = (claims.account_id, claims.session_id)
    return result


class BusyError(RuntimeError):
    """Another client is connected to the bench database."""


_OTHER_CLIENTS = """
SELECT count(*) FROM pg_stat_activity
WHERE datname = $1 AND pid <> pg_backend_pid() AND backend_type = 'client backend'
"""


async def check_idle(server: EmbeddedServer, name: str) -> None:
    """Refuse to run while a client (bench/run's targets, a test) uses the database:
    preparing it applies the schema again under that client's statements, and its load
    would be measured too."""
    conn = await asyncpg.connect(db.database_url(server, "postgres"))
    try:
        others = int(await conn.fetchval(_OTHER_CLIENTS, name))
    finally:
        await conn.close()
    if others:
        raise BusyError(
            f"{others} other client connection(s) to {name} (a bench/run?): "
            "run again when it is done, or with --force"
        )


async def prepare(server: EmbeddedServer, args: argparse.Namespace) -> tuple[db.Database, Inputs]:
    """The database as bench/run prepares it, and the demo accounts' values and sessions."""
    if not args.force:
        await check_idle(server, f"bench_s{args.scale}")
    database = await db.prepare_database(
        server, scale=args.scale, seed_value=args.seed, today=args.today
    )
    fixture = await db.load_fixture(database, today=args.today)
    conn = await asyncpg.connect(database.url)
    try:
        version = int(await conn.fetchval("SELECT version FROM diary_api.reference_version"))
    finally:
        await conn.close()
    return database, Inputs(fixture.values, sessions_of(database, fixture.tokens), version)


async def run(args: argparse.Namespace) -> None:
    """Prepare the database and the fixture, then measure on one pooled connection."""
    server = db.start_server(BENCH_DIR / ".data" / "pg")
    try:
        database, inputs = await prepare(server, args)
        settings = db.gateway_settings(database.gateway_url)
        one = dataclasses.replace(settings, pool_min_size=1, pool_max_size=1)
        pool = await create_pool(database.gateway_url, one)
        try:
            async with pool.acquire() as conn:
                await conn.execute("SET plan_cache_mode = force_generic_plan")
                role, version = await conn.fetchrow("SELECT current_user, version()")
                print(
                    f"\n{database.name} (scale {args.scale}, seed {args.seed}, today "
                    f"{args.today}); one connection as {role}, the gateway's pool settings, "
                    f"plan_cache_mode force_generic_plan; {args.runs} runs per statement "
                    f"after {WARMUP_RUNS}; {version.split(' on ')[0]}\n",
                    flush=True,
                )
                await measure_all(conn, inputs, runs=args.runs)
        finally:
            await pool.close()
    finally:
        if server.started_here:
            server.stop()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench/statement-cost",
        description="PostgreSQL CPU and wall time per execution of each statement of the "
        "bench's operations (one connection, generic plans)",
    )
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS, help="executions per statement")
    parser.add_argument("--scale", type=int, default=10, help="the bench database's scale")
    parser.add_argument("--seed", type=int, default=1, help="generator seed (default 1)")
    parser.add_argument(
        "--today",
        type=date.fromisoformat,
        default=DEFAULT_TODAY,
        help=f"the data set's today (default {DEFAULT_TODAY})",
    )
    parser.add_argument(
        "--force", action="store_true", help="run even while other clients use the database"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.runs < 1:
        print("bench/statement-cost: --runs must be at least 1", file=sys.stderr)
        return 2
    try:
        asyncio.run(run(args))
    except BusyError as error:
        print(f"bench/statement-cost: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

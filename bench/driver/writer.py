"""The `families` workload's writer: the region's teachers writing the journal.

A separate process (`python -m bench.driver.writer`, asyncpg on the owner's DSN) that,
while a target is measured, writes at a steady random (Poisson) rate into the classes of
the families' schools, on lessons of the current week up to today: new marks (most
writes), edits of its own marks, attendance records and edits of lesson topics. Each
write is its own transaction, as a teacher's journal save is; the source database's
change tracking bumps the student's (marks, attendance) or the class's (topics) version,
so the gateway's response cache sees the invalidations a school day brings.

The default rate is a school-day peak estimated from the data (`estimate_peak_rate`):
the journal rows of one school day (marks + attendance + topics of the lessons of each
school day of the week before today's, averaged) spread over the bell schedule's day
(first lesson's start to the last one's end, region-wide), times `PEAK_FACTOR`. At
scale 10 (seed 1, today 2026-11-27) `--estimate` prints 2.36 writes/s: 150,264 rows over
5 days, 425 minutes a day, times 2 (each of the 732 classes written every ~5 minutes).
The reports showed 2.8-2.9 writes/s because every writer draws the same seeded arrivals
and a run's window is short (~10 s): that sample runs above the mean (30 writes in 11.6 s
at rate 2.36 when run on its own). The rate the report prints is writes that changed a
row over the writer's whole time (warm-up included), not the rate asked for.

The writer undoes itself (at start, for a killed predecessor, and on SIGTERM; bench/run
also runs `cleanup_database` before it measures): its marks and attendance have ids from
`ID_BASE` up and are deleted; before its first write it keeps each topic of its lessons
(text and updated_at) in `writer-topics.json` next to the students file, and its topic
edits (which carry `TOPIC_MARK`) are put back to both from there. On SIGTERM it prints
`WRITER_RESULT {json}`: writes that changed a row, no-ops (a topic already marked, an
attendance record already there), failed writes, seconds; then it exits.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Final

import asyncpg

from bench.driver.procs import BenchError, track, untrack

ID_BASE: Final = 1_000_000_000_000
TOPIC_MARK: Final = " (уточнено)"
PEAK_FACTOR: Final = 2.0
# Shares of the writes, from the data (a school day: ~23,000 marks, ~3,500 attendance
# records, ~3,650 topics at scale 10); a tenth of the mark writes are corrections.
SHARES: Final = {"new_mark": 0.69, "edit_mark": 0.08, "attendance": 0.115, "topic": 0.115}
_MARK = "WRITER_RESULT "
STOP_TIMEOUT_S: Final = 30.0
READY_TIMEOUT_S: Final = 120.0
STATE_FILE: Final = "writer-topics.json"

_CLEANUP = (
    f"DELETE FROM school.marks WHERE id >= {ID_BASE}",
    f"DELETE FROM school.attendance WHERE id >= {ID_BASE}",
)
# Topics the writer marked back to the text and updated_at it kept (writer-topics.json).
_RESTORE_TOPICS = """
UPDATE school.lesson_topics t SET topic = s.topic, updated_at = s.updated_at
FROM unnest($2::bigint[], $3::text[], $4::timestamptz[]) AS s(lesson_id, topic, updated_at)
WHERE t.lesson_id = s.lesson_id AND right(t.topic, length($1::text)) = $1::text
"""
# A marked topic the file does not know (a writer before the file): only the text.
_CUT_TOPICS = (
    "UPDATE school.lesson_topics SET topic = left(topic, -length($1::text)) "
    "WHERE right(topic, length($1::text)) = $1::text"
)
_KEEP_TOPICS = """
SELECT lesson_id, topic, updated_at FROM school.lesson_topics WHERE lesson_id = ANY($1::bigint[])
"""

_ROWS_PER_DAY = """
SELECT ((SELECT count(*) FROM school.marks WHERE date BETWEEN $1 AND $2)
      + (SELECT count(*) FROM school.attendance WHERE date BETWEEN $1 AND $2)
      + (SELECT count(*) FROM school.lesson_topics t JOIN school.lessons l ON l.id = t.lesson_id
         WHERE l.date BETWEEN $1 AND $2))::float8
     / greatest(1, (SELECT count(DISTINCT date) FROM school.lessons
                    WHERE date BETWEEN $1 AND $2)) AS rows_per_day,
       (SELECT extract(epoch FROM max(ends_at) - min(starts_at))
        FROM school.bell_schedule)::float8 AS day_seconds
"""

_LESSONS = """
SELECT l.id, l.class_id, l.date, (t.lesson_id IS NOT NULL) AS has_topic
FROM school.lessons l
LEFT JOIN school.lesson_topics t ON t.lesson_id = l.id
WHERE l.class_id IN (SELECT c.id FROM school.classes c WHERE c.school_id IN
                     (SELECT s.school_id FROM school.students s WHERE s.id = ANY($1::int[])))
  AND l.date BETWEEN $2 AND $3 AND l.status <> 'cancelled'
"""

_STUDENTS = "SELECT id, class_id FROM school.students WHERE class_id = ANY($1::int[])"

_NEW_MARK = """
INSERT INTO school.marks (id, student_id, lesson_id, date, work_type_id, value,
                          numeric_value, weight)
SELECT $1, $2, l.id, l.date, w.id, $4::text, $4::numeric, w.weight
FROM school.lessons l, school.work_types w
WHERE l.id = $3 AND w.id = $5
"""
_EDIT_MARK = """
UPDATE school.marks SET value = $2::text, numeric_value = $2::numeric, updated_at = now()
WHERE id = $1
"""
_ATTENDANCE = """
INSERT INTO school.attendance (id, student_id, lesson_id, date, code)
SELECT $1, $2, l.id, l.date, $4 FROM school.lessons l WHERE l.id = $3
ON CONFLICT (student_id, lesson_id) DO NOTHING
"""
_TOPIC = """
UPDATE school.lesson_topics SET topic = topic || $2::text, updated_at = now()
WHERE lesson_id = $1 AND right(topic, length($2::text)) <> $2::text
"""


async def estimate_peak_rate(conn: asyncpg.Connection, today: date) -> float:
    """Writes per second at a school-day peak (see the module's docstring)."""
    monday = today - timedelta(days=today.weekday())
    row = await conn.fetchrow(_ROWS_PER_DAY, monday - timedelta(days=7), monday - timedelta(1))
    if row is None or not row["day_seconds"]:
        return 1.0
    return float(row["rows_per_day"]) / float(row["day_seconds"]) * PEAK_FACTOR


@dataclass
class Journal:
    """What the teachers write into: lessons of the week by class, and each class's
    students; the writer's own marks (to correct) and the next free id."""

    lessons: list[asyncpg.Record]
    students: dict[int, list[int]]
    topics: list[asyncpg.Record]  # the lessons that have a topic
    own_marks: list[int] = field(default_factory=list)
    next_id: int = ID_BASE


async def load_journal(conn: asyncpg.Connection, student_ids: list[int], today: date) -> Journal:
    monday = today - timedelta(days=today.weekday())
    lessons = list(await conn.fetch(_LESSONS, student_ids, monday, today))
    classes = sorted({row["class_id"] for row in lessons})
    students: dict[int, list[int]] = {}
    for row in await conn.fetch(_STUDENTS, classes):
        students.setdefault(row["class_id"], []).append(row["id"])
    usable = [row for row in lessons if students.get(row["class_id"])]
    if not usable:
        raise RuntimeError("the families' schools have no lessons this week")
    topics = [row for row in usable if row["has_topic"]]
    return Journal(usable, students, topics)


def _changed(status: str) -> bool:
    """Whether a command's status ("INSERT 0 1", "UPDATE 0") reports a changed row."""
    return status.rsplit(" ", 1)[-1] != "0"


async def write_one(conn: asyncpg.Connection, journal: Journal, rng: random.Random) -> bool:
    """One teacher's save: a new or corrected mark, an attendance record or a topic;
    whether it changed a row (a topic already marked or an attendance already there
    does not)."""
    action = rng.choices(list(SHARES), weights=list(SHARES.values()))[0]
    lesson = rng.choice(journal.lessons)
    student = rng.choice(journal.students[lesson["class_id"]])
    if action == "edit_mark" and journal.own_marks:
        mark = rng.choice(journal.own_marks)
        return _changed(await conn.execute(_EDIT_MARK, mark, rng.choice("2345")))
    if action in ("new_mark", "edit_mark") or (action == "topic" and not journal.topics):
        journal.next_id += 1
        value, work_type = rng.choice("2344455"), rng.choice((1, 1, 1, 3, 4, 7))
        args = (journal.next_id, student, lesson["id"], value, work_type)
        if not _changed(await conn.execute(_NEW_MARK, *args)):
            return False
        journal.own_marks.append(journal.next_id)
        return True
    if action == "attendance":
        journal.next_id += 1
        code = rng.choice(("Н", "Б", "Б", "У", "П"))
        args = (journal.next_id, student, lesson["id"], code)
        return _changed(await conn.execute(_ATTENDANCE, *args))
    topic = rng.choice(journal.topics)
    return _changed(await conn.execute(_TOPIC, topic["id"], TOPIC_MARK))


def state_path(students_file: str | Path) -> Path:
    """Where a writer keeps the topics it may edit: next to its students file."""
    return Path(students_file).with_name(STATE_FILE)


async def keep_topics(conn: asyncpg.Connection, journal: Journal, state: Path) -> None:
    """Save the text and updated_at of every topic the writer may edit (before any)."""
    rows = await conn.fetch(_KEEP_TOPICS, [row["id"] for row in journal.topics])
    _write_state(state, [[r["lesson_id"], r["topic"], r["updated_at"].isoformat()] for r in rows])


def _write_state(state: Path, kept: list[list[object]]) -> None:
    temporary = state.with_suffix(".tmp")
    temporary.write_text(json.dumps(kept, ensure_ascii=False), encoding="utf-8")
    os.replace(temporary, state)


def _read_state(state: Path) -> list[list[object]] | None:
    """The kept topics, None without a file (`cleanup` removes it after restoring)."""
    try:
        return list(json.loads(state.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return None


def _read_students(path: str) -> list[int]:
    with open(path, encoding="utf-8") as file:
        return [int(line) for line in file if line.strip()]


async def cleanup(conn: asyncpg.Connection, state: Path) -> None:
    """Undo every write of a writer: its rows deleted, its topic edits put back (text
    and updated_at from `state`; only the text where `state` does not know the topic)."""
    await conn.execute(_CLEANUP[0])
    await conn.execute(_CLEANUP[1])
    kept = _read_state(state)
    if kept is not None:
        ids = [row[0] for row in kept]
        texts = [row[1] for row in kept]
        stamps = [datetime.fromisoformat(str(row[2])) for row in kept]
        await conn.execute(_RESTORE_TOPICS, TOPIC_MARK, ids, texts, stamps)
    await conn.execute(_CUT_TOPICS, TOPIC_MARK)
    _remove(state)


def _remove(state: Path) -> None:
    state.unlink(missing_ok=True)


async def cleanup_database(url: str, students_file: str | Path) -> None:
    """`cleanup` on its own connection: bench/run calls it before it measures."""
    conn = await asyncpg.connect(url)
    try:
        await cleanup(conn, state_path(students_file))
    finally:
        await conn.close()


async def run(
    url: str, students_file: str, today: date, rate: float, seed: int
) -> dict[str, float]:
    """Write at `rate` per second until SIGTERM/SIGINT, then undo; the counts."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    student_ids = _read_students(students_file)
    state = state_path(students_file)
    conn = await asyncpg.connect(url)
    try:
        await cleanup(conn, state)
        journal = await load_journal(conn, student_ids, today)
        await keep_topics(conn, journal, state)
        print("WRITER_READY", flush=True)
        counts = await _write_until(stop, conn, journal, rate, random.Random(f"writer-{seed}"))
        await cleanup(conn, state)
    finally:
        await conn.close()
    return counts


async def _write_until(
    stop: asyncio.Event,
    conn: asyncpg.Connection,
    journal: Journal,
    rate: float,
    rng: random.Random,
) -> dict[str, float]:
    """The writing loop: writes (rows changed), no-ops, failed writes, seconds."""
    writes = noops = failed = 0
    started = due = time.monotonic()
    while not stop.is_set():
        # Arrivals on the clock (a Poisson process): a slow write does not lower the rate.
        due += rng.expovariate(rate)
        try:
            await asyncio.wait_for(stop.wait(), timeout=max(0.0, due - time.monotonic()))
        except TimeoutError:
            try:
                if await write_one(conn, journal, rng):
                    writes += 1
                else:
                    noops += 1
            except asyncpg.PostgresError:
                failed += 1
    seconds = time.monotonic() - started
    return {"writes": writes, "noops": noops, "failed": failed, "seconds": seconds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.driver.writer", description=__doc__)
    parser.add_argument("--url", required=True, help="the owner's DSN of the bench database")
    parser.add_argument("--students", required=True, help="file: the families' student ids")
    parser.add_argument("--today", type=date.fromisoformat, required=True)
    parser.add_argument("--rate", type=float, help="writes per second (default: the peak)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--estimate", action="store_true", help="print the peak rate, exit")
    args = parser.parse_args(argv)
    if args.estimate:
        print(f"{asyncio.run(_estimate(args.url, args.today)):.2f}")
        return 0
    rate = args.rate if args.rate else asyncio.run(_estimate(args.url, args.today))
    result = asyncio.run(run(args.url, args.students, args.today, rate, args.seed))
    print(_MARK + json.dumps(result | {"rate": rate}), flush=True)
    return 0


async def _estimate(url: str, today: date) -> float:
    conn = await asyncpg.connect(url)
    try:
        return await estimate_peak_rate(conn, today)
    finally:
        await conn.close()


if __name__ == "__main__":
    sys.exit(main())


@dataclass(frozen=True, slots=True)
class WriterResult:
    """What a writer did while it ran: writes that changed a row, writes that changed
    nothing (not counted in `writes`), failed writes."""

    writes: int
    noops: int
    failed: int
    seconds: float
    rate: float

    @property
    def per_second(self) -> float:
        return self.writes / self.seconds if self.seconds > 0 else 0.0


class WriterProcess:
    """`python -m bench.driver.writer` started for one measurement and stopped after it."""

    def __init__(self, command: list[str], cwd: str) -> None:
        self.process = subprocess.Popen(
            command,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        track(self.process)  # ProcessSet kills it if bench/run ends without stop()/kill()
        try:
            ready = self._ready_line()
        except BaseException:
            self.kill()
            raise
        if not ready.startswith("WRITER_READY"):
            self.kill()
            raise BenchError(f"the writer did not start:\n{ready}{self._stderr()}")

    def _ready_line(self) -> str:
        """The writer's first line, within READY_TIMEOUT_S (a BenchError after it)."""
        assert self.process.stdout is not None
        readable, _, _ = select.select([self.process.stdout], [], [], READY_TIMEOUT_S)
        if not readable:
            raise BenchError(f"the writer was not ready in {READY_TIMEOUT_S:g} s")
        return self.process.stdout.readline()

    def _stderr(self) -> str:
        """The tail of a stopped writer's stderr."""
        if self.process.stderr is None:
            return ""
        with contextlib.suppress(ValueError, OSError):
            return self.process.stderr.read()[-2000:]
        return ""

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> WriterResult:
        """SIGTERM, wait for its undo and summary (the writer is killed if this fails)."""
        try:
            self.process.send_signal(signal.SIGTERM)
            out, err = self.process.communicate(timeout=timeout)
        except BaseException:
            self.kill()
            raise
        untrack(self.process)
        for line in out.splitlines():
            if line.startswith(_MARK):
                data = json.loads(line[len(_MARK) :])
                return WriterResult(
                    data["writes"], data["noops"], data["failed"], data["seconds"], data["rate"]
                )
        raise BenchError(f"the writer printed no result:\n{err[-2000:]}")

    def kill(self) -> None:
        """Stop without waiting for a summary (a failed measurement): SIGKILL to its
        process group. Its rows stay until the next writer's or bench/run's cleanup."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        untrack(self.process)


def start_writer(
    url: str, students_file: str, *, today: date, rate: float | None, seed: int, cwd: str
) -> WriterProcess:
    """Start the writer on the owner's DSN; returns once it is writing."""
    command = [sys.executable, "-m", "bench.driver.writer", "--url", url]
    command += ["--students", students_file, "--today", today.isoformat(), "--seed", str(seed)]
    if rate:
        command += ["--rate", str(rate)]
    return WriterProcess(command, cwd)

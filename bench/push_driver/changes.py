"""The push bench's writer: marks and attendance committed at a set rate, one per transaction.

It writes as a teacher's journal save does, through the owner's connection (the schema
owner's DSN, like the response-cache tests): each change is one autocommitted statement,
so the time taken when `execute` returns is the time after COMMIT. Most changes are for
students of the subscribed families (`SUBSCRIBED_SHARE`), the rest for their classmates
no subscriber may see. Marks get new ids from `ID_BASE`; attendance is inserted only for
(student, lesson) pairs without a record (the table is UNIQUE on them), also with ids
from `ID_BASE`. `cleanup` deletes every row in the writer's id range, so the data set
stays as seeded (bench/driver/writer.py uses ids from 10^12; these are from 2 x 10^12).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Final

import asyncpg

ID_BASE: Final = 2_000_000_000_000
ID_END: Final = 3_000_000_000_000
SUBSCRIBED_SHARE: Final = 0.9
MARK_SHARE: Final = 0.7
_PAIR_TRIES: Final = 20

_LESSONS = """
SELECT id, class_id, date FROM school.lessons
WHERE class_id = ANY($1::int[]) AND date BETWEEN $2 AND $3 AND status <> 'cancelled'
"""
_STUDENTS = "SELECT id, class_id FROM school.students WHERE class_id = ANY($1::int[])"
_CLASSES = "SELECT id, class_id FROM school.students WHERE id = ANY($1::int[])"
_TAKEN = "SELECT student_id, lesson_id FROM school.attendance WHERE lesson_id = ANY($1::bigint[])"
_NEW_MARK = """
INSERT INTO school.marks (id, student_id, lesson_id, date, work_type_id, value,
                          numeric_value, weight)
SELECT $1, $2, l.id, l.date, w.id, $4::text, $4::numeric, w.weight
FROM school.lessons l, school.work_types w
WHERE l.id = $3 AND w.id = $5
"""
_ATTENDANCE = """
INSERT INTO school.attendance (id, student_id, lesson_id, date, code)
SELECT $1, $2, l.id, l.date, $4 FROM school.lessons l WHERE l.id = $3
ON CONFLICT (student_id, lesson_id) DO NOTHING
"""
_CLEANUP: Final = (
    f"DELETE FROM school.marks WHERE id >= {ID_BASE} AND id < {ID_END}",
    f"DELETE FROM school.attendance WHERE id >= {ID_BASE} AND id < {ID_END}",
)


@dataclass(frozen=True, slots=True)
class Change:
    """One committed change: `entity` as the client names it ("mark:<id>")."""

    entity: str
    student_id: int
    committed_at: float  # time.monotonic() after COMMIT returned
    subscribed: bool


@dataclass
class Journal:
    """Where the writer writes: the lessons of each class (this week up to today), the
    class of each student, the attendance pairs already taken."""

    lessons: dict[int, list[int]]
    class_of: dict[int, int]
    subscribed: list[int]
    unsubscribed: list[int]
    taken: set[tuple[int, int]]
    next_id: int = ID_BASE


@dataclass
class WriteLog:
    changes: list[Change] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    started: float = 0.0
    ended: float = 0.0

    @property
    def seconds(self) -> float:
        return max(0.0, self.ended - self.started)


async def load_journal(conn: asyncpg.Connection, subscribed: Iterable[int], today: date) -> Journal:
    """The lessons and students of the subscribed students' classes."""
    students = sorted(set(subscribed))
    class_of = {r["id"]: r["class_id"] for r in await conn.fetch(_CLASSES, students)}
    classes = sorted(set(class_of.values()))
    monday = today - timedelta(days=today.weekday())
    lessons: dict[int, list[int]] = {}
    lesson_ids: list[int] = []
    for row in await conn.fetch(_LESSONS, classes, monday - timedelta(days=7), today):
        lessons.setdefault(row["class_id"], []).append(row["id"])
        lesson_ids.append(row["id"])
    mates = [r for r in await conn.fetch(_STUDENTS, classes) if r["id"] not in class_of]
    class_of |= {r["id"]: r["class_id"] for r in mates}
    taken = {(r["student_id"], r["lesson_id"]) for r in await conn.fetch(_TAKEN, lesson_ids)}
    usable = [s for s in students if lessons.get(class_of.get(s, -1))]
    if not usable:
        raise RuntimeError("the subscribed students' classes have no lessons before today")
    others = [r["id"] for r in mates if lessons.get(r["class_id"])]
    return Journal(lessons, class_of, usable, others, taken)


async def write_one(conn: asyncpg.Connection, journal: Journal, rng: random.Random) -> Change:
    """One change (its own transaction): a new mark or a new attendance record."""
    subscribed = not journal.unsubscribed or rng.random() < SUBSCRIBED_SHARE
    student = rng.choice(journal.subscribed if subscribed else journal.unsubscribed)
    lessons = journal.lessons[journal.class_of[student]]
    journal.next_id += 1
    row_id = journal.next_id
    if rng.random() >= MARK_SHARE:
        for _ in range(_PAIR_TRIES):
            lesson = rng.choice(lessons)
            if (student, lesson) in journal.taken:
                continue
            journal.taken.add((student, lesson))
            code = rng.choice(("Н", "Б", "У", "П"))
            status = await conn.execute(_ATTENDANCE, row_id, student, lesson, code)
            if status.endswith(" 1"):
                return Change(f"attendance:{row_id}", student, time.monotonic(), subscribed)
    value, work_type = rng.choice("2345"), rng.choice((1, 1, 1, 3, 4, 7))
    status = await conn.execute(_NEW_MARK, row_id, student, rng.choice(lessons), value, work_type)
    if not status.endswith(" 1"):
        raise RuntimeError(f"a mark was not written ({status})")
    return Change(f"mark:{row_id}", student, time.monotonic(), subscribed)


async def write_for(
    conn: asyncpg.Connection, journal: Journal, *, rate: float, seconds: float, seed: int
) -> WriteLog:
    """Write at `rate` changes per second for `seconds`, on a steady clock (a slow write
    does not lower the rate: the next ones follow at once)."""
    rng = random.Random(f"push-{seed}")
    log = WriteLog(started=time.monotonic())
    due = log.started
    end = log.started + seconds
    while due < end:
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        try:
            log.changes.append(await write_one(conn, journal, rng))
        except (asyncpg.PostgresError, RuntimeError) as error:
            log.failed.append(f"{type(error).__name__}: {error}")
        due += 1.0 / rate
    log.ended = time.monotonic()
    return log


async def cleanup(url: str) -> int:
    """Delete every row the writer wrote (its id range); how many."""
    conn = await asyncpg.connect(url)
    try:
        deleted = 0
        for statement in _CLEANUP:
            deleted += int((await conn.execute(statement)).rsplit(" ", 1)[-1])
        return deleted
    finally:
        await conn.close()

"""A teacher's writes to the journal, as the school system makes them (through the owner
connection, straight into schema `school`), each undone on exit: what the change-feed
tests subscribe to. Every method is one statement, i.e. one transaction on an
autocommit connection, unless called inside the caller's own transaction."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import date
from typing import Any

import asyncpg

Undo = Callable[[], Awaitable[Any]]


class JournalWriter:
    """Writes of one test; `undo()` restores what they changed, newest first."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self._undo: list[Undo] = []

    async def lesson_of(self, student_id: int, *, on: date | None = None) -> asyncpg.Record:
        """A lesson of the student's class (on `on`, else the latest before today's data)."""
        row = await self.conn.fetchrow(
            """SELECT l.id, l.date, l.class_id, l.subject_id, l.room, l.status
               FROM school.lessons l JOIN school.students s ON s.class_id = l.class_id
               WHERE s.id = $1 AND ($2::date IS NULL OR l.date = $2)
               ORDER BY l.date DESC, l.number LIMIT 1""",
            student_id,
            on,
        )
        assert row is not None, f"no lesson for student {student_id}"
        return row

    async def add_mark(
        self,
        student_id: int,
        *,
        value: str = "5",
        work_type_id: int = 1,
        weight: float = 1.0,
        work_title: str | None = "Проверочная работа",
        lesson_id: int | None = None,
    ) -> int:
        """A new mark for the student at a lesson of their class; its id."""
        lesson = await self._lesson(student_id, lesson_id)
        mark_id: int = await self.conn.fetchval(
            """INSERT INTO school.marks (id, student_id, lesson_id, date, work_type_id,
                                         work_title, value, numeric_value, weight)
               SELECT coalesce(max(id), 0) + 1, $1, $2, $3, $4, $5, $6,
                      CASE WHEN $6 ~ '^[1-5]$' THEN $6::numeric END, $7
               FROM school.marks RETURNING id""",
            student_id,
            lesson["id"],
            lesson["date"],
            work_type_id,
            work_title,
            value,
            weight,
        )
        self._undo.append(
            lambda: self.conn.execute("DELETE FROM school.marks WHERE id = $1", mark_id)
        )
        return mark_id

    async def change_mark(self, mark_id: int, value: str) -> None:
        old = await self.conn.fetchrow(
            "SELECT value, numeric_value, updated_at FROM school.marks WHERE id = $1", mark_id
        )
        await self.conn.execute(
            "UPDATE school.marks SET value = $2, numeric_value = CASE WHEN $2 ~ '^[1-5]$' "
            "THEN $2::numeric END, updated_at = now() WHERE id = $1",
            mark_id,
            value,
        )
        self._undo.append(
            lambda: self.conn.execute(
                "UPDATE school.marks SET value = $2, numeric_value = $3, updated_at = $4 "
                "WHERE id = $1",
                mark_id,
                old["value"],
                old["numeric_value"],
                old["updated_at"],
            )
        )

    async def remove_mark(self, mark_id: int) -> None:
        """Delete a mark (one added by this writer: its undo then has nothing to do)."""
        await self.conn.execute("DELETE FROM school.marks WHERE id = $1", mark_id)

    async def add_attendance(
        self, student_id: int, *, code: str = "Н", lesson_id: int | None = None
    ) -> int:
        """An attendance record at a lesson of the student's without one; its id."""
        if lesson_id is None:
            lesson_id = await self.conn.fetchval(
                """SELECT l.id FROM school.lessons l
                   JOIN school.students s ON s.class_id = l.class_id
                   WHERE s.id = $1 AND NOT EXISTS (SELECT 1 FROM school.attendance a
                                                   WHERE a.student_id = $1 AND a.lesson_id = l.id)
                   ORDER BY l.date DESC, l.number LIMIT 1""",
                student_id,
            )
        record_id: int = await self.conn.fetchval(
            """INSERT INTO school.attendance (id, student_id, lesson_id, date, code, minutes_late)
               SELECT coalesce(max(a.id), 0) + 1, $1, l.id, l.date, $3,
                      CASE WHEN $3 IN ('О', 'ОП') THEN 5 END
               FROM school.lessons l, school.attendance a WHERE l.id = $2
               GROUP BY l.id, l.date RETURNING id""",
            student_id,
            lesson_id,
            code,
        )
        self._undo.append(
            lambda: self.conn.execute("DELETE FROM school.attendance WHERE id = $1", record_id)
        )
        return record_id

    async def add_homework(self, student_id: int, *, text: str = "Упр. 101") -> int:
        """Homework for the student's class, given at one of its lessons; its id."""
        lesson = await self.lesson_of(student_id)
        homework_id: int = await self.conn.fetchval(
            """INSERT INTO school.homework (id, lesson_id, class_id, subject_id, text,
                                            assigned_on, due_on)
               SELECT coalesce(max(id), 0) + 1, $1, $2, $3, $4, $5::date, $5::date + 2
               FROM school.homework RETURNING id""",
            lesson["id"],
            lesson["class_id"],
            lesson["subject_id"],
            text,
            lesson["date"],
        )
        self._undo.append(
            lambda: self.conn.execute("DELETE FROM school.homework WHERE id = $1", homework_id)
        )
        return homework_id

    async def set_topic(self, lesson_id: int, topic: str) -> None:
        """Set the lesson's topic; undone exactly (the old topic and its time restored, or
        the row removed), also after the test deleted it."""
        old = await self.conn.fetchrow(
            "SELECT topic, updated_at FROM school.lesson_topics WHERE lesson_id = $1", lesson_id
        )
        await self.conn.execute(
            "INSERT INTO school.lesson_topics (lesson_id, topic) VALUES ($1, $2) "
            "ON CONFLICT (lesson_id) DO UPDATE SET topic = EXCLUDED.topic, updated_at = now()",
            lesson_id,
            topic,
        )
        if old is None:
            self._undo.append(
                lambda: self.conn.execute(
                    "DELETE FROM school.lesson_topics WHERE lesson_id = $1", lesson_id
                )
            )
            return
        self._undo.append(
            lambda: self.conn.execute(
                "INSERT INTO school.lesson_topics (lesson_id, topic, updated_at) "
                "VALUES ($1, $2, $3) ON CONFLICT (lesson_id) DO UPDATE "
                "SET topic = EXCLUDED.topic, updated_at = EXCLUDED.updated_at",
                lesson_id,
                old["topic"],
                old["updated_at"],
            )
        )

    async def move_lesson(self, lesson_id: int, room: str) -> None:
        """The lesson moved to another room."""
        await self._update_lesson(lesson_id, "room = $2", room)

    async def cancel_lesson(self, lesson_id: int, comment: str = "Учитель болен") -> None:
        await self._update_lesson(lesson_id, "status = 'cancelled', status_comment = $2", comment)

    async def _update_lesson(self, lesson_id: int, assignment: str, value: object) -> None:
        old = await self.conn.fetchrow(
            "SELECT room, status, status_comment, updated_at FROM school.lessons WHERE id = $1",
            lesson_id,
        )
        await self.conn.execute(
            f"UPDATE school.lessons SET {assignment}, updated_at = now() WHERE id = $1",
            lesson_id,
            value,
        )
        self._undo.append(
            lambda: self.conn.execute(
                "UPDATE school.lessons SET room = $2, status = $3, status_comment = $4, "
                "updated_at = $5 WHERE id = $1",
                lesson_id,
                old["room"],
                old["status"],
                old["status_comment"],
                old["updated_at"],
            )
        )

    async def set_final_mark(self, student_id: int, value: str = "4") -> int:
        """A year mark for the student in one of their subjects; its id."""
        final_id: int = await self.conn.fetchval(
            """INSERT INTO school.final_marks (id, student_id, subject_id, year_id, kind, value,
                                               numeric_value)
               SELECT (SELECT coalesce(max(id), 0) + 1 FROM school.final_marks), s.id,
                      (SELECT subject_id FROM school.lessons WHERE class_id = s.class_id LIMIT 1),
                      c.year_id, 'year', $2::text, $2::text::numeric
               FROM school.students s JOIN school.classes c ON c.id = s.class_id
               WHERE s.id = $1 RETURNING id""",
            student_id,
            value,
        )
        self._undo.append(
            lambda: self.conn.execute("DELETE FROM school.final_marks WHERE id = $1", final_id)
        )
        return final_id

    async def _lesson(self, student_id: int, lesson_id: int | None) -> asyncpg.Record:
        if lesson_id is None:
            return await self.lesson_of(student_id)
        row = await self.conn.fetchrow(
            "SELECT id, date, class_id, subject_id FROM school.lessons WHERE id = $1", lesson_id
        )
        assert row is not None
        return row

    async def undo(self) -> None:
        while self._undo:
            await self._undo.pop()()


@asynccontextmanager
async def journal_writes(conn: asyncpg.Connection) -> AsyncIterator[JournalWriter]:
    """A writer whose changes are undone on exit (the undo writes are changes too)."""
    writer = JournalWriter(conn)
    try:
        yield writer
    finally:
        await writer.undo()

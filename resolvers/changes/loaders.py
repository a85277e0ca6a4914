"""Pages of the change feed as typed events: each change read once, its payload built once,
then given to every student (and subscriber) it concerns with a cursor of its own."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Final

import asyncpg
import strawberry

from resolvers.changes import sql
from resolvers.changes.cursor import ChangeCursor, Position, Snapshot, at_snapshot
from resolvers.changes.types import (
    AttendanceEvent,
    ChangeAction,
    ChangedLesson,
    DiaryEvent,
    FinalMarkEvent,
    HomeworkEvent,
    LessonEvent,
    LessonTopicEvent,
    MarkEvent,
)
from resolvers.diary.loaders import names_reader
from resolvers.diary.reference import ReferenceData, RequestReference
from resolvers.diary.rows import (
    attendance_from_row,
    final_mark_from_row,
    has_mark_names,
    has_names,
    has_subject,
    homework_from_row,
    lesson_from_row,
    mark_from_row,
)

Row = Any
Reader = sql.Reader
_ACTIONS: Final = {action.value: action for action in ChangeAction}


class Prefixed:
    """One payload's columns of a page row, by their names without the prefix."""

    __slots__ = ("_prefix", "_row")

    def __init__(self, row: Row, prefix: str) -> None:
        self._row = row
        self._prefix = prefix

    def __getitem__(self, key: str) -> Any:
        return self._row[self._prefix + key]


@dataclass(frozen=True, slots=True)
class Change:
    """One change as read: its key, what it is about and its payload (a typed object,
    None when the row is gone or names nothing that exists)."""

    id: int
    xid: int
    at: datetime
    kind: str
    action: ChangeAction
    entity_id: int
    lesson_id: int | None
    date: date | None
    in_upper: bool
    payload: object | None
    # Who may see it now (region pages): (student id, account id) pairs, by student.
    audience: tuple[tuple[int, str], ...] = ()
    # The viewer's student it is given for (viewer pages).
    for_student: int = 0

    def event(self, student_id: int, cursor: ChangeCursor) -> DiaryEvent:
        """The typed event of this change for one student (its payload was built for its
        kind by `_payload`)."""
        event_type, id_field, payload_field = _EVENT_TYPES[self.kind]
        fields: dict[str, Any] = {
            "cursor": cursor,
            "at": self.at,
            "action": self.action,
            "student_id": _id(student_id),
            "lesson_id": None if self.lesson_id is None else _id(self.lesson_id),
            "date": self.date,
            payload_field: self.payload,
        }
        if id_field is not None:
            fields[id_field] = _id(self.entity_id)
        return event_type(**fields)


# A change's kind: its event type, the field naming the row's id (none for a topic: the
# lesson's id is `lessonId`), and the payload's field.
_EVENT_TYPES: Final[dict[str, tuple[type[DiaryEvent], str | None, str]]] = {
    "mark": (MarkEvent, "mark_id", "mark"),
    "attendance": (AttendanceEvent, "attendance_id", "attendance"),
    "homework": (HomeworkEvent, "homework_id", "homework"),
    "lesson_topic": (LessonTopicEvent, None, "topic"),
    "lesson": (LessonEvent, None, "lesson"),
    "final_mark": (FinalMarkEvent, "final_mark_id", "final_mark"),
}


@dataclass(frozen=True, slots=True)
class Page:
    """Changes after `start`, read in `snapshot` (or up to a bound); `full`: more are
    waiting beyond the page's size."""

    start: Position
    snapshot: Snapshot
    taken_at: int
    changes: list[Change]
    full: bool

    def position_after(self, change: Change, student_id: int) -> Position:
        """The position right after this change's copy for `student_id`."""
        return self.start.past(
            self.snapshot, self.taken_at, in_upper=change.in_upper, key=(change.id, student_id)
        )

    @property
    def end(self) -> Position:
        """Where the next page starts."""
        if not self.full or not self.changes:
            return at_snapshot(self.snapshot, self.taken_at)
        last = self.changes[-1]
        return self.position_after(last, last.for_student or _ALL_STUDENTS)


_ALL_STUDENTS: Final = 2**31 - 1


def _id(value: int) -> strawberry.ID:
    return strawberry.ID(str(value))


@asynccontextmanager
async def listening(
    pool: asyncpg.Pool,
    channel: str,
    on_notification: Callable[..., None],
    on_lost: Callable[[], None],
) -> AsyncIterator[Reader]:
    """One of the pool's connections, LISTENing on `channel` while the block runs
    (`on_lost` is called if the connection breaks)."""

    def lost(_connection: object) -> None:
        on_lost()

    async with pool.acquire() as connection:
        connection.add_termination_listener(lost)
        await connection.add_listener(channel, on_notification)
        try:
            yield connection
        finally:
            connection.remove_termination_listener(lost)
            if not connection.is_closed():
                await connection.remove_listener(channel, on_notification)


async def current_position(reader: Reader) -> Position:
    """The position of now: everything visible in the database's snapshot."""
    row = await sql.current_snapshot(reader)
    return at_snapshot(Snapshot.from_record(row["snapshot"]), row["taken_at"])


async def read_region_page(
    pool: Reader, reference: RequestReference, position: Position, limit: int
) -> Page:
    """The region's next page of changes after `position` (the dispatcher's read)."""
    sent = reference.data
    rows = await sql.list_region_changes(
        pool, position=position, limit=limit + 1, reference_version=sent.version
    )
    return await _page(pool, reference, sent, position, rows, limit)


async def read_students_page(
    pool: Reader,
    reference: RequestReference,
    position: Position,
    student_ids: Sequence[int],
    limit: int,
    *,
    account_id: str,
    bound: Position | None = None,
) -> Page:
    """These students' next page of changes after `position` (scope already checked);
    with a `bound` (a position without `upper`), only up to it: the page's positions are
    then within `bound`, and its end, once read to it, is `bound` itself."""
    assert bound is None or bound.upper is None
    sent = reference.data
    rows = await sql.list_student_changes(
        pool,
        position=position,
        student_ids=student_ids,
        limit=limit + 1,
        reference_version=sent.version,
        account_id=account_id,
        bound=None if bound is None else bound.base,
    )
    return await _page(pool, reference, sent, position, rows, limit, bound)


async def _page(
    pool: Reader,
    reference: RequestReference,
    sent: ReferenceData,
    position: Position,
    rows: list[Row],
    limit: int,
    bound: Position | None = None,
) -> Page:
    """A page of at most `limit` changes (`rows` holds one more when more are waiting)."""
    first = rows[0]
    payload = next((row["reference"] for row in rows if row["reference"]), None)
    reference.received(sent, first["reference_version"], payload)
    changed = [row for row in rows if row["id"] is not None]
    names = await reference.naming(
        changed,
        names_reader(pool),
        subjects=(
            "m_subject_id",
            "a_subject_id",
            "h_subject_id",
            "l_subject_id",
            "l_replacement_subject_id",
        ),
        teachers=("l_teacher_id", "l_replacement_teacher_id"),
        work_types=("m_work_type_id",),
    )
    snapshot = Snapshot.from_record(first["snapshot"])
    taken_at = first["taken_at"]
    if bound is not None:
        snapshot, taken_at = bound.base, bound.base_at
    return Page(
        start=position,
        snapshot=snapshot,
        taken_at=taken_at,
        changes=[_change(row, names) for row in changed[:limit]],
        full=len(changed) > limit,
    )


def _change(row: Row, reference: ReferenceData) -> Change:
    students, accounts = row.get("audience_students"), row.get("audience_accounts")
    return Change(
        id=row["id"],
        xid=row["xid"],
        at=row["at"],
        kind=row["kind"],
        action=_ACTIONS[row["action"]],
        entity_id=row["entity_id"],
        lesson_id=row["lesson_id"],
        date=row["date"],
        in_upper=row["in_upper"],
        payload=_payload(row, reference),
        audience=tuple(zip(students, accounts, strict=True)) if students else (),
        for_student=row["for_student"],
    )


def _payload(row: Row, reference: ReferenceData) -> object | None:
    kind = row["kind"]
    if kind == "mark" and row["m_id"] is not None:
        mark = Prefixed(row, sql.MARK)
        return mark_from_row(mark, reference) if has_mark_names(mark, reference) else None
    if kind == "attendance" and row["a_id"] is not None:
        record = Prefixed(row, sql.ATTENDANCE)
        return attendance_from_row(record, reference) if has_subject(record, reference) else None
    if kind == "homework" and row["h_id"] is not None:
        homework = Prefixed(row, sql.HOMEWORK)
        if not has_subject(homework, reference):
            return None
        return homework_from_row(homework, reference).homework
    if kind == "lesson_topic":
        topic: str | None = row["l_topic"]
        return topic
    if kind == "lesson" and row["l_id"] is not None:
        return _lesson(Prefixed(row, sql.LESSON), reference)
    if kind == "final_mark" and row["f_id"] is not None:
        return final_mark_from_row(Prefixed(row, sql.FINAL_MARK))
    return None


def _lesson(row: Prefixed, reference: ReferenceData) -> ChangedLesson | None:
    if not has_names(row, reference):
        return None
    lesson = lesson_from_row(row, reference)
    return ChangedLesson(
        id=_id(lesson.id),
        date=lesson.date,
        number=lesson.number,
        subject=lesson.subject,
        teacher=lesson.teacher,
        room=lesson.room,
        status=lesson.status,
        status_comment=lesson.status_comment,
        replacement=lesson.replacement(),
        topic=lesson.topic,
    )

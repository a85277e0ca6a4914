"""One subscriber's stream of diary events: a bounded queue the dispatcher fills.

A subscription starts at a position. Without a cursor: the dispatcher's, with what was
written before the moment it was opened left out (the snapshot of that moment, read once
right after registering). With a cursor (`since`): it first catches up, page by page as
the client takes them (`resolvers.changes.loaders.read_students_page`, checked against the
registries like every live copy), from the cursor up to the dispatcher's position at the
moment the subscription was registered (one that covers the cursor:
`Dispatcher.settled_position`); what the dispatcher hands over meanwhile starts exactly
there, waits, and follows the catch-up: none lost, none repeated, and every cursor given
says exactly what was delivered. The queue is bounded: a subscriber that falls
`queue_size` events behind is ended with SLOW_CONSUMER (it resumes with its last cursor),
never buffered without bound. An event counts as delivered (one access-audit row) once
the transport says it was sent (`sent`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from auth.viewer import Viewer
from gateway.core.errors import ApiError, ErrorCode
from resolvers.changes.cursor import CursorCodec, Position, Snapshot
from resolvers.changes.loaders import Change, Page
from resolvers.changes.types import DiaryEvent

# A copy of a change for one student, with the page it came in (for its cursor).
Copy = tuple[Change, int, Page]
CatchUp = Callable[[Position], Awaitable[Page]]
Opening = Callable[[], Awaitable[Snapshot]]


class StreamEnded(ApiError):
    """The stream was ended by the gateway: its code says why."""

    def __init__(self, code: ErrorCode) -> None:
        self.code = code
        super().__init__()


class Subscription:
    """A subscriber's queue; iterate it for its events (see the module's doc)."""

    __slots__ = (
        "_catch_up",
        "_closed",
        "_codec",
        "_ended",
        "_from",
        "_limit",
        "_on_close",
        "_on_deliver",
        "_opening",
        "_queue",
        "_sent_for",
        "_skip",
        "_waiter",
        "_waiting",
        "expires_at",
        "key_id",
        "student_ids",
        "viewer",
    )

    def __init__(
        self,
        viewer: Viewer,
        student_ids: frozenset[int],
        *,
        codec: CursorCodec,
        queue_size: int,
        expires_at: float | None,
        key_id: str | None = None,
        catch_up: CatchUp | None,
        opening: Opening | None = None,
        start: Position,
        on_close: Callable[[Subscription], None],
        on_deliver: Callable[[Viewer, int], None],
    ) -> None:
        self.viewer = viewer
        self.student_ids = student_ids
        self.expires_at = expires_at
        # The signing key of the credentials (None: none, or not known); the dispatcher's
        # recheck ends the stream once that key is no longer accepted.
        self.key_id = key_id
        self._codec = codec
        self._limit = queue_size
        # Lists, not deques: a few entries at most, and an idle subscriber's memory counts
        # (thousands are open per process).
        self._queue: list[Copy] = []
        # Handed over during a catch-up, until it reaches the present (None: live).
        waits = catch_up is not None or opening is not None
        self._waiting: list[Copy] | None = [] if waits else None
        self._catch_up = catch_up
        self._opening = opening
        # Without a cursor: the snapshot of the moment it was opened; what it sees was
        # written before and is not sent.
        self._skip: Snapshot | None = None
        self._from = start
        self._waiter: asyncio.Future[bool] | None = None
        self._ended: ErrorCode | None = None
        self._closed = False
        self._on_close = on_close
        self._on_deliver = on_deliver
        # The student of the event last given out, until the transport says it was sent.
        self._sent_for: int | None = None

    def offer(self, copy: Copy) -> None:
        """A copy from the dispatcher, already authorized (never waits)."""
        if self._ended is not None or self._closed:
            return
        if self._skip is not None and self._skip.sees(copy[0].xid):
            return
        queue = self._waiting if self._waiting is not None else self._queue
        if len(queue) >= self._limit:
            self.end(ErrorCode.SLOW_CONSUMER)
            return
        queue.append(copy)
        self._wake()

    def end(self, code: ErrorCode) -> None:
        """End the stream: the consumer's next read raises StreamEnded with `code`;
        what was queued is dropped (the client resumes from its last cursor)."""
        if self._ended is None:
            self._ended = code
            self._queue.clear()
            self._on_close(self)  # no more offers, even if the consumer never reads again
            self._wake()

    def close(self) -> None:
        """The consumer is gone: leave the dispatcher, end a pending read (idempotent)."""
        self._closed = True
        self._queue.clear()
        self._on_close(self)
        self._wake()

    def sent(self) -> None:
        """The transport sent the event last given out: it is delivered (one row of the
        access audit; an event taken but never sent, the client gone, is not)."""
        if self._sent_for is not None:
            self._on_deliver(self.viewer, self._sent_for)
            self._sent_for = None

    async def aclose(self) -> None:
        """What graphql-core calls when the response stream is closed (the client left,
        completed the operation, or the stream ended)."""
        self.close()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> DiaryEvent:
        event = await self.next_event(None)
        assert event is not None
        return event

    async def next_event(self, timeout_s: float | None) -> DiaryEvent | None:
        """The next event; None when `timeout_s` passed without one (a heartbeat is
        due). StreamEnded when the gateway ended the stream, StopAsyncIteration once
        closed."""
        while True:
            if self._closed:
                raise StopAsyncIteration
            if self._ended is not None:
                raise StreamEnded(self._ended)
            if self.expires_at is not None and time.time() >= self.expires_at:
                self.end(ErrorCode.TOKEN_EXPIRED)
                continue
            if self._queue:
                change, student_id, page = self._queue.pop(0)
                cursor = self._codec.encode(page.position_after(change, student_id))
                self._sent_for = student_id
                return change.event(student_id, cursor)
            if self._opening is not None:
                await self.learn_opening()
                continue
            if self._catch_up is not None:
                await self._next_catch_up_page()
                continue
            if not await self._sleep(timeout_s):
                return None

    async def _sleep(self, timeout_s: float | None) -> bool:
        """Wait for an offer, an end or a close; False when `timeout_s` passed first. (A
        bare future and timer: asyncio.timeout's objects would stay with every idle
        subscriber.)"""
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        timer = None if timeout_s is None else loop.call_later(timeout_s, _expire, waiter)
        try:
            woken: bool = await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()
        return woken

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(True)

    async def learn_opening(self) -> None:
        """Read the snapshot of now (right after the subscription was registered, before
        it is returned): the copies handed over meanwhile that it sees were written
        before the subscription and are dropped, as are later ones it sees."""
        if self._opening is None:
            return
        self._skip = await self._opening()
        self._opening = None
        waiting, self._waiting = self._waiting or [], None
        self._queue.extend(copy for copy in waiting if not self._skip.sees(copy[0].xid))

    async def _next_catch_up_page(self) -> None:
        assert self._catch_up is not None
        page = await self._catch_up(self._from)
        self._from = page.end
        for change in page.changes:
            self._queue.append((change, change.for_student, page))
        if not page.full:  # up to where the dispatcher's copies start: they follow
            waiting, self._waiting, self._catch_up = self._waiting or [], None, None
            self._queue.extend(waiting)


def _expire(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(False)

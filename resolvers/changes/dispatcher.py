"""One dispatcher per process: LISTEN for changes, read them once, hand them to subscribers.

On a notification (`NOTIFY diary_changes`, sent by the change log at commit) the
dispatcher reads the region's new changes in one statement per page
(`resolvers.changes.loaders.read_region_page`): the changes, their payloads, and who may
see each of them now (the accounts linked to each student in the registries at that
moment). It then hands each copy to the subscriptions of those accounts that asked for
that student: the database work per change does not grow with the number of
subscribers, and a removed parent–child link stops delivery with the next change.
Notifications that arrive while a read runs are coalesced into one more read.

Every `recheck_s` seconds one statement checks every stream's session: a revoked or ended
session's streams end (SESSION_REVOKED), as do streams whose access token has expired
(TOKEN_EXPIRED, no statement). The LISTEN connection is one of the pool's, kept while the
process serves subscriptions; when it breaks (the database restarts) the dispatcher
connects again and reads from its position: nothing is lost, the subscribers just wait.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

import asyncpg

from auth.store.accounts import ended_sessions
from gateway.core.change_settings import ChangeFeedSettings
from gateway.core.db import StatementCounter, context_counting_into
from gateway.core.errors import ErrorCode
from gateway.core.outage import describe
from resolvers.changes.cursor import CursorError, Position, Snapshot
from resolvers.changes.loaders import (
    Page,
    Reader,
    current_position,
    listening,
    read_region_page,
)
from resolvers.changes.subscription import Subscription
from resolvers.diary.reference import ReferenceCache, RequestReference

log = logging.getLogger(__name__)

CHANNEL: Final = "diary_changes"
PAGE_SIZE: Final = 500
# Drains a subscription waits for its cursor to be covered: the first may have started
# before the subscription asked (its snapshot older than the cursor), the second did not.
_READS_TO_COVER: Final = 2
_RETRY_S: Final = (0.5, 1.0, 2.0, 5.0)
_DATABASE_ERRORS: Final = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)


class Dispatcher:
    """The process's reader of the change log and its subscribers' registry."""

    def __init__(
        self,
        settings: ChangeFeedSettings,
        pool: Callable[[], asyncpg.Pool],
        reference: ReferenceCache,
        *,
        listen_pool: Callable[[], Awaitable[asyncpg.Pool]] | None = None,
        accepts_key: Callable[[str], bool] | None = None,
    ) -> None:
        self._settings = settings
        self._pool = pool
        # Where the LISTEN connection comes from when not `pool` (DATABASE_DIRECT_URL).
        self._listen_pool = listen_pool
        self._reference = reference
        # Whether a signing key is still accepted (the process's key set, reloaded).
        self._accepts_key = accepts_key
        # An account's open subscriptions (a list: one or two each, thousands of accounts).
        self._by_account: dict[str, list[Subscription]] = {}
        self._count = 0
        self._position: Position | None = None
        self._ready = asyncio.Event()
        self._notified = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._drained: list[asyncio.Future[None]] = []  # waiting for the next drain
        self.reads = 0  # pages read (for tests and the bench)
        # The statements of the listening loop (for tests: `keep_text` to see them).
        self.statements = StatementCounter()

    # --- subscribers -------------------------------------------------------------------

    @property
    def subscriptions(self) -> int:
        return self._count

    def count_for(self, account_id: str) -> int:
        return len(self._by_account.get(account_id, ()))

    async def position(self) -> Position:
        """Where a subscription without a cursor starts (starts the dispatcher)."""
        self._start()
        await self._ready.wait()
        assert self._position is not None
        return self._position

    async def settled_position(self, covering: Snapshot) -> Position:
        """A position without `upper` that covers `covering` (reading the log once more
        if the dispatcher is behind it): what a catch-up reads up to. Whatever is handed
        over from the moment this returns (no await in between) starts at it. A snapshot
        that even a read started after this call does not cover is not of this database
        (or of its past before a restore): CursorError."""
        self._start()
        await self._ready.wait()
        reads = 0
        while True:
            position = self._position
            assert position is not None
            if position.upper is None and position.base.covers(covering):
                return position
            if reads == _READS_TO_COVER:
                raise CursorError()
            drained = asyncio.get_running_loop().create_future()
            self._drained.append(drained)
            self._notified.set()
            await drained
            reads += 1

    def add(self, subscription: Subscription) -> None:
        self._by_account.setdefault(subscription.viewer.account_id, []).append(subscription)
        self._count += 1

    def remove(self, subscription: Subscription) -> None:
        subscriptions = self._by_account.get(subscription.viewer.account_id)
        if subscriptions is None or subscription not in subscriptions:
            return
        subscriptions.remove(subscription)
        self._count -= 1
        if not subscriptions:
            del self._by_account[subscription.viewer.account_id]

    # --- the loops ---------------------------------------------------------------------

    def _start(self) -> None:
        """The loops, in a context of their own: not the subscribing request's (its
        request id, trace span and statement counter are not theirs)."""
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(
                    self._listen(),
                    name="change-dispatcher",
                    context=context_counting_into(self.statements),
                ),
                asyncio.create_task(
                    self._recheck(), name="change-recheck", context=contextvars.Context()
                ),
            ]
            for task in self._tasks:
                task.add_done_callback(self._stopped)

    def _stopped(self, task: asyncio.Task[None]) -> None:
        """A loop ended other than by `close`: a bug (a database error is retried). It is
        logged with its traceback, every stream ends SERVICE_UNAVAILABLE (their clients
        resume with their cursors), and the next subscription starts the loops again."""
        if task.cancelled() or task not in self._tasks:
            return
        error = task.exception()
        log.error("change feed: %s stopped", task.get_name(), exc_info=error)
        tasks, self._tasks = self._tasks, []
        for other in tasks:
            other.cancel()
        for subscriptions in list(self._by_account.values()):
            for subscription in list(subscriptions):
                subscription.end(ErrorCode.SERVICE_UNAVAILABLE)
        self._position = None
        self._ready = asyncio.Event()
        drained, self._drained = self._drained, []
        for waiter in drained:
            if not waiter.done():
                waiter.set_exception(ConnectionResetError("the change feed stopped"))

    async def close(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _listen(self) -> None:
        failures = 0
        while True:
            try:
                await self._serve_connection()
            except _DATABASE_ERRORS as error:
                delay = _RETRY_S[min(failures, len(_RETRY_S) - 1)]
                failures += 1
                log.warning("change feed: %s; listening again in %.1f s", describe(error), delay)
                await asyncio.sleep(delay)
            else:
                failures = 0

    async def _serve_connection(self) -> None:
        lost = asyncio.Event()
        pool = self._pool() if self._listen_pool is None else await self._listen_pool()
        async with listening(
            pool, CHANNEL, self._on_notification, lambda: _wake(lost, self._notified)
        ) as connection:
            if self._position is None:
                self._position = await current_position(connection)
                self._ready.set()
            self._notified.set()  # what was written while not listening
            while not lost.is_set():
                await self._notified.wait()
                self._notified.clear()
                if not lost.is_set():
                    await self._drain(connection)
        raise ConnectionResetError("the change feed's connection was closed")

    def _on_notification(self, *_args: Any) -> None:
        self._notified.set()

    async def _drain(self, connection: Reader) -> None:
        """Read and hand over pages until the log is read to the present."""
        reference = RequestReference(self._reference)
        while True:
            assert self._position is not None
            page = await read_region_page(connection, reference, self._position, PAGE_SIZE)
            self.reads += 1
            self._hand_over(page)
            self._position = page.end
            if not page.full:
                break
        drained, self._drained = self._drained, []
        for waiter in drained:
            if not waiter.done():
                waiter.set_result(None)

    def _hand_over(self, page: Page) -> None:
        by_account = self._by_account
        for change in page.changes:
            for student_id, account_id in change.audience:
                for subscription in by_account.get(account_id, ()):
                    if student_id in subscription.student_ids:
                        subscription.offer((change, student_id, page))

    async def _recheck(self) -> None:
        while True:
            await asyncio.sleep(self._settings.recheck_s)
            try:
                await self._recheck_sessions()
            except _DATABASE_ERRORS as error:
                log.warning("change feed: sessions not rechecked: %s", describe(error))

    def _key_refused(self, key_id: str | None) -> bool:
        """True when the stream's credentials are signed by a key no longer accepted."""
        if key_id is None or self._accepts_key is None:
            return False
        return not self._accepts_key(key_id)

    async def _recheck_sessions(self) -> None:
        subscriptions = [s for group in self._by_account.values() for s in group]
        now = time.time()
        for subscription in subscriptions:
            if subscription.expires_at is not None and subscription.expires_at <= now:
                subscription.end(ErrorCode.TOKEN_EXPIRED)
            elif self._key_refused(subscription.key_id):
                # UNAUTHENTICATED (sign in again), what the same token gets on its next
                # request (an unexpired token of a retired key, auth.tokens): a forced
                # rotation means a key leaked, and TOKEN_EXPIRED would tell the holder of
                # a forged token that it was once good and to refresh.
                subscription.end(ErrorCode.UNAUTHENTICATED)
        sessions = {s.viewer.session_id for s in subscriptions if s.viewer.session_id}
        ended = await ended_sessions(self._pool(), sorted(sessions)) if sessions else set()
        for subscription in subscriptions:
            if subscription.viewer.session_id in ended:
                subscription.end(ErrorCode.SESSION_REVOKED)


def _wake(lost: asyncio.Event, notified: asyncio.Event) -> None:
    lost.set()
    notified.set()

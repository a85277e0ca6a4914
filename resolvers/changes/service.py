"""The change feed of a process: pages for pollers (`diaryChanges`) and subscriptions.

Built once per application (`resolvers.context.AppServices.changes`); the dispatcher
(`resolvers.changes.dispatcher`) starts with the first subscription. Scope: a viewer asks
for their own students (all of them by default); any other id is FORBIDDEN. Cursors are
signed (`resolvers.changes.cursor`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Final

import asyncpg
import strawberry

from auth.permissions import parse_int_id
from auth.store.audit import AccessEvent, Recorder
from auth.viewer import Viewer
from gateway.core.direct_pool import DirectPool
from gateway.core.errors import ApiError, ErrorCode, ForbiddenError, LimitOutOfRangeError
from gateway.core.settings import Settings
from resolvers.changes.cursor import CursorCodec, Position, Snapshot
from resolvers.changes.dispatcher import Dispatcher
from resolvers.changes.loaders import Page, current_position, read_students_page
from resolvers.changes.subscription import Subscription
from resolvers.changes.types import DiaryChanges, DiaryEvent
from resolvers.diary.reference import ReferenceCache, RequestReference

CATCH_UP_PAGE: Final = 200
# The most students one request may name (a family has a few; a long list costs parsing).
MAX_STUDENT_IDS: Final = 50
# How long a subscription may wait for the dispatcher to reach its starting point.
SETTLE_TIMEOUT_S: Final = 10.0


class SubscriptionsOffError(ApiError):
    """Subscriptions are turned off on this server (SCHOOL_GATEWAY_SUBSCRIPTIONS=0)."""

    code = ErrorCode.SERVICE_UNAVAILABLE


class TooManySubscriptionsError(ApiError):
    code = ErrorCode.TOO_MANY_SUBSCRIPTIONS


class FeedBehindError(ApiError):
    """The dispatcher did not reach the cursor's moment in time (the database is away, or
    the cursor is of another database)."""

    code = ErrorCode.SERVICE_UNAVAILABLE


class ChangeFeed:
    """Diary changes after a cursor, polled or pushed."""

    def __init__(
        self,
        settings: Settings,
        pool: Callable[[], asyncpg.Pool],
        reference: ReferenceCache,
        recorder: Recorder,
    ) -> None:
        self._settings = settings.changes
        self._recorder = recorder
        self._pool = pool
        self._reference = reference
        self.codec = CursorCodec(settings.jwt_secret, max_age_s=self._settings.retention_s)
        direct_url = settings.pooler.direct_url  # LISTEN around a pooler
        self._direct = None if direct_url is None else DirectPool(direct_url, settings)
        self.dispatcher = Dispatcher(
            self._settings,
            pool,
            reference,
            listen_pool=None if self._direct is None else self._direct.get,
            accepts_key=settings.signing_keys.accepts,
        )

    async def close(self) -> None:
        await self.dispatcher.close()
        if self._direct is not None:
            await self._direct.close()

    def students(self, viewer: Viewer, student_ids: Sequence[strawberry.ID] | None) -> list[int]:
        """The students asked for: the viewer's, all of them by default; FORBIDDEN for any
        other id (whether or not it exists)."""
        if student_ids is None:
            return sorted(viewer.student_ids)
        if len(student_ids) > MAX_STUDENT_IDS:  # refused before any is parsed
            raise LimitOutOfRangeError(
                f"В studentIds не больше {MAX_STUDENT_IDS} учеников.", maxValue=MAX_STUDENT_IDS
            )
        wanted = sorted({parse_int_id(value, argument="studentIds") for value in student_ids})
        viewer.require_students(wanted)
        if not wanted:
            raise ForbiddenError()
        return wanted

    def position(self, since: str | None) -> Position | None:
        return None if since is None else self.codec.decode(since, now=time.time())

    async def page(
        self, viewer: Viewer, student_ids: list[int], since: str | None, first: int
    ) -> DiaryChanges:
        """The viewer's changes after `since` (at most `first`); without `since`, none and
        the cursor of now."""
        pool = self._pool()
        position = self.position(since)
        if position is None:
            now = await current_position(pool)
            return DiaryChanges(events=[], cursor=self.codec.encode(now), has_more=False)
        reference = RequestReference(self._reference)
        page = await read_students_page(
            pool, reference, position, student_ids, first, account_id=viewer.account_id
        )
        return DiaryChanges(
            events=self.events(page),
            cursor=self.codec.encode(page.end),
            has_more=page.full,
        )

    def events(self, page: Page) -> list[DiaryEvent]:
        """A viewer page's events, each with its cursor."""
        encode = self.codec.encode
        return [
            change.event(
                change.for_student, encode(page.position_after(change, change.for_student))
            )
            for change in page.changes
        ]

    def _check_room(self, viewer: Viewer) -> None:
        """TOO_MANY_SUBSCRIPTIONS past the limits per account and per process."""
        dispatcher = self.dispatcher
        if (
            dispatcher.subscriptions >= self._settings.max_subscriptions
            or dispatcher.count_for(viewer.account_id) >= self._settings.per_account
        ):
            raise TooManySubscriptionsError()

    def _audit(self, viewer: Viewer, student_id: int, operation_name: str | None) -> None:
        """One access-audit row per delivered event."""
        self._recorder.access(
            AccessEvent(
                at=datetime.now(UTC),
                account_id=viewer.account_id,
                role=viewer.role.value,
                student_ids=(student_id,),
                operation_name=operation_name,
            )
        )

    async def subscribe(
        self,
        viewer: Viewer,
        student_ids: list[int],
        since: str | None,
        *,
        expires_at: float | None,
        operation_name: str | None,
        key_id: str | None = None,
    ) -> Subscription:
        """A subscription of the viewer to these students' changes, after `since` (or from
        now), registered with the dispatcher; close it when the consumer leaves."""
        if not self._settings.subscriptions:
            raise SubscriptionsOffError("Подписки на изменения отключены на этом сервере.")
        dispatcher = self.dispatcher
        self._check_room(viewer)
        since_position = self.position(since)
        catch_up = None
        try:
            async with asyncio.timeout(SETTLE_TIMEOUT_S):
                if since_position is None:
                    start = await dispatcher.position()
                else:
                    start = since_position
                    bound = await dispatcher.settled_position(covering=since_position.newest)
        except TimeoutError:
            raise FeedBehindError() from None
        if since_position is not None:
            reference = RequestReference(self._reference)
            pool, ids = self._pool(), list(student_ids)

            async def catch_up(position: Position) -> Page:
                return await read_students_page(
                    pool,
                    reference,
                    position,
                    ids,
                    CATCH_UP_PAGE,
                    account_id=viewer.account_id,
                    bound=bound,
                )

        opening = None
        if since_position is None:
            pool = self._pool()

            async def opening() -> Snapshot:
                return (await current_position(pool)).base

        subscription = Subscription(
            viewer,
            frozenset(student_ids),
            codec=self.codec,
            queue_size=self._settings.queue_size,
            expires_at=expires_at,
            key_id=key_id,
            catch_up=catch_up,
            opening=opening,
            start=start,
            on_close=dispatcher.remove,
            on_deliver=lambda viewer, student_id: self._audit(viewer, student_id, operation_name),
        )
        # No await since the dispatcher's position was read: every page it hands over
        # from now on starts there. (The room is checked again: other requests may have
        # taken it while this one waited.)
        self._check_room(viewer)
        dispatcher.add(subscription)
        if since_position is None:
            try:
                await subscription.learn_opening()
            except BaseException:
                subscription.close()
                raise
        return subscription

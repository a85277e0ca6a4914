"""The change feed's root fields: `Query.diaryChanges` (polling) and
`Subscription.diaryEvents` (pushed over SSE or WebSocket, gateway.http.streams)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

import strawberry
from strawberry.extensions.field_extension import FieldExtension
from strawberry.permission import PermissionExtension

from auth.permissions import HasScope, IsAuthenticated, IsFamilyMember
from auth.viewer import SCOPE_DIARY
from gateway.core.errors import ApiError, ErrorCode, LimitOutOfRangeError
from resolvers.changes.cursor import ChangeCursor
from resolvers.changes.service import ChangeFeed
from resolvers.changes.types import DiaryChanges, DiaryEvent
from resolvers.context import Context

Info = strawberry.Info[Context, None]
MAX_PAGE = 200

StudentIdsArg = Annotated[
    list[strawberry.ID] | None,
    strawberry.argument(
        description="Only these students (each the viewer's; at most 50); default: all of them."
    ),
]
SinceArg = Annotated[
    ChangeCursor | None,
    strawberry.argument(
        description="Resume after this cursor (an event's or a page's); default: from now."
    ),
]


class FeedUnavailableError(ApiError):
    code = ErrorCode.SERVICE_UNAVAILABLE


def _feed(info: Info) -> ChangeFeed:
    feed = info.context.app.changes
    if feed is None:
        raise FeedUnavailableError()
    return feed


def _family_diary() -> list[FieldExtension]:
    return [PermissionExtension([IsAuthenticated(), IsFamilyMember(), HasScope(SCOPE_DIARY)])]


async def resolve_diary_changes(
    info: Info,
    student_ids: StudentIdsArg = None,
    since: SinceArg = None,
    first: Annotated[int, strawberry.argument(description=f"Page size, 1–{MAX_PAGE}.")] = 50,
) -> DiaryChanges:
    """The viewer's diary changes after a cursor, oldest first."""
    if not 1 <= first <= MAX_PAGE:
        raise LimitOutOfRangeError(
            f"Аргумент first должен быть от 1 до {MAX_PAGE}, получено {first}.",
            maxValue=MAX_PAGE,
        )
    viewer = info.context.require_viewer()
    feed = _feed(info)
    students = feed.students(viewer, student_ids)
    page = await feed.page(viewer, students, since, first)
    info.context.loaders.accessed_student_ids.update(int(e.student_id) for e in page.events)
    return page


@strawberry.type(description="Diary changes as they happen.")
class ChangesQuery:
    diary_changes: DiaryChanges = strawberry.field(
        resolver=resolve_diary_changes,
        extensions=_family_diary(),
        description=(
            "The viewer's diary changes after `since`, oldest first, for clients that poll "
            "(mobile apps in the background, bots): call again with the returned cursor. "
            "Without `since`: no events and the cursor of now. Every change is given "
            "once per student of the viewer's it concerns."
        ),
    )


async def subscribe_diary_events(
    info: Info, student_ids: StudentIdsArg = None, since: SinceArg = None
) -> AsyncIterator[DiaryEvent]:
    """The viewer's diary events as they are written (after `since` when given)."""
    viewer = info.context.require_viewer()
    feed = _feed(info)
    students = feed.students(viewer, student_ids)
    operation = info.operation.name.value if info.operation.name else None
    return await feed.subscribe(
        viewer,
        students,
        since,
        expires_at=info.context.credentials_expire_at,
        key_id=info.context.credentials_key_id,
        operation_name=operation,
    )


@strawberry.type(description="Diary events pushed to families as they happen.")
class Subscription:
    diary_events: AsyncIterator[DiaryEvent] = strawberry.subscription(
        resolver=subscribe_diary_events,
        extensions=_family_diary(),
        description=(
            "Every change to the diaries of the viewer's students (or of `studentIds`): "
            "marks, attendance, homework, lesson topics, lessons cancelled, replaced or "
            "moved, period and year marks. Each event carries a cursor: reconnect with "
            "`since` set to the last one received and nothing is lost or repeated. The "
            "stream ends with SESSION_REVOKED when the session is revoked, TOKEN_EXPIRED "
            "when the access token expires, SLOW_CONSUMER when the client falls behind."
        ),
    )

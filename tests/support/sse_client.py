"""A small graphql-sse client for the end-to-end tests: open a subscription on a live
server over httpx streaming, read its `event: next` results with a timeout, count the
heartbeat comments, see `event: complete`.

A background task reads the response body and queues its frames, so that a read that
times out leaves the stream intact (a later read still gets the next frame).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Final

import httpx
import orjson

EVENT_STREAM: Final = "text/event-stream"
DEFAULT_TIMEOUT_S: Final = 5.0


@dataclass(frozen=True, slots=True)
class Frame:
    """One server-sent event (`event`, `data`), or a comment (a heartbeat)."""

    event: str | None
    data: str | None
    comment: bool = False


class StreamEndedError(AssertionError):
    """The stream ended (EOF or `event: complete`) where a result was expected."""


def parse_frame(block: str) -> Frame:
    """An event block (the lines between blank lines) as a Frame."""
    event: str | None = None
    data: list[str] = []
    comment = True
    for line in block.split("\n"):
        if line.startswith(":"):
            continue
        comment = False
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            event = value
        elif field == "data":
            data.append(value)
    return Frame(event, "\n".join(data) if data else None, comment=comment)


class SseStream:
    """An open subscription's stream (see the module's doc)."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.heartbeats = 0
        self.completed = False
        self.results: list[dict[str, Any]] = []  # every `next` result read so far
        self._frames: asyncio.Queue[Frame | None] = asyncio.Queue()
        self._reader = asyncio.create_task(self._read(), name="sse-reader")

    async def _read(self) -> None:
        buffer = b""
        try:
            async for chunk in self.response.aiter_bytes():
                buffer += chunk.replace(b"\r\n", b"\n")
                while b"\n\n" in buffer:
                    block, buffer = buffer.split(b"\n\n", 1)
                    await self._frames.put(parse_frame(block.decode()))
        except httpx.HTTPError:
            pass  # the connection went away: the stream just ends
        finally:
            await self._frames.put(None)

    async def frame(self, within_s: float = DEFAULT_TIMEOUT_S) -> Frame | None:
        """The next frame (heartbeats included); None at the end of the body.
        TimeoutError when none arrives in time."""
        async with asyncio.timeout(within_s):
            frame = await self._frames.get()
        if frame is not None and frame.comment:
            self.heartbeats += 1
        if frame is not None and frame.event == "complete":
            self.completed = True
        return frame

    async def next(self, within_s: float = DEFAULT_TIMEOUT_S) -> dict[str, Any]:
        """The next `event: next` result (heartbeats skipped). StreamEndedError when the
        stream completes or ends instead; TimeoutError when nothing comes in time."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        while True:
            frame = await self.frame(max(deadline - loop.time(), 0.0))
            if frame is None or frame.event == "complete":
                raise StreamEndedError(f"the stream ended: {frame}")
            if frame.comment:
                continue
            assert frame.event == "next", frame
            assert frame.data is not None, frame
            result: dict[str, Any] = orjson.loads(frame.data)
            self.results.append(result)
            return result

    async def event(self, within_s: float = DEFAULT_TIMEOUT_S) -> dict[str, Any]:
        """The next result's event (`data.<the subscription's field>`); AssertionError for
        a result with errors."""
        result = await self.next(within_s)
        assert "errors" not in result, result
        data = result["data"]
        assert isinstance(data, dict) and len(data) == 1, result
        event: dict[str, Any] = next(iter(data.values()))
        return event

    async def events(self, count: int, within_s: float = DEFAULT_TIMEOUT_S) -> list[dict[str, Any]]:
        return [await self.event(within_s) for _ in range(count)]

    async def nothing_for(self, seconds: float) -> None:
        """Assert that no result arrives for `seconds` (heartbeats allowed)."""
        with contextlib.suppress(TimeoutError):
            result = await self.next(seconds)
            raise AssertionError(f"unexpected result: {result}")

    async def end(self, within_s: float = DEFAULT_TIMEOUT_S) -> Frame | None:
        """The frame after the last result: `event: complete` (or None at EOF)."""
        while True:
            frame = await self.frame(within_s)
            if frame is None or not frame.comment:
                return frame

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        await self.response.aclose()


def sse_headers(token: str | None = None, **extra: str) -> dict[str, str]:
    """The headers of a graphql-sse request (with a bearer token when given)."""
    headers = {"Accept": EVENT_STREAM, "Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    headers.update(extra)
    return headers


def sse_body(query: str, variables: dict[str, Any] | None = None) -> bytes:
    body: dict[str, Any] = {"query": query}
    if variables is not None:
        body["variables"] = variables
    return orjson.dumps(body)


@contextlib.asynccontextmanager
async def subscribed(
    client: httpx.AsyncClient,
    query: str,
    variables: dict[str, Any] | None = None,
    *,
    token: str | None = None,
    headers: dict[str, str] | None = None,
) -> AsyncIterator[SseStream]:
    """An open subscription (200 `text/event-stream` asserted), closed on exit."""
    request = client.build_request(
        "POST",
        "/graphql",
        content=sse_body(query, variables),
        headers=sse_headers(token, **(headers or {})),
    )
    response = await client.send(request, stream=True)
    if response.status_code != 200:
        await response.aread()
        await response.aclose()
        raise AssertionError(f"no stream: {response.status_code} {response.text}")
    assert response.headers["content-type"].startswith(EVENT_STREAM), response.headers
    stream = SseStream(response)
    try:
        yield stream
    finally:
        await stream.close()


async def refused(
    client: httpx.AsyncClient,
    query: str,
    variables: dict[str, Any] | None = None,
    *,
    token: str | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """A graphql-sse request expected to be answered without a stream (read in full);
    AssertionError when a stream opens instead."""
    request = client.build_request(
        "POST",
        "/graphql",
        content=sse_body(query, variables),
        headers=sse_headers(token, **(headers or {})),
    )
    response = await client.send(request, stream=True)
    try:
        if response.headers.get("content-type", "").startswith(EVENT_STREAM):
            raise AssertionError(f"a stream was opened ({response.status_code})")
        await response.aread()
    finally:
        await response.aclose()
    return response


# --- the change feed's subscription, as the tests ask for it ---------------------------

DIARY_EVENTS: Final = """
subscription DiaryFeed($ids: [ID!], $since: ChangeCursor) {
  diaryEvents(studentIds: $ids, since: $since) {
    __typename cursor studentId action date lessonId at
    ... on MarkEvent {
      markId
      mark { value workType { name } weight workTitle subject { name } }
    }
    ... on AttendanceEvent { attendanceId attendance { code kind lessonId } }
    ... on HomeworkEvent { homeworkId homework { text assignedOn dueOn subject { name } } }
    ... on LessonTopicEvent { topic }
    ... on LessonEvent { lesson { id room status statusComment } }
    ... on FinalMarkEvent { finalMarkId finalMark { value kind subject { name } } }
  }
}
"""


def key_of(event: dict[str, Any]) -> tuple[str, str, str, str]:
    """(type, student, entity, action) of an event: what a test compares."""
    entity = next(
        (
            str(event[field])
            for field in ("markId", "attendanceId", "homeworkId", "finalMarkId", "lessonId")
            if event.get(field) is not None
        ),
        "",
    )
    return (event["__typename"], str(event["studentId"]), entity, event["action"])


async def settle(stream: SseStream, add_mark: Any, student_id: int) -> dict[str, Any]:
    """Write a mark for `student_id` (`add_mark`: a JournalWriter's) and read until its
    event arrives; its event. Whatever came before it was written before the test began
    (a subscription without `since` may still get what was committed just before it
    opened): a test asserts on what follows."""
    mark_id = str(await add_mark(student_id, work_title="Отметка-ориентир"))
    for _ in range(100):
        event = await stream.event()
        if event.get("markId") == mark_id and event["action"] == "ADDED":
            return event
    raise AssertionError(f"the settling mark {mark_id} never arrived")

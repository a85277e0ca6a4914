"""A light graphql-sse client for thousands of streams in one process.

Each subscriber is one TCP connection with a hand-written HTTP/1.1 request (`POST
/graphql`, `Accept: text/event-stream`, the family's bearer token) and a reader task that
undoes the chunked transfer coding, splits server-sent events and records every `next`
event with the time it was read (`time.monotonic()`). No HTTP library: 10,000 httpx
streams would cost the bench more memory and CPU than the gateway under test.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

DOCUMENT: Final = (
    "subscription Push { diaryEvents { __typename cursor studentId at "
    "... on MarkEvent { markId mark { value } } "
    "... on AttendanceEvent { attendanceId } } }"
)
CONNECT_TIMEOUT_S: Final = 60.0
_READ_SIZE: Final = 65_536


class StreamError(RuntimeError):
    """A stream that could not be opened (refused, not an event stream, broken)."""


@dataclass(frozen=True, slots=True)
class Received:
    """One `next` event as a subscriber read it.

    `entity`: "mark:<id>", "attendance:<id>" or "<typename>:?" for other kinds."""

    subscriber: int
    at: float
    entity: str
    student_id: int
    cursor: str


@dataclass
class Inbox:
    """Everything the subscribers read, in one list (appended in the event loop)."""

    events: list[Received] = field(default_factory=list)
    errors: list[tuple[int, str]] = field(default_factory=list)  # (subscriber, message)
    heartbeats: int = 0
    completed: list[int] = field(default_factory=list)  # subscribers whose stream ended


def request_bytes(host: str, port: int, token: str, document: str = DOCUMENT) -> bytes:
    """The HTTP/1.1 request that opens one subscription."""
    body = orjson.dumps({"query": document})
    head = (
        f"POST /graphql HTTP/1.1\r\nHost: {host}:{port}\r\n"
        "Accept: text/event-stream\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {token}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("ascii") + body


def parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    """Status code and lower-cased headers of a response head (without the blank line)."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
        raise StreamError(f"not an HTTP response: {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers


class ChunkDecoder:
    """Undoes `Transfer-Encoding: chunked` incrementally: feed bytes, get the payload."""

    def __init__(self) -> None:
        self._buffer = b""
        self._remaining = 0  # payload bytes of the current chunk still to come
        self._skip = 0  # CRLF after a chunk still to skip
        self.finished = False

    def feed(self, data: bytes) -> bytes:
        self._buffer += data
        out = bytearray()
        while self._buffer and not self.finished:
            if self._skip:
                taken = min(self._skip, len(self._buffer))
                self._buffer = self._buffer[taken:]
                self._skip -= taken
                continue
            if self._remaining:
                piece = self._buffer[: self._remaining]
                out += piece
                self._buffer = self._buffer[len(piece) :]
                self._remaining -= len(piece)
                if not self._remaining:
                    self._skip = 2
                continue
            line, sep, rest = self._buffer.partition(b"\r\n")
            if not sep:
                break
            size = int(line.split(b";", 1)[0].strip() or b"0", 16)
            self._buffer = rest
            if size == 0:
                self.finished = True
            self._remaining = size
        return bytes(out)


@dataclass(frozen=True, slots=True)
class Event:
    """One server-sent event: its name ("" for none) and its data lines joined."""

    name: str
    data: str


class EventSplitter:
    """Splits a text/event-stream into events; comment-only blocks count as heartbeats."""

    def __init__(self) -> None:
        self._buffer = b""
        self.heartbeats = 0

    def feed(self, data: bytes) -> list[Event]:
        self._buffer += data.replace(b"\r\n", b"\n")
        events: list[Event] = []
        while True:
            block, sep, rest = self._buffer.partition(b"\n\n")
            if not sep:
                return events
            self._buffer = rest
            event = self._parse(block.decode("utf-8"))
            if event is None:
                self.heartbeats += 1
            else:
                events.append(event)

    @staticmethod
    def _parse(block: str) -> Event | None:
        name, data, fields = "", [], 0
        for line in block.split("\n"):
            if not line or line.startswith(":"):
                continue
            key, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            fields += 1
            if key == "event":
                name = value
            elif key == "data":
                data.append(value)
        return Event(name, "\n".join(data)) if fields else None


def received_of(subscriber: int, at: float, data: str) -> Received:
    """A `next` event's payload as a `Received` (an error payload raises StreamError)."""
    payload: dict[str, Any] = orjson.loads(data)
    if payload.get("errors") or not payload.get("data"):
        raise StreamError(f"an error event: {data[:300]}")
    event = payload["data"]["diaryEvents"]
    typename = event["__typename"]
    if typename == "MarkEvent":
        entity = f"mark:{event['markId']}"
    elif typename == "AttendanceEvent":
        entity = f"attendance:{event['attendanceId']}"
    else:
        entity = f"{typename}:?"
    return Received(subscriber, at, entity, int(event["studentId"]), event["cursor"])


class Subscriber:
    """One open graphql-sse stream and the task reading it."""

    def __init__(self, index: int, inbox: Inbox) -> None:
        self.index = index
        self.inbox = inbox
        self.writer: asyncio.StreamWriter | None = None
        self.task: asyncio.Task[None] | None = None

    async def open(self, host: str, port: int, token: str) -> None:
        """Connect, send the request, read a 200 event-stream head; then read in a task."""
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, limit=_READ_SIZE), CONNECT_TIMEOUT_S
        )
        self.writer = writer
        writer.write(request_bytes(host, port, token))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), CONNECT_TIMEOUT_S)
        status, headers = parse_head(head[:-4])
        if status != 200 or not headers.get("content-type", "").startswith("text/event-stream"):
            rest = await _read_some(reader)
            writer.close()
            raise StreamError(f"HTTP {status} {headers.get('content-type', '')}: {rest[:300]!r}")
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        self.task = asyncio.create_task(self._read(reader, chunked))

    async def _read(self, reader: asyncio.StreamReader, chunked: bool) -> None:
        decoder = ChunkDecoder() if chunked else None
        splitter = EventSplitter()
        try:
            while True:
                data = await reader.read(_READ_SIZE)
                if not data:
                    break
                now = time.monotonic()
                payload = decoder.feed(data) if decoder is not None else data
                for event in splitter.feed(payload):
                    if event.name == "next":
                        self.inbox.events.append(received_of(self.index, now, event.data))
                    elif event.name == "complete":
                        self.inbox.completed.append(self.index)
                self.inbox.heartbeats += splitter.heartbeats
                splitter.heartbeats = 0
                if decoder is not None and decoder.finished:
                    break
        except (OSError, StreamError, ValueError, KeyError) as error:
            self.inbox.errors.append((self.index, f"{type(error).__name__}: {error}"))

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


async def _read_some(reader: asyncio.StreamReader) -> bytes:
    with contextlib.suppress(OSError, TimeoutError):
        return await asyncio.wait_for(reader.read(2000), 5)
    return b""


async def open_all(
    host: str, port: int, tokens: Sequence[str], inbox: Inbox, *, concurrency: int
) -> tuple[list[Subscriber], list[tuple[int, str]]]:
    """Open one stream per token, `concurrency` handshakes at a time; the open ones and
    the failures (subscriber index, message)."""
    gate = asyncio.Semaphore(concurrency)
    subscribers = [Subscriber(index, inbox) for index in range(len(tokens))]
    failures: list[tuple[int, str]] = []

    async def one(subscriber: Subscriber, token: str) -> None:
        async with gate:
            try:
                await subscriber.open(host, port, token)
            except (OSError, StreamError, TimeoutError, asyncio.IncompleteReadError) as error:
                failures.append((subscriber.index, f"{type(error).__name__}: {error}"))

    await asyncio.gather(*(one(s, t) for s, t in zip(subscribers, tokens, strict=True)))
    failed = {index for index, _ in failures}
    return [s for s in subscribers if s.index not in failed], failures


async def close_all(subscribers: Sequence[Subscriber]) -> None:
    for start in range(0, len(subscribers), 500):
        await asyncio.gather(*(s.close() for s in subscribers[start : start + 500]))
